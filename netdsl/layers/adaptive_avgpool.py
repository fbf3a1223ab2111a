"""Adaptive average pooling to an `out` x `out` (or [oh, ow]) map, the windows
as PyTorch's AdaptiveAvgPool2d chooses them (_adaptive.py); each window's
plain mean, so its gradient spreads dy / (window size) over it."""
from __future__ import annotations

import numpy as np

from ._adaptive import AdaptivePool
from .base import pair, torch_functional


class AdaptiveAvgPool(AdaptivePool):
    kind = "adaptive_avgpool"
    doc = "mean over windows chosen to give an `out` x `out` map (PyTorch's AdaptiveAvgPool2d)"

    def forward(self, a, params, xs, ctx):
        x = xs[0]
        y = np.empty(x.shape[:2] + pair(a["out"]), x.dtype)
        for oy, ox, (t, b), (l, r) in self.windows(a, x.shape):
            y[:, :, oy, ox] = x[:, :, t:b, l:r].mean(axis=(2, 3), dtype=np.float64)
        return y, x.shape

    def backward(self, a, params, x_shape, dy, ctx):
        dx = np.zeros(x_shape, np.float64)
        for oy, ox, (t, b), (l, r) in self.windows(a, x_shape):
            dx[:, :, t:b, l:r] += (dy[:, :, oy, ox] / ((b - t) * (r - l)))[:, :, None, None]
        return [dx.astype(dy.dtype)], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return torch_functional().adaptive_avg_pool2d(xs[0], self.torch_args(a))

    def onnx(self, b, name, d, xs):
        self.onnx_windows(b, name, d, xs, "AveragePool", "ReduceMean")
