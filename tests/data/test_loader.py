"""BatchLoader: order, determinism across workers, resumption, and clean shutdown."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from netdsl.data.augment import AugmentSpec
from netdsl.data.loader import THREADS_SETTING, BatchLoader, default_workers

TRAIN = AugmentSpec(crop=9, flip=True, pca_std=0.1)


def all_batches(loader: BatchLoader) -> list[tuple[np.ndarray, np.ndarray]]:
    with loader:
        return list(loader)


def assert_same_batches(actual, expected) -> None:
    assert len(actual) == len(expected)
    for index, ((images, labels), (want_images, want_labels)) in enumerate(zip(actual, expected)):
        assert np.array_equal(labels, want_labels), f"batch {index}: labels differ"
        assert np.array_equal(images, want_images), f"batch {index}: images differ"


def loader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("netdsl-loader")]


def test_train_epoch_visits_each_image_at_most_once_in_full_batches(prepared):
    loader = BatchLoader(prepared, "train", 8, TRAIN, seed=1, workers=0)
    batches = all_batches(loader)
    assert len(loader) == loader.batches_per_epoch == 37 // 8 == len(batches)
    rows = np.concatenate([loader.rows(i) for i in range(len(loader))])
    assert len(set(rows.tolist())) == 32  # drop_last: 5 images wait for another epoch
    for index, (images, labels) in enumerate(batches):
        assert images.shape == (8, 3, 9, 9) and images.dtype == np.float32
        assert labels.dtype == np.int64 and np.array_equal(labels, prepared.train_labels[loader.rows(index)])
    assert not np.array_equal(loader.order, np.arange(37))


def test_val_keeps_order_and_the_last_partial_batch(prepared):
    loader = BatchLoader(prepared, "val", 5, AugmentSpec.paper_test(8), workers=0)
    batches = all_batches(loader)
    assert [len(labels) for _, labels in batches] == [5, 5, 5, 3]
    assert np.array_equal(np.concatenate([labels for _, labels in batches]), prepared.val_labels)


def test_same_seed_and_epoch_give_identical_batches_whatever_the_workers(prepared):
    reference = all_batches(BatchLoader(prepared, "train", 6, TRAIN, seed=4, epoch=2, workers=0))
    for workers in (1, 2):
        for prefetch in (1, 4):
            batches = BatchLoader(prepared, "train", 6, TRAIN, seed=4, epoch=2, workers=workers, prefetch=prefetch)
            assert_same_batches(all_batches(batches), reference)


def test_default_threads_follow_the_setting_else_the_cores(prepared, monkeypatch):
    monkeypatch.delenv(THREADS_SETTING, raising=False)
    cores = default_workers()
    assert cores >= 1 and BatchLoader(prepared, "train", 6, TRAIN).workers == cores
    monkeypatch.setenv(THREADS_SETTING, "5")
    assert default_workers() == 5 and BatchLoader(prepared, "train", 6, TRAIN).workers == 5
    reference = all_batches(BatchLoader(prepared, "train", 6, TRAIN, seed=4, epoch=2, workers=0))
    assert_same_batches(all_batches(BatchLoader(prepared, "train", 6, TRAIN, seed=4, epoch=2)), reference)
    monkeypatch.setenv(THREADS_SETTING, "many")
    with pytest.raises(ValueError, match=THREADS_SETTING):
        default_workers()


def test_epochs_and_seeds_change_order_and_augmentation(prepared):
    base = BatchLoader(prepared, "train", 6, TRAIN, seed=4, epoch=2, workers=0)
    for other in (BatchLoader(prepared, "train", 6, TRAIN, seed=4, epoch=3, workers=0),
                  BatchLoader(prepared, "train", 6, TRAIN, seed=5, epoch=2, workers=0)):
        assert not np.array_equal(base.order, other.order)
    unshuffled = dict(shuffle=False, workers=0)
    first = BatchLoader(prepared, "train", 6, TRAIN, seed=4, epoch=2, **unshuffled).make_batch(0)[0]
    second = BatchLoader(prepared, "train", 6, TRAIN, seed=4, epoch=3, **unshuffled).make_batch(0)[0]
    assert not np.array_equal(first, second)  # same images, new crops, mirrors and lighting


@pytest.mark.parametrize("start_batch", [0, 1, 3, 6])
def test_resuming_mid_epoch_gives_exactly_the_remaining_batches(prepared, start_batch):
    whole = all_batches(BatchLoader(prepared, "train", 6, TRAIN, seed=8, epoch=1, workers=2))
    resumed = BatchLoader(prepared, "train", 6, TRAIN, seed=8, epoch=1, start_batch=start_batch, workers=2)
    assert len(resumed) == 6 - start_batch
    assert_same_batches(all_batches(resumed), whole[start_batch:])


def test_bad_arguments_are_clear_errors(prepared):
    with pytest.raises(ValueError, match="start_batch 7 is outside the epoch's 6 batches"):
        BatchLoader(prepared, "train", 6, TRAIN, start_batch=7)
    with pytest.raises(ValueError, match="batch size must be positive"):
        BatchLoader(prepared, "train", 0, TRAIN)
    with pytest.raises(ValueError, match="unknown split 'test'"):
        BatchLoader(prepared, "test", 4, TRAIN)


def test_breaking_out_and_closing_stop_the_threads(prepared):
    loader = BatchLoader(prepared, "train", 4, TRAIN, workers=2, prefetch=3)
    for _ in loader:
        assert loader_threads()
        break
    loader.close()
    assert loader_threads() == []
    with BatchLoader(prepared, "train", 4, TRAIN, workers=2) as loader:
        next(iter(loader))
    assert loader_threads() == []


def test_an_abandoned_loader_does_not_hang_interpreter_exit(tmp_path):
    script = textwrap.dedent(
        """
        import numpy as np
        from netdsl.data.augment import AugmentSpec
        from netdsl.data.loader import THREADS_SETTING, BatchLoader, default_workers
        from netdsl.data.prepare import PreparedData

        images = np.zeros((64, 16, 16, 3), np.uint8)
        labels = np.zeros(64, np.int64)
        data = PreparedData("x", 16, images, labels, images, labels, np.zeros((16, 16, 3), np.float32),
                            np.ones(3), np.eye(3), ["a"], ["a"], [])
        batches = iter(BatchLoader(data, "train", 2, AugmentSpec(crop=8, flip=True), workers=2, prefetch=4))
        next(batches)
        print("left without closing")
        """
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "left without closing" in result.stdout
