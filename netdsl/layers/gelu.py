"""GELU, x Phi(x) with Phi the standard normal CDF (Hendrycks & Gimpel 2016),
in its exact erf form, torch.nn.GELU()'s default (not the tanh
approximation). Not monotonic (a minimum near x = -0.75), so backward reads
x: Phi(x) + x phi(x). numpy has no erf, so the reference takes math.erf
element by element, in float64."""
from __future__ import annotations

import math

import numpy as np

from .base import Example, Layer, torch_functional

_erf = np.frompyfunc(math.erf, 1, 1)


def _cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(np.asarray(x, np.float64) / math.sqrt(2.0)).astype(np.float64))


class GELU(Layer):
    kind = "gelu"
    doc = "x Phi(x), Phi the normal CDF (erf form)"
    traits = frozenset({"elementwise", "activation"})
    examples = (Example({}, [(3, 5, 4)]), Example({}, [(7,)]))

    def forward(self, a, params, xs, ctx):
        x = xs[0]
        return (x * _cdf(x)).astype(x.dtype), x

    def backward(self, a, params, x, dy, ctx):
        x64 = np.asarray(x, np.float64)
        pdf = np.exp(-0.5 * x64 * x64) / math.sqrt(2.0 * math.pi)
        return [(dy * (_cdf(x) + x64 * pdf)).astype(dy.dtype)], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return torch_functional().gelu(xs[0])

    def onnx(self, b, name, d, xs):
        """Gelu is an operator from opset 20 only: 0.5 x (1 + erf(x / sqrt 2)) from primitives."""
        x = xs[0]
        scaled = b.op("Div", [x, b.constant(b.fresh("sqrt2"), np.float32(math.sqrt(2.0)))])
        one_plus = b.op("Add", [b.op("Erf", [scaled]), b.constant(b.fresh("one"), np.float32(1.0))])
        half_x = b.op("Mul", [x, b.constant(b.fresh("half"), np.float32(0.5))])
        b.op("Mul", [half_x, one_plus], name)
