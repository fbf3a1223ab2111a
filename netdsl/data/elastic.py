"""Elastic distortion (Simard, Steinkraus & Platt 2003, "Best practices for
convolutional neural networks applied to visual document analysis"): every
pixel moves by a random displacement field that is smooth, so strokes and
edges bend but stay whole.

For each image and each axis: a field of independent U(-1, 1) values per
pixel, convolved with a normalised Gaussian of standard deviation `sigma`
pixels (truncated at 4 sigma, the image mirrored at its border as scipy's
gaussian_filter does), times `alpha` pixels. The output pixel (r, c) reads
the image at (r + dy, c + dx), bilinearly, mirrored past the border
(resample.py). Simard's MNIST setting is alpha = 34, sigma = 4 on 28 px
digits; small sigma is noise, large sigma a near-uniform shift.

In the train block: `augment = [random_crop(224, from=256), hflip, elastic(alpha=34, sigma=4)]`.
It acts on the training crop after mirroring, mean subtraction and lighting
(a per-image constant, which the resampling's weights, summing to 1, keep).
Its draws come after the windows' and the lighting's from the same batch
generator (one 63-bit key per image of the whole batch, then a generator per
image), so a batch is a function of (seed, epoch, batch) as before, a
data-parallel shard gets its images' fields, and a spec without elastic draws
exactly what it drew before. Cost: two small matrix products and one
bilinear pass per image, on the host (the cuda backend then takes float
batches from the host instead of augmenting on the device).
"""
from __future__ import annotations

import numpy as np

from .resample import resample

TRUNCATE = 4.0


def gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(TRUNCATE * sigma + 0.5))  # scipy.ndimage's radius for truncate=4
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def smoothing_matrix(size: int, sigma: float) -> np.ndarray:
    """size x size: row i holds the kernel's weights on the samples it reads, the border mirrored
    (d c b a | a b c d, repeated when the kernel is wider than the image)."""
    k = gaussian_kernel(sigma)
    radius = len(k) // 2
    reads = np.arange(size)[:, None] + np.arange(len(k))[None, :] - radius
    folded = np.mod(reads, 2 * size)
    folded = np.where(folded >= size, 2 * size - 1 - folded, folded)
    matrix = np.zeros((size, size))
    np.add.at(matrix, (np.broadcast_to(np.arange(size)[:, None], folded.shape), folded),
              np.broadcast_to(k, folded.shape))
    return matrix


def smooth(fields: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur over the last two axes (... x H x W), as two matrix products: the cost does
    not grow with sigma."""
    rows = smoothing_matrix(fields.shape[-2], sigma)
    cols = smoothing_matrix(fields.shape[-1], sigma)
    return rows @ np.asarray(fields, np.float64) @ cols.T


def displacement(rng: np.random.Generator, side: int, alpha: float, sigma: float) -> np.ndarray:
    """2 x side x side: (rows, cols) displacements in pixels for one image (as elastic_batch draws them)."""
    return alpha * smooth(rng.uniform(-1.0, 1.0, (2, side, side)), sigma)


def distort(image: np.ndarray, field: np.ndarray) -> np.ndarray:
    """One C x H x W image read at (r + field[0], c + field[1])."""
    side = image.shape[-1]
    r, c = np.meshgrid(np.arange(side, dtype=np.float64), np.arange(side, dtype=np.float64), indexing="ij")
    return resample(image, r + field[0], c + field[1], "reflect")


def image_keys(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.integers(0, 2**63 - 1, count, dtype=np.int64)


def elastic_batch(batch: np.ndarray, rng: np.random.Generator, count: int, part: slice, alpha: float,
                  sigma: float) -> np.ndarray:
    """Distort each image of `batch` (images `part` of a batch of `count`, N x C x H x W float32)."""
    keys = image_keys(rng, count)[part]
    side = batch.shape[-1]
    noise = np.stack([np.random.Generator(np.random.Philox(key=int(key))).uniform(-1.0, 1.0, (2, side, side))
                      for key in keys]) if len(keys) else np.zeros((0, 2, side, side))
    fields = alpha * smooth(noise, sigma)  # the whole batch's fields in one pass
    out = np.empty_like(batch)
    for i in range(len(batch)):
        out[i] = distort(batch[i], fields[i])
    return out
