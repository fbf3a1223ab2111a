"""Exponential linear unit (Clevert et al. 2015): x for x > 0, else alpha (e^x - 1).

For x <= 0 the derivative alpha e^x equals y + alpha, so backward reads only
the output, like every activation here; that needs y > 0 exactly where
x > 0, hence alpha > 0 (torch.nn.ELU also accepts alpha <= 0). e^x - 1 is
expm1, exact for small x, where exp(x) - 1 would cancel.
"""
from __future__ import annotations

import numpy as np

from .base import torch_functional, ArgSpec, Example, Layer, positive


class ELU(Layer):
    kind = "elu"
    doc = "x where x > 0, else alpha (e^x - 1)"
    args = (ArgSpec("alpha", "float", 1.0, positive, doc="value approached as x -> -inf is -alpha"),)
    traits = frozenset({"elementwise", "activation"})
    examples = (
        Example({"alpha": 1.0}, [(3, 5, 4)]),
        Example({"alpha": 0.4}, [(9,)]),
    )

    def forward(self, a, params, xs, ctx):
        x = xs[0]
        # expm1 of the non-positive part only: the discarded branch never overflows
        y = np.where(x > 0, x, np.expm1(np.minimum(x, 0)) * a["alpha"])
        return y, y

    def backward(self, a, params, y, dy, ctx):
        return [np.where(y > 0, dy, dy * (y + a["alpha"]))], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return torch_functional().elu(xs[0], a["alpha"])

    def onnx(self, b, name, d, xs):
        b.op("Elu", [xs[0]], name, alpha=float(d.args["alpha"]))
