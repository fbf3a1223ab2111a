"""Small built-in datasets in the ImageNet folder layout, for trying the pipeline end to end.

make_shapes draws one shape or texture kind per class, at random sizes,
positions and colours on noisy backgrounds: learnable, but not by a single
pixel. make_digits writes scikit-learn's 1,797 bundled 8x8 handwritten digits.
Both are deterministic functions of their arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

# Shape masks over coordinates (u, v) normalised so the shape spans about [-1, 1].
Mask = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


def _stripes(u, v, frequency):
    return np.floor((v + 1) * frequency) % 2 == 0


SHAPES: dict[str, Mask] = {
    "circle": lambda u, v, f: u**2 + v**2 <= 1,
    "square": lambda u, v, f: np.maximum(abs(u), abs(v)) <= 0.8,
    "triangle": lambda u, v, f: (v <= 0.8) & (abs(u) <= (v + 1) / 2),
    "cross": lambda u, v, f: ((abs(u) <= 0.3) | (abs(v) <= 0.3)) & (np.maximum(abs(u), abs(v)) <= 1),
    "ring": lambda u, v, f: (u**2 + v**2 <= 1) & (u**2 + v**2 >= 0.55**2),
    "diamond": lambda u, v, f: abs(u) + abs(v) <= 1,
    "hstripes": lambda u, v, f: (np.maximum(abs(u), abs(v)) <= 1) & _stripes(u, v, f),
    "vstripes": lambda u, v, f: (np.maximum(abs(u), abs(v)) <= 1) & _stripes(v, u, f),
    "checker": lambda u, v, f: (np.maximum(abs(u), abs(v)) <= 1) & (_stripes(u, v, f) ^ _stripes(v, u, f)),
    "dstripes": lambda u, v, f: (np.maximum(abs(u), abs(v)) <= 1) & _stripes(u, (u + v) / 2, f),
    "frame": lambda u, v, f: (np.maximum(abs(u), abs(v)) <= 1) & (np.maximum(abs(u), abs(v)) >= 0.6),
    "dots": lambda u, v, f: (u**2 + v**2 <= 1) & _stripes(u, v, f) & _stripes(v, u, f),
}
IMAGE_FORMATS = ("jpeg", "png")
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def make_shapes(
    directory: str | Path,
    classes: int = 10,
    train_per_class: int = 160,
    val_per_class: int = 40,
    size: int = 64,
    seed: int = 0,
    image_format: str = "jpeg",
) -> Path:
    """Write a shapes dataset (one class per entry of SHAPES, in order) to `directory`."""
    if not 1 <= classes <= len(SHAPES):
        raise ValueError(f"the shapes dataset has 1 to {len(SHAPES)} classes, got {classes}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}")
    if size < 8:
        raise ValueError(f"shape images need at least 8x8 pixels, got {size}")
    root = _fresh_directory(directory)
    kinds = list(SHAPES)[:classes]
    write = _image_writer(image_format)
    grid = np.mgrid[0:size, 0:size] + 0.5
    for label, kind in enumerate(kinds):
        for split, count in (("train", train_per_class), ("val", val_per_class)):
            folder = root / split / _wnid("s", label)
            folder.mkdir(parents=True)
            # One generator per (class, split): files do not depend on the other classes' counts.
            rng = np.random.default_rng([seed, label, split == "val"])
            for i in range(count):
                write(folder / f"{kind}_{i:05d}", _draw_shape(rng, SHAPES[kind], grid))
    _write_synsets(root, [(_wnid("s", label), kind) for label, kind in enumerate(kinds)])
    return root


def make_digits(directory: str | Path, seed: int = 0, val_fraction: float = 0.2, size: int = 32) -> Path:
    """Write scikit-learn's handwritten digits as size x size grey PNGs, split per class."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError(
            f"the digits dataset comes with scikit-learn ({error}); install it with: pip install scikit-learn"
        ) from error
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    digits = load_digits()
    # Values are 0..16 ink; 255/16 maps them onto the full 8-bit range exactly at both ends.
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    root = _fresh_directory(directory)
    write = _image_writer("png")
    rng = np.random.default_rng(seed)
    for label in range(10):
        members = rng.permutation(np.flatnonzero(digits.target == label))
        val_count = round(val_fraction * len(members))
        for split, chosen in (("val", members[:val_count]), ("train", members[val_count:])):
            folder = root / split / _wnid("d", label)
            folder.mkdir(parents=True)
            for index in sorted(chosen):
                write(folder / f"digit{label}_{index:04d}", _upscale(images[index], size))
    _write_synsets(root, [(_wnid("d", label), name) for label, name in enumerate(DIGIT_NAMES)])
    return root


def _draw_shape(rng: np.random.Generator, mask: Mask, grid: np.ndarray) -> np.ndarray:
    """One RGB image: a noisy background with the shape in a contrasting colour.

    grid: pixel-centre coordinates, 2 x size x size (y then x).
    """
    size = grid.shape[1]
    background = rng.integers(0, 256, 3)
    # Each channel moves 80..128 levels towards the far end, so the shape always stands out.
    contrast = rng.integers(80, 129, 3)
    foreground = np.where(background < 128, background + contrast, background - contrast)
    radius = rng.uniform(0.2, 0.42) * size
    centre_x, centre_y = rng.uniform(radius, size - radius, 2)
    inside = mask((grid[1] - centre_x) / radius, (grid[0] - centre_y) / radius, rng.uniform(2.0, 4.0))
    image = np.where(inside[..., None], foreground.astype(np.int16), background.astype(np.int16))
    # Uniform noise in -32..31 from raw bytes: a quarter of the cost of Gaussian draws.
    image += np.frombuffer(rng.bytes(image.size), np.uint8).reshape(image.shape) >> 2
    image -= 32
    return np.clip(image, 0, 255).astype(np.uint8)


def _upscale(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def _image_writer(image_format: str) -> Callable[[Path, np.ndarray], None]:
    """A function writing uint8 pixels to `stem` + the format's extension."""
    if image_format == "jpeg":
        import simplejpeg

        def write_jpeg(stem: Path, pixels: np.ndarray) -> None:
            stem.with_suffix(".jpeg").write_bytes(simplejpeg.encode_jpeg(np.ascontiguousarray(pixels), quality=90))

        return write_jpeg
    from PIL import Image

    def write_png(stem: Path, pixels: np.ndarray) -> None:
        Image.fromarray(pixels).save(stem.with_suffix(".png"))

    return write_png


def _wnid(prefix: str, label: int) -> str:
    # Fixed-width ids sort in label order, as ImageNet's n01440764-style wnids do.
    return f"{prefix}{label:04d}"


def _write_synsets(root: Path, entries: list[tuple[str, str]]) -> None:
    (root / "synsets.txt").write_text("".join(f"{wnid} {name}\n" for wnid, name in entries))


def _fresh_directory(directory: str | Path) -> Path:
    """The target as an absolute path; refuses to mix a new dataset into existing files."""
    root = Path(directory).expanduser().resolve()
    if root.exists() and any(root.iterdir()):
        raise ValueError(f"{root} already exists and is not empty; choose a new directory or delete it")
    root.mkdir(parents=True, exist_ok=True)
    return root
