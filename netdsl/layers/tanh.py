"""Hyperbolic tangent: the saturating baseline of the paper's Figure 1."""
from __future__ import annotations

import numpy as np

from .base import Example, Layer


class Tanh(Layer):
    kind = "tanh"
    doc = "tanh(x)"
    traits = frozenset({"elementwise", "activation"})
    onnx_op = "Tanh"
    examples = (Example({}, [(3, 5, 4)]), Example({}, [(7,)]))

    def forward(self, a, params, xs, ctx):
        y = np.tanh(xs[0])
        return y, y

    def backward(self, a, params, y, dy, ctx):
        return [dy * (1 - y * y)], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return xs[0].tanh()
