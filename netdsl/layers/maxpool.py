"""Max pooling. The gradient goes to the first maximum of each window in
row-major order, as PyTorch's does, so ties (common after ReLU) agree."""
from __future__ import annotations

import numpy as np

from ._pooling import Pooling
from .base import torch_functional


class MaxPool(Pooling):
    kind = "maxpool"
    doc = "maximum over `size` x `size` windows, `stride` apart"

    def forward(self, a, params, xs, ctx):
        x = xs[0]
        canvas, oh, ow = self.padded(a, x, -np.inf)
        w = self.windows(a, canvas, oh, ow)
        n, c, k = x.shape[0], x.shape[1], a["size"]
        flat = w.transpose(0, 1, 4, 5, 2, 3).reshape(n, c, oh, ow, k * k)
        arg = flat.argmax(axis=-1)
        y = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
        return y, (x.shape, canvas.shape, arg)

    def backward(self, a, params, cache, dy, ctx):
        x_shape, canvas_shape, arg = cache
        oh, ow = dy.shape[2:]
        dcanvas = np.zeros(canvas_shape, dy.dtype)
        for i, j, where in self.window_slices(a, oh, ow):
            dcanvas[where] += dy * (arg == i * a["size"] + j)
        return [self.unpad(a, dcanvas, x_shape)], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return torch_functional().max_pool2d(xs[0], **self.torch_args(a))

    def onnx(self, b, name, d, xs):
        self.onnx_pool(b, "MaxPool", name, d, xs)
