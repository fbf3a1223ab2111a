"""Scanning ImageNet-style folders and decoding their images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from netdsl.data.folder import DataWarning, decode_square, scan_folder


def test_classes_are_sorted_train_folders_and_labels_follow_them(make_dataset):
    root = make_dataset({"zebra": 2, "ant": 1, "moose": 3}, {"moose": 1, "ant": 2})
    dataset = scan_folder(root)
    assert dataset.classes == ["ant", "moose", "zebra"]
    assert dataset.class_names == dataset.classes  # no synsets.txt: folder names
    assert [(p.parent.name, label) for p, label in dataset.train] == [
        ("ant", 0), ("moose", 1), ("moose", 1), ("moose", 1), ("zebra", 2), ("zebra", 2)
    ]
    assert sorted((p.parent.name, label) for p, label in dataset.val) == [("ant", 0), ("ant", 0), ("moose", 1)]
    assert all(p.is_absolute() for p in dataset.files())


def test_any_common_extension_in_any_case_and_nothing_else(tmp_path, write_image):
    pixels = np.zeros((4, 4, 3), np.uint8)
    names = ["a.jpeg", "b.JPEG", "c.jpg", "d.Png", "e.bmp", "f.webp"]
    for name in names:
        write_image(tmp_path / "train" / "cls" / name, pixels)
    (tmp_path / "train" / "cls" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / "cls" / ".hidden.jpg").write_bytes(b"")
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "val").mkdir()
    dataset = scan_folder(tmp_path)
    assert dataset.classes == ["cls"]
    assert [p.name for p, _ in dataset.train] == sorted(names)


@pytest.mark.parametrize("file_name", ["synsets.txt", "words.txt"])
def test_human_class_names_come_from_the_synsets_file(make_dataset, file_name):
    root = make_dataset({"n001": 1, "n002": 1, "n003": 1}, {"n001": 1})
    (root / file_name).write_text("n001 tench, Tinca tinca\nn003\tgoldfish\n\nn999 unused\n")
    dataset = scan_folder(root)
    assert dataset.class_names == ["tench, Tinca tinca", "n002", "goldfish"]
    assert dataset.name_file() == root / file_name


def test_empty_class_folder_is_kept_and_counted_in_a_warning(make_dataset):
    root = make_dataset({"ant": 2, "cow": 1}, {"cow": 1})
    (root / "train" / "bee").mkdir()
    (root / "train" / "dog").mkdir()
    with pytest.warns(DataWarning, match=r"2 of 4 class folders .* no images \(bee, dog\)"):
        dataset = scan_folder(root)
    assert dataset.classes == ["ant", "bee", "cow", "dog"]
    assert [label for _, label in dataset.train] == [0, 0, 2]


def test_val_class_unknown_to_train_is_an_error(make_dataset):
    root = make_dataset({"ant": 1}, {"ant": 1, "yak": 1})
    with pytest.raises(ValueError, match=r"val has 1 class folders that train/ does not have \(yak\)"):
        scan_folder(root)


def test_missing_val_folder_gives_no_validation_images_and_says_so(make_dataset):
    root = make_dataset({"ant": 2})
    with pytest.warns(DataWarning, match="no val/ folder"):
        dataset = scan_folder(root)
    assert dataset.val == []


@pytest.mark.parametrize(
    "layout, message",
    [
        ("missing", "does not exist"),
        ("no train", "has no train/ folder"),
        ("no classes", "has no class folders"),
        ("no images", "has 2 class folders but no images"),
    ],
)
def test_unusable_dataset_directory_is_a_clear_value_error(tmp_path, layout, message):
    root = tmp_path / "data"
    if layout != "missing":
        root.mkdir()
    if layout in ("no classes", "no images"):
        (root / "train").mkdir()
    if layout == "no images":
        (root / "train" / "a").mkdir()
        (root / "train" / "b").mkdir()
    with pytest.raises(ValueError, match=message):
        scan_folder(root)


# --- decode_square -------------------------------------------------------------------------


def test_square_image_of_the_target_size_is_returned_unchanged(tmp_path, write_image):
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert np.array_equal(decode_square(write_image(tmp_path / "a.png", pixels), 8), pixels)


@pytest.mark.parametrize("shape, expected", [((8, 20, 3), np.s_[:, 6:14]), ((20, 8, 3), np.s_[6:14, :])])
def test_short_side_at_target_size_keeps_the_exact_centre_square(tmp_path, write_image, shape, expected):
    pixels = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    assert np.array_equal(decode_square(write_image(tmp_path / "a.png", pixels), 8), pixels[expected])


def test_larger_image_is_rescaled_by_its_short_side(tmp_path, write_image):
    # Red edges, blue centre a little wider than the centre square (columns 32..64), so
    # the 4x filter's taps just past the square's sides still read blue.
    pixels = np.zeros((32, 96, 3), np.uint8)
    pixels[:, :, 0] = 200
    pixels[:, 28:68] = (0, 0, 200)
    out = decode_square(write_image(tmp_path / "a.png", pixels), 8)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert np.array_equal(out, np.broadcast_to(np.array([0, 0, 200], np.uint8), (8, 8, 3)))


def test_jpeg_decodes_close_to_its_source_with_dct_downscaling(tmp_path, write_image):
    y, x = np.mgrid[0:64, 0:64]
    pixels = np.stack([y * 4, x * 4, (x + y) * 2], axis=-1).astype(np.uint8)  # smooth: JPEG keeps it well
    out = decode_square(write_image(tmp_path / "a.jpg", pixels), 16)
    expected = pixels.reshape(16, 4, 16, 4, 3).mean(axis=(1, 3))
    assert np.abs(out.astype(float) - expected).max() < 12


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK"])
def test_other_colour_modes_come_out_rgb(tmp_path, mode):
    grey = np.tile(np.arange(0, 240, 20, dtype=np.uint8), (12, 1))
    image = Image.fromarray(grey).convert(mode)
    path = tmp_path / ("a.jpg" if mode == "CMYK" else "a.png")  # CMYK JPEG: libjpeg-turbo refuses, Pillow reads
    image.save(path)
    out = decode_square(path, 12)
    assert out.shape == (12, 12, 3)
    tolerance = 8 if mode == "CMYK" else 0
    assert np.abs(out.astype(int) - grey[..., None]).max() <= tolerance


def test_corrupt_files_raise_rather_than_return_garbage(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(buffer, format="JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG not really")
    for path in (truncated, garbage):
        with pytest.raises(Exception):
            decode_square(path, 8)
