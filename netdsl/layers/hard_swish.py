"""Hard swish, x relu6(x + 3) / 6 (Howard et al. 2019, MobileNetV3; as
torch.nn.Hardswish, computed in the same order). It is not monotonic (a
minimum at x = -1.5), so its derivative is not a function of the output:
backward reads x. At the two kinks the derivative is PyTorch's (2.x): 0 for
x <= -3, x/3 + 1/2 strictly between, 1 for x >= 3."""
from __future__ import annotations

import numpy as np

from .base import Example, Layer, torch_functional


class HardSwish(Layer):
    kind = "hard_swish"
    doc = "x min(max(x + 3, 0), 6) / 6"
    traits = frozenset({"elementwise", "activation"})
    onnx_op = "HardSwish"
    examples = (Example({}, [(3, 5, 4)]), Example({}, [(7,)]))

    def forward(self, a, params, xs, ctx):
        x = xs[0]
        t = x.dtype.type
        return x * np.minimum(np.maximum(x + t(3), t(0)), t(6)) / t(6), x

    def backward(self, a, params, x, dy, ctx):
        t = x.dtype.type
        inside = dy * (x / t(3) + t(0.5))
        return [np.where(x <= -3, t(0), np.where(x < 3, inside, dy)).astype(dy.dtype)], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return torch_functional().hardswish(xs[0])
