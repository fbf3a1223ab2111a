"""Window geometry shared by max and average pooling.

Windows may overlap (stride < size: the paper's 3x3 stride-2 pooling) and,
with `pad` or `ceil=true`, hang over the input's edge; such partial windows
see only the input elements they cover, as PyTorch computes them.
"""
from __future__ import annotations

import numpy as np

from .base import ArgSpec, Example, Layer, ShapeError, non_negative, positive, spatial_out
from .conv import _chw, windows

POOL_ARGS = (
    ArgSpec("size", "int", check=positive, doc="window height and width"),
    ArgSpec("stride", "int", None, positive, doc="step between windows (default: size, no overlap)"),
    ArgSpec("pad", "int", 0, non_negative, doc="implicit border; padded elements never count"),
    ArgSpec("ceil", "bool", False, doc="round the output size up, keeping a partial last window"),
)

POOL_EXAMPLES = (
    Example({"size": 3, "stride": 2, "pad": 0, "ceil": False}, [(3, 7, 8)], "overlapping, as the paper"),
    Example({"size": 2, "stride": 2, "pad": 0, "ceil": True}, [(5, 5, 7)], "partial edge windows"),
    Example({"size": 3, "stride": 2, "pad": 1, "ceil": False}, [(2, 6, 5)], "padded"),
    Example({"size": 3, "stride": 3, "pad": 0, "ceil": True}, [(1, 8, 8)], "ceil with leftover"),
    Example({"size": 3, "stride": 2, "pad": 1, "ceil": True}, [(3, 6, 7)], "padded and ceil: last windows hang past the padding"),
    Example({"size": 2, "stride": 3, "pad": 0, "ceil": True}, [(5, 8, 7)], "gaps between windows, partial last column"),
    Example({"size": 2}, [(3, 5, 6)], "default stride and pad: odd height drops a row"),
)


def out_len(size: int, k: int, s: int, p: int, ceil: bool) -> int:
    if not ceil:
        return spatial_out(size, k, s, p)
    n = -(-(size + 2 * p - k) // s) + 1
    # The last window must start inside the input or its left padding.
    return n - 1 if (n - 1) * s >= size + p else n


class Pooling(Layer):
    args = POOL_ARGS
    examples = POOL_EXAMPLES

    @staticmethod
    def stride(a) -> int:
        return a["stride"] or a["size"]

    def check_args(self, a):
        if a["pad"] * 2 > a["size"]:
            return "`pad` may be at most half of `size`"
        return None

    def output_shape(self, a, in_shapes):
        c, h, w = _chw(in_shapes[0], self.kind)
        k, s, p = a["size"], self.stride(a), a["pad"]
        if k > h + 2 * p or k > w + 2 * p:
            raise ShapeError(f"a {k}x{k} pooling window is larger than its {h}x{w} input",
                             "use a smaller `size` or pool earlier")
        return (c, out_len(h, k, s, p, a["ceil"]), out_len(w, k, s, p, a["ceil"]))

    def padded(self, a, x: np.ndarray, fill: float):
        """x placed in a canvas exactly covering every window, plus (OH, OW)."""
        n, c, h, w = x.shape
        k, s, p = a["size"], self.stride(a), a["pad"]
        oh, ow = out_len(h, k, s, p, a["ceil"]), out_len(w, k, s, p, a["ceil"])
        eh, ew = (oh - 1) * s + k, (ow - 1) * s + k
        canvas = np.full((n, c, eh, ew), fill, x.dtype)
        canvas[:, :, p:p + h, p:p + w] = x[:, :, :eh - p, :ew - p]
        return canvas, oh, ow

    def unpad(self, a, canvas: np.ndarray, x_shape) -> np.ndarray:
        h, w = x_shape[2:]
        p = a["pad"]
        dx = np.zeros(x_shape, canvas.dtype)
        part = canvas[:, :, p:p + h, p:p + w]
        dx[:, :, :part.shape[2], :part.shape[3]] = part
        return dx

    def window_slices(self, a, oh: int, ow: int):
        """(i, j, slice-tuple) for every offset inside a window."""
        k, s = a["size"], self.stride(a)
        for i in range(k):
            for j in range(k):
                yield i, j, (slice(None), slice(None), slice(i, i + s * oh, s), slice(j, j + s * ow, s))

    def windows(self, a, canvas, oh, ow):
        return windows(canvas, a["size"], self.stride(a), oh, ow)

    def macs(self, a, in_shapes, out_shape):
        return 0

    def torch_args(self, a) -> dict:
        return dict(kernel_size=a["size"], stride=self.stride(a), padding=a["pad"], ceil_mode=bool(a.get("ceil")))

    def onnx_pool(self, b, op_type: str, name, d, xs, **extra) -> None:
        a = d.args
        b.op(op_type, [xs[0]], name, kernel_shape=[a["size"]] * 2, strides=[self.stride(a)] * 2, pads=[a["pad"]] * 4,
             ceil_mode=int(bool(a.get("ceil"))), **extra)


def window_count(a, pool: Pooling, x_shape, dtype) -> np.ndarray:
    """How many real input elements each output window covers: (1, 1, OH, OW)."""
    ones, oh, ow = pool.padded(a, np.ones((1, 1) + tuple(x_shape[2:]), dtype), 0.0)
    return pool.windows(a, ones, oh, ow).sum(axis=(2, 3))

