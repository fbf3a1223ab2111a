"""Adaptive max pooling to an `out` x `out` (or [oh, ow]) map, the windows as
PyTorch's AdaptiveMaxPool2d chooses them (_adaptive.py). The gradient goes to
each window's first maximum in row-major order, as PyTorch's does; where
windows overlap, an element that is the maximum of two receives both."""
from __future__ import annotations

import numpy as np

from ._adaptive import AdaptivePool
from .base import pair, torch_functional


class AdaptiveMaxPool(AdaptivePool):
    kind = "adaptive_maxpool"
    doc = "maximum over windows chosen to give an `out` x `out` map (PyTorch's AdaptiveMaxPool2d)"

    def forward(self, a, params, xs, ctx):
        x = xs[0]
        n, c, _, w = x.shape
        shape = (n, c) + pair(a["out"])
        y, arg = np.empty(shape, x.dtype), np.empty(shape, np.int64)  # arg: offset in the plane
        for oy, ox, (t, b), (l, r) in self.windows(a, x.shape):
            window = x[:, :, t:b, l:r].reshape(n, c, -1)
            best = window.argmax(axis=2)
            y[:, :, oy, ox] = np.take_along_axis(window, best[..., None], axis=2)[..., 0]
            arg[:, :, oy, ox] = (t + best // (r - l)) * w + l + best % (r - l)
        return y, (x.shape, arg)

    def backward(self, a, params, cache, dy, ctx):
        x_shape, arg = cache
        n, c, h, w = x_shape
        dx = np.zeros((n, c, h * w), dy.dtype)
        for oy, ox, _, _ in self.windows(a, x_shape):
            at = arg[:, :, oy, ox][..., None]
            np.put_along_axis(dx, at, np.take_along_axis(dx, at, axis=2) + dy[:, :, oy, ox][..., None], axis=2)
        return [dx.reshape(x_shape)], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return torch_functional().adaptive_max_pool2d(xs[0], self.torch_args(a))

    def onnx(self, b, name, d, xs):
        self.onnx_windows(b, name, d, xs, "MaxPool", "ReduceMax")
