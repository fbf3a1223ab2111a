"""What `add` and `mul` share: inputs of one shape, or a C x H x W map and
per-channel values C x 1 x 1 (a squeeze-and-excitation block's scale, a
per-channel shift) broadcast over its pixels, as PyTorch broadcasts
N x C x 1 x 1 against N x C x H x W. The output has the map's shape.

Only that one broadcast is accepted: any other mismatch is far more often a
wrong branch than an intended broadcast, and the caller's error says how to
fix it."""
from __future__ import annotations

import math

import numpy as np


def is_channel_values(shape, out) -> bool:
    """`shape` broadcasts onto `out` as one value per channel."""
    return len(shape) == len(out) == 3 and tuple(shape) == (out[0], 1, 1) and out[1:] != (1, 1)


def broadcast_shape(in_shapes) -> tuple[int, ...] | None:
    """The output shape, or None if some input neither equals it nor gives one value per channel."""
    out = tuple(max(in_shapes, key=math.prod))
    if all(tuple(s) == out or is_channel_values(s, out) for s in in_shapes):
        return out
    return None


def reduce_to(grad: np.ndarray, shape) -> np.ndarray:
    """The gradient of an input that was broadcast: summed over the pixels it was spread to."""
    if tuple(grad.shape[1:]) == tuple(shape):
        return grad
    return grad.sum(axis=(2, 3), keepdims=True, dtype=np.float64).astype(grad.dtype)
