"""Softmax over the channels, e^x_c / sum_k e^x_k (as torch.softmax(x, dim=1)):
class probabilities for an inference output, or per pixel for a C x H x W
map. The largest value is subtracted first, so e^x never overflows. Its
gradient reads only the output: dx = y (dy - sum_c dy_c y_c). A loss takes
the scores before it (softmax_loss applies its own softmax)."""
from __future__ import annotations

import numpy as np

from .base import Example, Layer, torch_functional


class Softmax(Layer):
    kind = "softmax"
    doc = "e^x_c / sum over channels of e^x_k, per item (and per pixel of a map)"
    # as a network's output (an inference graph's, without a loss), what predict shows as it is
    traits = frozenset({"probabilities"})
    examples = (
        Example({}, [(7,)], "class probabilities"),
        Example({}, [(5, 3, 4)], "per pixel of a map"),
        Example({}, [(1,)], "one class: 1"),
    )

    def forward(self, a, params, xs, ctx):
        x = xs[0]
        e = np.exp(x - x.max(axis=1, keepdims=True))
        y = (e / e.sum(axis=1, keepdims=True, dtype=np.float64)).astype(x.dtype)
        return y, y

    def backward(self, a, params, y, dy, ctx):
        inner = (dy * y).sum(axis=1, keepdims=True, dtype=np.float64)
        return [(y * (dy - inner)).astype(dy.dtype)], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return torch_functional().softmax(xs[0], dim=1)

    def onnx(self, b, name, d, xs):
        # since opset 13 ONNX's Softmax normalises along the one axis given, as torch's dim does
        b.op("Softmax", [xs[0]], name, axis=1)
