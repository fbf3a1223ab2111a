"""The preprocessing cache: contents, statistics, skipped files, reuse and rebuild."""

from __future__ import annotations

import importlib
import json
import os
import warnings

import numpy as np
import pytest

from netdsl.data.folder import DataWarning, decode_square, scan_folder
from netdsl.data.prepare import load_prepared, prepare

# The package re-exports the function prepare under the module's name, so fetch the module itself.
prepare_module = importlib.import_module("netdsl.data.prepare")
prepare_progress = importlib.import_module("netdsl.data.prepare_progress")
decode_module = importlib.import_module("netdsl.data.decode_split")


def test_cache_holds_each_split_decoded_in_scan_order(tiny_dataset):
    data = prepare(tiny_dataset, size=8, workers=1, progress=False)
    dataset = scan_folder(tiny_dataset)
    for split in ("train", "val"):
        images, labels = data.split(split)
        items = getattr(dataset, split)
        assert isinstance(images, np.memmap) and images.dtype == np.uint8
        assert images.shape == (len(items), 8, 8, 3)
        assert labels.dtype == np.int64 and labels.tolist() == [label for _, label in items]
        for row, (path, _) in enumerate(items):
            assert np.array_equal(images[row], decode_square(path, 8))
    assert data.classes == ["ant", "bee", "cow"] and data.skipped == []
    assert data.cache_dir == tiny_dataset / ".netdsl-cache" / "8"
    meta = json.loads((data.cache_dir / "meta.json").read_text())
    assert meta["counts"] == {"train": 12, "val": 5} and meta["size"] == 8


def test_mean_and_pca_match_a_direct_computation(tiny_dataset):
    data = prepare(tiny_dataset, size=8, workers=1, progress=False)
    images = np.asarray(data.train_images, dtype=np.float64)
    np.testing.assert_allclose(data.mean, images.mean(axis=0), rtol=1e-6)
    assert data.mean.dtype == np.float32 and data.mean.shape == (8, 8, 3)

    covariance = np.cov((images / 255.0).reshape(-1, 3), rowvar=False, bias=True)
    np.testing.assert_allclose(data.eigvec @ np.diag(data.eigval) @ data.eigvec.T, covariance, atol=1e-12)
    expected_values = np.linalg.eigvalsh(covariance)[::-1]
    np.testing.assert_allclose(data.eigval, expected_values, rtol=1e-9)
    np.testing.assert_allclose(data.eigvec.T @ data.eigvec, np.eye(3), atol=1e-12)
    # Sign convention: each eigenvector's largest component is positive.
    assert all(data.eigvec[np.abs(column).argmax(), i] > 0 for i, column in enumerate(data.eigvec.T))


def test_process_pool_gives_the_same_cache_as_one_process(tiny_dataset, tmp_path):
    one = prepare(tiny_dataset, size=8, cache_dir=tmp_path / "one", workers=1, progress=False)
    two = prepare(tiny_dataset, size=8, cache_dir=tmp_path / "two", workers=2, progress=False)
    assert np.array_equal(one.train_images, two.train_images)
    assert np.array_equal(one.val_images, two.val_images)
    assert np.array_equal(one.mean, two.mean)
    assert np.array_equal(one.eigval, two.eigval) and np.array_equal(one.eigvec, two.eigvec)


