"""Hard sigmoid, relu6(x + 3) / 6 (Howard et al. 2019, MobileNetV3; as
torch.nn.Hardsigmoid, computed in the same order). Its derivative, 1/6 where
-3 < x < 3, is 1/6 exactly where 0 < y < 1, so backward reads only y."""
from __future__ import annotations

import numpy as np

from .base import Example, Layer, torch_functional


class HardSigmoid(Layer):
    kind = "hard_sigmoid"
    doc = "min(max(x + 3, 0), 6) / 6"
    traits = frozenset({"elementwise", "activation"})
    examples = (Example({}, [(3, 5, 4)]), Example({}, [(7,)]))

    def forward(self, a, params, xs, ctx):
        x = xs[0]
        t = x.dtype.type
        y = np.minimum(np.maximum(x + t(3), t(0)), t(6)) / t(6)
        return y, y

    def backward(self, a, params, y, dy, ctx):
        t = y.dtype.type
        return [np.where((y > 0) & (y < 1), dy / t(6), t(0)).astype(dy.dtype)], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return torch_functional().hardsigmoid(xs[0])

    def onnx(self, b, name, d, xs):
        b.op("HardSigmoid", [xs[0]], name, alpha=1.0 / 6.0, beta=0.5)
