"""Fixed transforms for `netdsl test --transform`: is the network invariant
to a mirror image or a rotation? Each acts on the crop the network sees
(N x C x H x W, square), before the per-pixel mean is subtracted, so a
rotated image is compared against the same mean as an upright one."""
from __future__ import annotations

import numpy as np

TRANSFORMS = {
    "none": lambda x: x,
    "hflip": lambda x: x[..., ::-1],
    "vflip": lambda x: x[..., ::-1, :],
    "rotate90": lambda x: np.rot90(x, 1, axes=(-2, -1)),  # a quarter turn anticlockwise
    "rotate180": lambda x: np.rot90(x, 2, axes=(-2, -1)),
    "rotate270": lambda x: np.rot90(x, 3, axes=(-2, -1)),
    "transpose": lambda x: np.swapaxes(x, -2, -1),
}


def transformed(batches, name, mean_crop: np.ndarray | None):
    """(T(images), labels) per batch; `name` is one of TRANSFORMS or a linear function of the
    pixels (geometry.py's). The loader subtracted `mean_crop` (C x H x W) already;
    T(x - m) + T(m) - m is T(x) - m, the transformed image with the usual mean taken off."""
    transform = TRANSFORMS[name] if isinstance(name, str) else name
    shift = None if mean_crop is None else (transform(mean_crop) - mean_crop).astype(np.float32)
    for images, labels in batches:
        out = np.ascontiguousarray(transform(images))
        if shift is not None:
            out += shift
        yield out, labels
