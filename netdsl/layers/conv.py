"""2-D convolution (cross-correlation, as every framework computes it).

Grouped connectivity is not an argument: a tower's conv reads only its own
tower's channels, so AlexNet's groups fall out of the graph. The numpy
reference lowers to one large matrix product per batch (im2col), which is
what keeps it within reach of PyTorch on the CPU.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ._weights import WEIGHT_ARGS, WeightedLayer
from .base import ArgSpec, Example, ShapeError, non_negative, positive, spatial_out


def windows(xp: np.ndarray, k: int, stride: int, oh: int, ow: int) -> np.ndarray:
    """View of every k x k window of padded xp: (N, C, k, k, OH, OW), no copy."""
    n, c, _, _ = xp.shape
    sn, sc, sh, sw = xp.strides
    return as_strided(xp, (n, c, k, k, oh, ow), (sn, sc, sh, sw, sh * stride, sw * stride), writeable=False)


def pad_spatial(x: np.ndarray, pad: int, value=0.0) -> np.ndarray:
    if pad == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=value)


def im2col(x: np.ndarray, k: int, stride: int, pad: int, oh: int, ow: int) -> np.ndarray:
    """(C*k*k, N*OH*OW) matrix of input patches, columns ordered (n, y, x)."""
    w = windows(pad_spatial(x, pad), k, stride, oh, ow)
    n, c = x.shape[:2]
    return np.ascontiguousarray(w.transpose(1, 2, 3, 0, 4, 5)).reshape(c * k * k, n * oh * ow)


def col2im(cols: np.ndarray, x_shape, k: int, stride: int, pad: int, oh: int, ow: int) -> np.ndarray:
    """Adjoint of im2col: scatter-add patch gradients back onto the input."""
    n, c, h, w = x_shape
    dxp = np.zeros((n, c, h + 2 * pad, w + 2 * pad), cols.dtype)
    cols = cols.reshape(c, k, k, n, oh, ow)
    for i in range(k):
        for j in range(k):
            dxp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += cols[:, i, j].transpose(1, 0, 2, 3)
    return dxp[:, :, pad:pad + h, pad:pad + w] if pad else dxp


class Conv(WeightedLayer):
    kind = "conv"
    doc = "convolution with `filters` output channels and square `size` x `size` kernels"
    args = (
        ArgSpec("filters", "int", check=positive, doc="output channels"),
        ArgSpec("size", "int", check=positive, doc="kernel height and width"),
        ArgSpec("stride", "int", 1, positive),
        ArgSpec("pad", "int", 0, non_negative, doc="zeros added on every side"),
    ) + WEIGHT_ARGS
    examples = (
        Example({"filters": 4, "size": 3, "stride": 2, "pad": 1}, [(3, 7, 6)], "stride with leftover"),
        Example({"filters": 5, "size": 5, "stride": 1, "pad": 0}, [(5, 9, 9)]),
        Example({"filters": 3, "size": 1, "stride": 1, "pad": 0}, [(5, 3, 3)], "1x1"),
        Example({"filters": 2, "size": 4, "stride": 3, "pad": 2}, [(3, 11, 10)], "overlap and odd width"),
        Example({"filters": 1, "size": 2, "stride": 2, "pad": 1}, [(1, 5, 4)], "one channel in and out, even kernel"),
    )

    def output_shape(self, a, in_shapes):
        c, h, w = _chw(in_shapes[0], self.kind)
        k, s, p = a["size"], a["stride"], a["pad"]
        if k > h + 2 * p or k > w + 2 * p:
            raise ShapeError(f"a {k}x{k} kernel is larger than its {h}x{w} input (padded by {p})",
                             "use a smaller `size`, more `pad`, or a larger input")
        return (a["filters"], spatial_out(h, k, s, p), spatial_out(w, k, s, p))

    def param_shapes(self, a, in_shapes):
        c = in_shapes[0][0]
        return {"weight": (a["filters"], c, a["size"], a["size"]), "bias": (a["filters"],)}

    def macs(self, a, in_shapes, out_shape):
        f, oh, ow = out_shape
        return f * oh * ow * in_shapes[0][0] * a["size"] ** 2

    def forward(self, a, params, xs, ctx):
        x = xs[0]
        k, s, p = a["size"], a["stride"], a["pad"]
        n = x.shape[0]
        oh, ow = spatial_out(x.shape[2], k, s, p), spatial_out(x.shape[3], k, s, p)
        cols = im2col(x, k, s, p, oh, ow)
        y = params["weight"].reshape(a["filters"], -1) @ cols
        # Bias in place on the fresh product, so the batch-first reorder below
        # is the only copy of the output.
        y += params["bias"][:, None]
        y = y.reshape(a["filters"], n, oh, ow).transpose(1, 0, 2, 3)
        return np.ascontiguousarray(y), (x.shape, cols)

    def backward(self, a, params, cache, dy, ctx):
        x_shape, cols = cache
        k, s, p = a["size"], a["stride"], a["pad"]
        f, oh, ow = dy.shape[1:]
        dyr = dy.transpose(1, 0, 2, 3).reshape(f, -1)
        w = params["weight"].reshape(f, -1)
        dw = (dyr @ cols.T).reshape(params["weight"].shape)
        dx = col2im(w.T @ dyr, x_shape, k, s, p, oh, ow) if ctx is None or ctx.wants_input_grad(0) else None
        return [dx], {"weight": dw, "bias": dyr.sum(axis=1)}


def _chw(shape, kind: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"{kind} needs a C x H x W input, got {'x'.join(map(str, shape))}",
                         "a convolution or pooling cannot follow a fully connected layer")
    return shape
