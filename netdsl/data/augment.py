"""The paper's data augmentation, over a batch at a time.

Input: uint8 images N x S x S x 3 (HWC, RGB) from the prepared cache.
Output: float32 N x 3 x c x c (NCHW, the executors' layout) on the 0..255 pixel
scale, with the training mean image subtracted.

Choices, all in the spirit of Krizhevsky et al. 2012:

* Mean subtraction subtracts the per-pixel mean image over the training set
  ("the mean activity over the training set from each pixel"), taken at the
  same window as the crop and mirrored with it, so every output pixel has the
  mean of the very source pixel it came from removed (Caffe's convention;
  cuda-convnet subtracts the centre window instead).
* PCA lighting adds PIXEL_MAX * eigvec @ (alpha * eigval) to every pixel, with
  alpha ~ N(0, std) drawn per image and per component. eigval/eigvec describe
  RGB scaled to [0, 1] (see prepare.py), hence the PIXEL_MAX factor.
* ten_crop returns 10 x N x 3 x c x c, crop-major: [top-left, top-right,
  bottom-left, bottom-right, centre, then the same five mirrored]. Each
  crop[k] is a contiguous batch the network can run as is; averaging the
  softmax over axis 0 gives the paper's ten-patch prediction.
* Centre windows start at (S - c) // 2.

Randomness comes from counter_rng(seed, stream, epoch, batch): a Philox
generator whose counter starts at (epoch, batch), so a batch's augmentation
depends only on those numbers, never on which worker made it or when.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PIXEL_MAX = 255.0
AUGMENT_STREAM = 1
CROP_MODES = ("random", "center", "ten")


def counter_rng(seed: int, stream: int, epoch: int, index: int) -> np.random.Generator:
    """Generator for item `index` of `epoch`: key (seed, stream), counter (epoch, index).

    Draws advance the two low counter words only, so streams of different
    (epoch, index) can never overlap.
    """
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return np.random.Generator(np.random.Philox(key=[seed, stream], counter=[0, 0, index, epoch]))


@dataclass(frozen=True)
class AugmentSpec:
    """What to do to each batch.

    crop: output side c (None keeps the prepared size); crop_mode: "random"
    (training), "center" or "ten" (evaluation, deterministic); flip: mirror
    each image with probability 1/2; pca_std: std of the lighting alphas (paper
    0.1, 0 disables); mean_subtract: remove the training mean image.
    """

    crop: int | None = None
    flip: bool = False
    pca_std: float = 0.0
    mean_subtract: bool = True
    crop_mode: str = "random"
    elastic: tuple[float, float] | None = None  # (alpha, sigma) in pixels: elastic.py

    def __post_init__(self):
        if self.crop_mode not in CROP_MODES:
            raise ValueError(f"unknown crop mode {self.crop_mode!r}; expected one of {', '.join(CROP_MODES)}")
        if self.crop is not None and self.crop < 1:
            raise ValueError(f"crop size must be positive, got {self.crop}")
        if self.pca_std < 0:
            raise ValueError(f"pca_std must be non-negative, got {self.pca_std}")
        if self.crop_mode != "random" and (self.flip or self.pca_std or self.elastic):
            raise ValueError(f"crop mode {self.crop_mode!r} is for evaluation: it takes no flip or PCA lighting")

    @classmethod
    def paper_train(cls, crop: int = 224) -> AugmentSpec:
        return cls(crop=crop, flip=True, pca_std=0.1)

    @classmethod
    def paper_test(cls, crop: int = 224, ten: bool = False) -> AugmentSpec:
        return cls(crop=crop, crop_mode="ten" if ten else "center")


class RowView:
    """images[rows] without the copy: a batch's images read where they lie in the cache.

    Indexing with a tuple (i, ...) reads image rows[i] and slices it, so the
    crop is the only pass over an image's bytes: gathering whole 256 px images
    first would copy a third more bytes than the crop and touch them twice."""

    def __init__(self, images: np.ndarray, rows: np.ndarray):
        # A plain ndarray view: a memmap's per-item indexing costs Python-level
        # bookkeeping for every image.
        self.images = images.view(np.ndarray) if isinstance(images, np.memmap) else images
        self.rows = np.asarray(rows)
        self.shape = (len(self.rows),) + tuple(images.shape[1:])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            return self.images[self.rows[key[0]]][key[1:]]
        return self.images[self.rows[key]]


@dataclass(frozen=True)
class Windows:
    """Where each image of a batch is cut: top-left corner and whether it is mirrored."""

    top: np.ndarray
    left: np.ndarray
    flipped: np.ndarray


def random_windows(rng: np.random.Generator, count: int, size: int, crop: int, flip: bool) -> Windows:
    """Independent uniform offsets per image, each mirrored with probability 1/2 if `flip`."""
    _check_fits(size, crop)
    top = rng.integers(0, size - crop + 1, count)
    left = rng.integers(0, size - crop + 1, count)
    flipped = rng.random(count) < 0.5 if flip else np.zeros(count, bool)
    return Windows(top, left, flipped)


def fixed_windows(count: int, top: int, left: int, flipped: bool = False) -> Windows:
    return Windows(np.full(count, top), np.full(count, left), np.full(count, flipped))


def ten_crop_windows(count: int, size: int, crop: int) -> list[Windows]:
    _check_fits(size, crop)
    far, centre = size - crop, (size - crop) // 2
    corners = [(0, 0), (0, far), (far, 0), (far, far), (centre, centre)]
    return [fixed_windows(count, top, left, flipped) for flipped in (False, True) for top, left in corners]


def extract(
    images: np.ndarray, windows: Windows, crop: int, mean: np.ndarray | None = None, shifts: np.ndarray | None = None
) -> np.ndarray:
    """Cut, mirror, mean-subtract, light and transpose to float32 NCHW in one pass per image.

    A loop over images of whole-window numpy operations: each step touches
    c*c*3 values, so the loop costs microseconds per image, and it avoids the
    index arrays a fully vectorised gather would build. The lighting shift
    (float32, count x 3) is added to the image just written, while it is still
    in cache; the arithmetic is the device kernel's: float32 (x - mean) + shift.
    """
    count = len(images)
    out = np.empty((count, 3, crop, crop), np.float32)
    mean_chw = None if mean is None else np.ascontiguousarray(mean.transpose(2, 0, 1), dtype=np.float32)
    shift_chw = None if shifts is None else np.asarray(shifts, np.float32)[:, :, None, None]
    for i in range(count):
        top, left = windows.top[i], windows.left[i]
        columns = _columns(left, crop, windows.flipped[i])
        source = images[i, top : top + crop, columns].transpose(2, 0, 1)
        if mean_chw is None:
            out[i] = source
        else:
            np.subtract(source, mean_chw[:, top : top + crop, columns], out=out[i])
        if shift_chw is not None:
            out[i] += shift_chw[i]
    return out


def lighting_shifts(
    rng: np.random.Generator, count: int, std: float, eigval: np.ndarray, eigvec: np.ndarray
) -> np.ndarray:
    """The per-image RGB offsets of PCA lighting, count x 3, on the 0..255 scale.

    Three numbers per image, not per pixel: they are made in float64 (Philox's
    normal draw is float64) and rounded to float32 once by the callers, as both
    the host and the device paths always have, so saved batches stay valid."""
    alpha = rng.normal(0.0, std, (count, 3))
    return PIXEL_MAX * (alpha * eigval) @ eigvec.T


def add_lighting(batch: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Add each image's RGB shift to all its pixels, in place (NCHW batch)."""
    batch += shifts[:, :, None, None].astype(np.float32)
    return batch


