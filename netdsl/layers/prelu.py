"""Parametric rectifier (He et al. 2015): x for x > 0, else a_c x, with a
learned slope a_c per channel, torch.nn.PReLU(num_parameters=C)'s layout
(`weight`, shape C). The slopes start at 0.25, as in the paper and torch,
and take no weight decay by default: the paper notes decay pushes them to
0, towards plain relu. Backward needs the input (a slope may be negative,
so y does not tell the sign of x)."""
from __future__ import annotations

import numpy as np

from .base import torch_functional, ArgSpec, Example, Init, Layer, non_negative


def _per_channel(w: np.ndarray, ndim: int) -> np.ndarray:
    return w.reshape((1, -1) + (1,) * (ndim - 2))


class PReLU(Layer):
    kind = "prelu"
    doc = "x where x > 0, else a_c * x with a learned slope a_c per channel"
    args = (
        ArgSpec("init", "float", 0.25, doc="starting slope of every channel"),
        ArgSpec("lr_mult", "float", 1.0, non_negative, doc="learning-rate multiplier for the slopes"),
        ArgSpec("decay_mult", "float", 0.0, non_negative, doc="weight-decay multiplier for the slopes"),
    )
    examples = (
        Example({}, [(3, 4, 5)]),
        Example({}, [(6,)], "a vector: one slope per unit"),
        Example({}, [(1, 3, 2)], "one channel"),
    )

    def param_shapes(self, a, in_shapes):
        return {"weight": (in_shapes[0][0],)}

    def param_init(self, a, name):
        return Init("constant", a["init"])

    def multipliers(self, a, name):
        return a["lr_mult"], a["decay_mult"]

    def forward(self, a, params, xs, ctx):
        x = xs[0]
        w = _per_channel(params["weight"], x.ndim)
        return np.where(x > 0, x, x * w), x

    def backward(self, a, params, x, dy, ctx):
        w = _per_channel(params["weight"], x.ndim)
        negative = x <= 0
        dw = np.where(negative, dy * x, 0).sum(axis=tuple(i for i in range(x.ndim) if i != 1))
        return [np.where(negative, dy * w, dy)], {"weight": dw.astype(x.dtype)}

    def torch_forward(self, a, params, xs, train, state=None):
        return torch_functional().prelu(xs[0], params["weight"])

    def onnx(self, b, name, d, xs):
        slope = b.params[f"{name}.weight"].astype(np.float32)
        extra = len(b.shapes[xs[0]]) - 1  # one slope per channel, broadcast over the pixels
        b.op("PRelu", [xs[0], b.constant(f"{name}.weight", slope.reshape(slope.shape + (1,) * extra))], name)
