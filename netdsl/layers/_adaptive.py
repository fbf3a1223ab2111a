"""What adaptive average and max pooling share: windows chosen so the output
is `out` (oh x ow) whatever the input's size, by PyTorch's rule
(AdaptiveAvgPool2d / AdaptiveMaxPool2d): output row i covers input rows
floor(i H / oh) to ceil((i + 1) H / oh) - 1, and columns likewise. Windows
differ in size by at most one and overlap where oh does not divide H; an
output larger than the input repeats input rows. A head written with an
adaptive pool (torchvision's AdaptiveAvgPool2d((6, 6)) before AlexNet's and
VGG's classifiers) is not tied to one input resolution."""
from __future__ import annotations

import numpy as np

from .base import ArgSpec, Example, Layer, each, pair, positive
from .conv import _chw


def bounds(i: int, size: int, out: int) -> tuple[int, int]:
    """Input rows [start, end) of output row i: floor(i size / out), ceil((i + 1) size / out)."""
    return (i * size) // out, -(-((i + 1) * size) // out)


class AdaptivePool(Layer):
    args = (ArgSpec("out", "int_pair", check=each(positive), doc="output height and width: n or [oh, ow]"),)
    examples = (
        Example({"out": 3}, [(2, 7, 8)], "windows of two sizes, overlapping"),
        Example({"out": [2, 4]}, [(3, 6, 8)], "dividing evenly: plain pooling"),
        Example({"out": 1}, [(4, 3, 5)], "global"),
        Example({"out": [5, 2]}, [(1, 3, 7)], "more rows out than in: rows repeat"),
    )

    def output_shape(self, a, in_shapes):
        c, _, _ = _chw(in_shapes[0], self.kind)
        return (c, *pair(a["out"]))

    def windows(self, a, x_shape):
        """(oy, ox, (top, bottom), (left, right)) for every output pixel."""
        h, w = x_shape[-2:]
        oh, ow = pair(a["out"])
        for oy in range(oh):
            for ox in range(ow):
                yield oy, ox, bounds(oy, h, oh), bounds(ox, w, ow)

    def torch_args(self, a):
        return tuple(pair(a["out"]))

    def onnx_windows(self, b, name, d, xs, pool_op: str, reduce_op: str, **extra) -> None:
        """An ONNX pooling operator where the windows tile the input evenly; otherwise (ONNX has
        no adaptive pooling) each window sliced and reduced, joined by Concat along rows."""
        x = xs[0]
        _, h, w = b.shapes[x]
        oh, ow = pair(d.args["out"])
        if h % oh == 0 and w % ow == 0:
            kernel = [h // oh, w // ow]
            b.op(pool_op, [x], name, kernel_shape=kernel, strides=kernel, **extra)
            return
        axes = b.constant(b.fresh("axes"), np.array([2, 3], np.int64))
        rows = []
        for oy in range(oh):
            cells = []
            for ox in range(ow):
                (top, bottom), (left, right) = bounds(oy, h, oh), bounds(ox, w, ow)
                window = b.op("Slice", [x, b.constant(b.fresh("starts"), np.array([top, left], np.int64)),
                                        b.constant(b.fresh("ends"), np.array([bottom, right], np.int64)), axes])
                cells.append(b.op(reduce_op, [window, axes], keepdims=1))
            rows.append(b.op("Concat", cells, axis=3) if ow > 1 else cells[0])
        if oh > 1:
            b.op("Concat", rows, name, axis=2)
        else:
            b.op("Identity", rows, name)
