"""Tiny datasets for the data tests: a few pixels per image, a few images per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from netdsl.data.prepare import PreparedData


def _write_image(path: Path, pixels: np.ndarray) -> Path:
    """Write uint8 pixels in the format the suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else None)
    return path


@pytest.fixture
def write_image():
    return _write_image


@pytest.fixture
def make_dataset(tmp_path):
    """Build DIR/train|val/<class>/ folders of random PNGs: make_dataset({"cat": 3}, {"cat": 1})."""

    def build(train: dict[str, int], val: dict[str, int] | None = None, shape=(10, 14), seed=0) -> Path:
        rng = np.random.default_rng(seed)
        root = tmp_path / "dataset"
        for split, counts in (("train", train), ("val", val or {})):
            for name, count in counts.items():
                (root / split / name).mkdir(parents=True, exist_ok=True)
                for i in range(count):
                    _write_image(root / split / name / f"{i}.png", rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
        return root

    return build


@pytest.fixture
def tiny_dataset(make_dataset) -> Path:
    return make_dataset({"ant": 4, "bee": 3, "cow": 5}, {"ant": 2, "bee": 1, "cow": 2})


def _fake_prepared(count: int = 37, size: int = 12, classes: int = 5, seed: int = 0) -> PreparedData:
    """A PreparedData held in memory: random images, their exact mean, an orthonormal eigvec."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    labels = np.arange(count, dtype=np.int64) % classes
    eigvec, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return PreparedData(
        cache_dir=Path("unused"),
        size=size,
        train_images=images,
        train_labels=labels,
        val_images=images[: count // 2],
        val_labels=labels[: count // 2],
        mean=images.mean(axis=0).astype(np.float32),
        eigval=np.array([0.2, 0.02, 0.005]),
        eigvec=eigvec,
        classes=[f"c{i}" for i in range(classes)],
        class_names=[f"class {i}" for i in range(classes)],
        skipped=[],
    )


@pytest.fixture
def fake_prepared():
    return _fake_prepared


@pytest.fixture
def prepared() -> PreparedData:
    return _fake_prepared()


def _ramp(count: int, size: int) -> np.ndarray:
    """Images whose every pixel says where it is: R = row, G = column, B = image index."""
    images = np.empty((count, size, size, 3), np.uint8)
    images[..., 0] = np.arange(size)[None, :, None]
    images[..., 1] = np.arange(size)[None, None, :]
    images[..., 2] = np.arange(count)[:, None, None]
    return images


@pytest.fixture
def ramp():
    return _ramp
