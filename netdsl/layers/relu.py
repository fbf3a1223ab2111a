"""Rectified linear unit, max(0, x): the paper's non-saturating nonlinearity."""
from __future__ import annotations

import numpy as np

from .base import torch_functional, Example, Layer


class ReLU(Layer):
    kind = "relu"
    doc = "max(0, x)"
    traits = frozenset({"elementwise", "activation"})
    onnx_op = "Relu"
    examples = (Example({}, [(3, 5, 4)]), Example({}, [(7,)]))

    def forward(self, a, params, xs, ctx):
        y = np.maximum(xs[0], 0)
        return y, y

    def backward(self, a, params, y, dy, ctx):
        return [dy * (y > 0)], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return torch_functional().relu(xs[0])
