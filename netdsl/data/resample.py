"""Bilinear resampling of images at arbitrary points: what the geometric
sweeps of `netdsl test --sweep` (inspect/geometry.py) and the elastic
distortion (elastic.py) share.

`resample(images, rows, cols, fill)` reads images (... x H x W, square) at the
given sample points. Outside the image, "reflect" mirrors it about its border
pixels' centres (scipy's "mirror": the texture continues, no new edges) and
"black" reads 0 (the border pixel fades to 0 over one pixel). A sample point
on a whole pixel copies it exactly: its neighbour's weight is 0.
"""
from __future__ import annotations

import numpy as np


def mirror(p: np.ndarray, side: int) -> np.ndarray:
    """Coordinates reflected into [0, side-1] about the border pixels' centres."""
    if side == 1:
        return np.zeros_like(p)
    period = 2 * (side - 1)
    p = np.mod(p, period)
    return np.where(p > side - 1, period - p, p)


def resample(images: np.ndarray, rows: np.ndarray, cols: np.ndarray, fill: str = "reflect") -> np.ndarray:
    """images (... x H x W) read bilinearly at (rows, cols); float32 out."""
    side = images.shape[-1]
    if fill == "reflect":
        rows, cols = mirror(rows, side), mirror(cols, side)
    r0, c0 = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    fr, fc = (rows - r0).astype(np.float32), (cols - c0).astype(np.float32)
    out = np.zeros(images.shape[:-2] + rows.shape, np.float32)
    for dr, wr in ((0, 1 - fr), (1, fr)):
        for dc, wc in ((0, 1 - fc), (1, fc)):
            r, c = r0 + dr, c0 + dc
            weight = wr * wc
            inside = (r >= 0) & (r < side) & (c >= 0) & (c < side)
            if not inside.all():  # reflect never lands outside, except a zero-weight neighbour at the edge
                weight = np.where(inside, weight, np.float32(0))
            picked = images[..., np.clip(r, 0, side - 1), np.clip(c, 0, side - 1)]
            out += picked * weight
    return out
