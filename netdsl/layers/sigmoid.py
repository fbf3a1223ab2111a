"""Logistic sigmoid, 1 / (1 + exp(-x))."""
from __future__ import annotations

import numpy as np

from .base import Example, Layer


class Sigmoid(Layer):
    kind = "sigmoid"
    doc = "1 / (1 + exp(-x))"
    traits = frozenset({"elementwise", "activation"})
    onnx_op = "Sigmoid"
    examples = (Example({}, [(3, 5, 4)]), Example({}, [(7,)]))

    def forward(self, a, params, xs, ctx):
        # exp of a non-positive number never overflows
        x = xs[0]
        e = np.exp(-np.abs(x))
        y = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)
        return y, y

    def backward(self, a, params, y, dy, ctx):
        return [dy * y * (1 - y)], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return xs[0].sigmoid()
