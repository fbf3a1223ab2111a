"""SiLU / swish, x sigmoid(x) (Elfwing et al. 2017; Ramachandran et al. 2017;
EfficientNet's nonlinearity), computed as x / (1 + e^-x) as torch.nn.SiLU
does. Not monotonic (a minimum near x = -1.28), so backward reads x:
sigmoid(x) (1 + x (1 - sigmoid(x)))."""
from __future__ import annotations

import numpy as np

from .base import Example, Layer, torch_functional


def _sigmoid(x):
    """1 / (1 + e^-x) without overflow: e^-|x| never exceeds 1."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


class SiLU(Layer):
    kind = "silu"
    doc = "x sigmoid(x) (swish)"
    traits = frozenset({"elementwise", "activation"})
    examples = (Example({}, [(3, 5, 4)]), Example({}, [(7,)]))

    def forward(self, a, params, xs, ctx):
        x = xs[0]
        return (x * _sigmoid(x)).astype(x.dtype), x

    def backward(self, a, params, x, dy, ctx):
        s = _sigmoid(x)
        return [(dy * s * (1 + x * (1 - s))).astype(dy.dtype)], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return torch_functional().silu(xs[0])

    def onnx(self, b, name, d, xs):
        b.op("Mul", [xs[0], b.op("Sigmoid", [xs[0]])], name)
