"""What relu6 and clip share: y = x clamped to [low, high], passing the gradient
strictly inside (as torch's hardtanh does: at x = low or high exactly, none).
As the interval's ends are outputs only there, the derivative is a function of
the output (low < y < high), so backward reads y alone."""
from __future__ import annotations

import numpy as np

from .base import Layer, torch_functional


class Clamp(Layer):
    traits = frozenset({"elementwise", "activation"})

    def bounds(self, a) -> tuple[float, float]:
        raise NotImplementedError

    def forward(self, a, params, xs, ctx):
        low, high = self.bounds(a)
        x = xs[0]
        y = np.minimum(np.maximum(x, x.dtype.type(low)), x.dtype.type(high))
        return y, y

    def backward(self, a, params, y, dy, ctx):
        low, high = self.bounds(a)
        inside = (y > y.dtype.type(low)) & (y < y.dtype.type(high))
        return [np.where(inside, dy, 0).astype(dy.dtype)], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return torch_functional().hardtanh(xs[0], *self.bounds(a))

    def onnx(self, b, name, d, xs):
        low, high = self.bounds(d.args)
        b.op("Clip", [xs[0], b.constant(b.fresh("min"), np.float32(low)),
                      b.constant(b.fresh("max"), np.float32(high))], name)