def test_corrupt_files_are_skipped_counted_and_listed_once(tiny_dataset):
    (tiny_dataset / "train" / "bee" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated JPEG")
    (tiny_dataset / "val" / "cow" / "empty.png").write_bytes(b"")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = prepare(tiny_dataset, size=8, workers=2, progress=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(messages) == 1
    assert "skipped 2 unreadable image(s)" in messages[0]
    assert "train/bee/broken.jpg" in messages[0] and "val/cow/empty.png" in messages[0]
    assert data.skipped == ["train/bee/broken.jpg", "val/cow/empty.png"]
    # The readable images keep their labels: bee had 3 good files and still has 3 rows.
    assert data.train_images.shape[0] == 12 and np.bincount(data.train_labels).tolist() == [4, 3, 5]
    assert data.val_images.shape[0] == 5 and np.bincount(data.val_labels).tolist() == [2, 1, 2]
    good = [path for path, _ in scan_folder(tiny_dataset).train if path.name != "broken.jpg"]
    assert all(np.array_equal(data.train_images[i], decode_square(p, 8)) for i, p in enumerate(good))


def test_unchanged_folder_reuses_the_cache(tiny_dataset, monkeypatch):
    first = prepare(tiny_dataset, size=8, workers=1, progress=False)

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cache was rebuilt although no file changed")

    monkeypatch.setattr(prepare_module, "_build", no_rebuild)
    again = prepare(tiny_dataset, size=8, workers=1, progress=False)
    assert again.cache_dir == first.cache_dir
    assert np.array_equal(again.train_images, first.train_images)


def fingerprint(cache_dir) -> str:
    return json.loads((cache_dir / "meta.json").read_text())["fingerprint"]


@pytest.mark.parametrize("change", ["rewrite", "touch", "add", "remove", "empty class", "names"])
def test_any_change_to_the_folder_rebuilds(tiny_dataset, change, write_image):
    before = prepare(tiny_dataset, size=8, workers=1, progress=False)
    fingerprint_before = fingerprint(before.cache_dir)
    target = tiny_dataset / "train" / "ant" / "0.png"
    if change == "rewrite":
        write_image(target, np.full((10, 14, 3), 7, np.uint8))
    elif change == "touch":
        stat = target.stat()
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    elif change == "add":
        write_image(tiny_dataset / "train" / "bee" / "new.png", np.zeros((10, 14, 3), np.uint8))
    elif change == "remove":
        target.unlink()
    elif change == "empty class":
        (tiny_dataset / "train" / "aardvark").mkdir()
    else:
        (tiny_dataset / "synsets.txt").write_text("ant formicidae\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        after = prepare(tiny_dataset, size=8, workers=1, progress=False)
    assert after.cache_dir == before.cache_dir
    assert fingerprint(after.cache_dir) != fingerprint_before
    expected = {
        "rewrite": lambda: np.array_equal(after.train_images[0], np.full((8, 8, 3), 7)),
        "touch": lambda: np.array_equal(after.train_images, before.train_images),
        "add": lambda: after.train_images.shape[0] == 13,
        "remove": lambda: after.train_images.shape[0] == 11,
        "empty class": lambda: after.classes[0] == "aardvark" and after.train_labels.min() == 1,
        "names": lambda: after.class_names == ["formicidae", "bee", "cow"],
    }[change]
    assert expected()


def test_each_size_has_its_own_cache(tiny_dataset):
    small = prepare(tiny_dataset, size=4, workers=1, progress=False)
    large = prepare(tiny_dataset, size=8, workers=1, progress=False)
    assert small.cache_dir != large.cache_dir
    assert load_prepared(small.cache_dir).train_images.shape[1:] == (4, 4, 3)


def test_interrupted_build_leaves_no_cache_but_its_work_for_the_next_prepare(tiny_dataset, monkeypatch):
    decode = decode_module._decode_chunk
    calls = []

    def killed_on_the_third_chunk(task):
        calls.append(task)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return decode(task)

    monkeypatch.setattr(decode_module, "CHUNK", 2)
    monkeypatch.setattr(prepare_progress, "SAVE_EVERY", 0.0)
    monkeypatch.setattr(decode_module, "_decode_chunk", killed_on_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        prepare(tiny_dataset, size=8, workers=1, progress=False)
    cache_root = tiny_dataset / ".netdsl-cache"
    with pytest.raises(ValueError, match="not a prepared dataset"):
        load_prepared(cache_root / "8")
    [building] = cache_root.glob(".8.building-*")

    calls.clear()
    monkeypatch.setattr(decode_module, "_decode_chunk", lambda task: (calls.append(task), decode(task))[1])
    resumed = prepare(tiny_dataset, size=8, workers=1, progress=False)
    # 12 training images in chunks of 2: the first two chunks were kept, four remain, then val's three.
    assert [task[1] for task in calls] == [4, 6, 8, 10, 0, 2, 4]
    assert not building.exists()
    fresh = prepare(tiny_dataset, size=8, cache_dir=tiny_dataset / "fresh", workers=1, progress=False)
    assert np.array_equal(resumed.train_images, fresh.train_images)
    assert np.array_equal(resumed.val_images, fresh.val_images)
    assert np.array_equal(resumed.mean, fresh.mean) and np.array_equal(resumed.eigvec, fresh.eigvec)


def test_unwritable_dataset_folder_falls_back_to_the_user_cache(tiny_dataset, tmp_path, monkeypatch):
    # A file where the cache folder should be blocks it as surely as a read-only folder (even for root).
    (tiny_dataset / ".netdsl-cache").write_text("")
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path / "user-cache"))
    data = prepare(tiny_dataset, size=8, workers=1, progress=False)
    assert data.cache_dir.is_relative_to(tmp_path / "user-cache" / "prepared")
    assert data.cache_dir.name == "8" and data.train_images.shape[0] == 12


def test_unreadable_training_split_is_an_error(make_dataset):
    root = make_dataset({"ant": 1}, {"ant": 1})
    next((root / "train" / "ant").iterdir()).write_bytes(b"not an image")
    with pytest.raises(ValueError, match="none of the 1 training images"):
        prepare(root, size=8, workers=1, progress=False)


def test_a_cache_dir_holding_other_files_is_never_replaced(tiny_dataset, tmp_path):
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "holiday.jpg").write_bytes(b"irreplaceable")
    with pytest.raises(ValueError, match="is not a prepared-dataset cache; refusing to replace it"):
        prepare(tiny_dataset, size=8, cache_dir=precious, workers=1, progress=False)
    assert (precious / "holiday.jpg").read_bytes() == b"irreplaceable"
