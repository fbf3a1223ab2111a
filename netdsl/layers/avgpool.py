"""Average pooling. A window is divided by the number of input elements it
really covers (PyTorch's count_include_pad=False), so edge windows are
plain means of what they see. That holds for the windows `ceil` adds past
the padding too, as in PyTorch with ceil_mode=True (whose count_include_pad=True
would count the padding but not the overhang)."""
from __future__ import annotations

import numpy as np

from ._pooling import Pooling, window_count
from .base import torch_functional


class AvgPool(Pooling):
    kind = "avgpool"
    doc = "mean over `size` x `size` windows, `stride` apart"

    def forward(self, a, params, xs, ctx):
        x = xs[0]
        canvas, oh, ow = self.padded(a, x, 0.0)
        count = window_count(a, self, x.shape, x.dtype)
        y = self.windows(a, canvas, oh, ow).sum(axis=(2, 3)) / count
        return y.astype(x.dtype), (x.shape, canvas.shape, count)

    def backward(self, a, params, cache, dy, ctx):
        x_shape, canvas_shape, count = cache
        oh, ow = dy.shape[2:]
        share = dy / count
        dcanvas = np.zeros(canvas_shape, dy.dtype)
        for _, _, where in self.window_slices(a, oh, ow):
            dcanvas[where] += share
        return [self.unpad(a, dcanvas, x_shape)], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return torch_functional().avg_pool2d(xs[0], count_include_pad=False, **self.torch_args(a))

    def onnx(self, b, name, d, xs):
        self.onnx_pool(b, "AveragePool", name, d, xs, count_include_pad=0)
