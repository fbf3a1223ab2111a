"""The built-in shapes and digits datasets."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from netdsl.data.folder import scan_folder
from netdsl.data.synthetic import SHAPES, make_digits, make_shapes


def file_bytes(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_shapes_layout_names_and_counts(tmp_path):
    root = make_shapes(tmp_path / "shapes", classes=4, train_per_class=3, val_per_class=2, size=16)
    dataset = scan_folder(root)
    assert dataset.classes == ["s0000", "s0001", "s0002", "s0003"]
    assert dataset.class_names == list(SHAPES)[:4] == ["circle", "square", "triangle", "cross"]
    assert np.bincount([label for _, label in dataset.train]).tolist() == [3, 3, 3, 3]
    assert np.bincount([label for _, label in dataset.val]).tolist() == [2, 2, 2, 2]
    assert all(path.suffix == ".jpeg" for path in dataset.files())
    with Image.open(dataset.train[0][0]) as image:
        assert image.size == (16, 16) and image.mode == "RGB"


def test_shapes_are_a_deterministic_function_of_the_seed(tmp_path):
    arguments = dict(classes=3, train_per_class=2, val_per_class=1, size=16, image_format="png")
    first = file_bytes(make_shapes(tmp_path / "a", seed=5, **arguments))
    assert first == file_bytes(make_shapes(tmp_path / "b", seed=5, **arguments))
    other = file_bytes(make_shapes(tmp_path / "c", seed=6, **arguments))
    assert first.keys() == other.keys()
    assert first["synsets.txt"] == other["synsets.txt"]
    assert all(first[name] != other[name] for name in first if name.endswith(".png"))


def test_each_shape_stands_out_from_its_background(tmp_path):
    root = make_shapes(tmp_path / "shapes", classes=len(SHAPES), train_per_class=2, val_per_class=0,
                       size=32, image_format="png")
    for path, label in scan_folder(root).train:
        pixels = np.asarray(Image.open(path)).reshape(-1, 3).astype(int)
        # Two colour clusters at least ~80 apart per channel, under +-32 noise.
        spread = np.percentile(pixels, 99, axis=0) - np.percentile(pixels, 1, axis=0)
        assert spread.max() > 100, (path, label)


def test_shapes_refuse_to_write_into_a_non_empty_directory(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="already exists and is not empty"):
        make_shapes(tmp_path / "busy", classes=2, train_per_class=1, val_per_class=1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"classes": len(SHAPES) + 1}, "1 to 12 classes"),
        ({"image_format": "gif"}, "image format"),
        ({"size": 4}, "8x8"),
    ],
)
def test_shapes_reject_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_shapes(tmp_path / "x", **kwargs)


def test_digits_layout_counts_and_stratified_split(tmp_path):
    root = make_digits(tmp_path / "digits", seed=0, val_fraction=0.2, size=16)
    dataset = scan_folder(root)
    assert dataset.class_names == ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    train = np.bincount([label for _, label in dataset.train], minlength=10)
    val = np.bincount([label for _, label in dataset.val], minlength=10)
    assert train.sum() + val.sum() == 1797
    per_class = train + val
    assert per_class.tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert np.abs(val - 0.2 * per_class).max() <= 0.5  # every class split 80/20, rounded
    with Image.open(dataset.val[0][0]) as image:
        assert image.size == (16, 16) and image.format == "PNG"
    names = {p.name for p in dataset.files()}
    assert len(names) == 1797  # each source digit written exactly once


def test_digits_split_follows_the_seed(tmp_path):
    def val_files(seed):
        root = make_digits(tmp_path / f"digits{seed}", seed=seed)
        return sorted(p.name for p in (root / "val").rglob("*.png"))

    assert val_files(0) != val_files(1)
