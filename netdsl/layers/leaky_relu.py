"""Leaky rectifier, max(slope x, x) for 0 <= slope <= 1 (Maas et al. 2013).

A slope of 0 or more keeps the sign of x in y, so the derivative (1 where
y > 0, else slope) is a function of the output and backward needs only y,
as every activation's here; torch.nn.LeakyReLU allows any slope.
"""
from __future__ import annotations

import numpy as np

from .base import torch_functional, ArgSpec, Example, Layer, non_negative


class LeakyReLU(Layer):
    kind = "leaky_relu"
    doc = "x where x > 0, else slope * x"
    args = (ArgSpec("slope", "float", 0.01, non_negative, doc="gradient for x < 0"),)
    traits = frozenset({"elementwise", "activation"})
    examples = (
        Example({"slope": 0.01}, [(3, 5, 4)]),
        Example({"slope": 0.3}, [(7,)]),
        Example({"slope": 0.0}, [(2, 3, 3)], "slope 0: relu"),
    )

    def forward(self, a, params, xs, ctx):
        x = xs[0]
        y = np.where(x > 0, x, x * a["slope"])
        return y, y

    def backward(self, a, params, y, dy, ctx):
        return [np.where(y > 0, dy, dy * a["slope"])], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return torch_functional().leaky_relu(xs[0], a["slope"])

    def onnx(self, b, name, d, xs):
        b.op("LeakyRelu", [xs[0]], name, alpha=float(d.args["slope"]))
