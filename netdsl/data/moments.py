"""The training set's mean image and RGB covariance, as exact sums mergeable across workers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class _Moments:
    """Exact running sums over decoded training images, mergeable across workers."""

    images: int
    pixel_sum: np.ndarray  # size x size x 3 int64
    channel_outer: np.ndarray  # 3 x 3 float64 sums of products of 0..255 values, integer valued

    @classmethod
    def zeros(cls, size: int) -> _Moments:
        return cls(0, np.zeros((size, size, 3), np.int64), np.zeros((3, 3)))

    def add(self, image: np.ndarray) -> None:
        self.images += 1
        self.pixel_sum += image
        planes = np.ascontiguousarray(image.reshape(-1, 3).T, dtype=np.float64)
        # einsum, not BLAS: a 3 x 3 product is too small to thread, and workers already fill the cores.
        self.channel_outer += np.einsum("ik,jk->ij", planes, planes)

    def __add__(self, other: _Moments) -> _Moments:
        return _Moments(
            self.images + other.images,
            self.pixel_sum + other.pixel_sum,
            self.channel_outer + other.channel_outer,
        )

    def statistics(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean image (0..255) and the eigen-decomposition of the [0, 1] RGB covariance."""
        mean = (self.pixel_sum / self.images).astype(np.float32)
        pixels = self.images * self.pixel_sum.shape[0] * self.pixel_sum.shape[1]
        centre = self.pixel_sum.sum(axis=(0, 1)) / pixels
        covariance = (self.channel_outer / pixels - np.outer(centre, centre)) / 255.0**2
        eigval, eigvec = np.linalg.eigh(covariance)
        eigval, eigvec = np.clip(eigval[::-1], 0.0, None), eigvec[:, ::-1]
        # eigh may return either sign; fixing it keeps the cache identical across LAPACK builds.
        signs = np.sign(eigvec[np.abs(eigvec).argmax(axis=0), np.arange(3)])
        return mean, eigval, eigvec * signs