def random_crop(
    images: np.ndarray, crop: int, rng: np.random.Generator, flip: bool = False, mean: np.ndarray | None = None
) -> np.ndarray:
    return extract(images, random_windows(rng, len(images), images.shape[1], crop, flip), crop, mean)


def center_crop(images: np.ndarray, crop: int, mean: np.ndarray | None = None) -> np.ndarray:
    size = images.shape[1]
    _check_fits(size, crop)
    return extract(images, fixed_windows(len(images), (size - crop) // 2, (size - crop) // 2), crop, mean)


def ten_crop(images: np.ndarray, crop: int, mean: np.ndarray | None = None) -> np.ndarray:
    """10 x N x 3 x c x c, in the order given in the module docstring."""
    return np.stack([extract(images, w, crop, mean) for w in ten_crop_windows(len(images), images.shape[1], crop)])


def augment_batch(
    images: np.ndarray,
    spec: AugmentSpec,
    rng: np.random.Generator,
    mean: np.ndarray,
    eigval: np.ndarray,
    eigvec: np.ndarray,
    within: tuple[int, int] | None = None,
) -> np.ndarray:
    """Apply `spec` to a uint8 HWC batch; draws windows first, then lighting alphas.

    within=(first, count): `images` are images first.. of a batch of `count` (a
    data-parallel rank's shard). The draws are made for the whole batch and this
    part's are used, so each image gets what it gets when the batch is made whole."""
    first, count = within or (0, len(images))
    part = slice(first, first + len(images))
    crop = spec.crop or images.shape[1]
    mean = mean if spec.mean_subtract else None
    if spec.crop_mode == "ten":
        return ten_crop(images, crop, mean)
    if spec.crop_mode == "center":
        return center_crop(images, crop, mean)
    w = random_windows(rng, count, images.shape[1], crop, spec.flip)
    # Both draws precede the pixel work, so lighting can be added in the same pass.
    shifts = lighting_shifts(rng, count, spec.pca_std, eigval, eigvec)[part] if spec.pca_std else None
    batch = extract(images, Windows(w.top[part], w.left[part], w.flipped[part]), crop, mean,
                    None if shifts is None else shifts.astype(np.float32))
    if spec.elastic:  # its draws come last: without it, every other draw is as it was
        from .elastic import elastic_batch
        batch = elastic_batch(batch, rng, count, part, *spec.elastic)
    return batch


@dataclass(frozen=True)
class Crops:
    """A training batch as the cuda backend uploads it: what only the host can do is done.

    crops: uint8 N x c x c x 3 (HWC, as the cache holds them), cut at each window and
    not mirrored; windows: int32 N x 3 (top, left, mirrored 0/1), for the device to
    mirror and to read the mean image at the crop's source pixels; shifts: float32 N x 3,
    each image's PCA lighting offset, rounded to float32 as add_lighting rounds it.
    The device (templates/input_augment.j2) turns them into augment_batch's float batch.
    """

    crops: np.ndarray
    windows: np.ndarray
    shifts: np.ndarray | None

    def __len__(self) -> int:
        return len(self.crops)


def crop_batch(
    images: np.ndarray,
    spec: AugmentSpec,
    rng: np.random.Generator,
    eigval: np.ndarray,
    eigvec: np.ndarray,
    within: tuple[int, int] | None = None,
) -> Crops:
    """augment_batch's random-crop training path up to the float conversion: the same draws
    in the same order (windows, then lighting alphas), so a batch is the same function of
    (seed, epoch, batch) whichever path makes it."""
    if spec.crop_mode != "random":
        raise ValueError(f"device augmentation is for training's random crops, not {spec.crop_mode!r}")
    first, count = within or (0, len(images))
    part = slice(first, first + len(images))
    crop = spec.crop or images.shape[1]
    w = random_windows(rng, count, images.shape[1], crop, spec.flip)
    top, left = w.top[part], w.left[part]
    crops = np.empty((len(images), crop, crop, images.shape[3]), np.uint8)
    for i in range(len(images)):
        crops[i] = images[i, top[i] : top[i] + crop, left[i] : left[i] + crop]
    windows = np.stack([top, left, w.flipped[part]], axis=1).astype(np.int32)
    shifts = None
    if spec.pca_std:
        shifts = lighting_shifts(rng, count, spec.pca_std, eigval, eigvec)[part].astype(np.float32)
    return Crops(crops, windows, shifts)


def _columns(left: int, crop: int, flipped: bool) -> slice:
    """Columns left .. left+crop-1, right to left when mirrored: a view, never a copy."""
    if not flipped:
        return slice(left, left + crop)
    return slice(left + crop - 1, left - 1 if left else None, -1)


def _check_fits(size: int, crop: int) -> None:
    if crop > size:
        raise ValueError(f"crop {crop} is larger than the {size}x{size} prepared images")
