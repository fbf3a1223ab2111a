"""Channel concatenation: what `all x` and a layer with several inputs mean."""
from __future__ import annotations

import numpy as np

from .base import Example, Layer, ShapeError


class Concat(Layer):
    kind = "concat"
    doc = "joins its inputs along channels (spatial sizes must agree)"
    n_inputs = None
    traits = frozenset({"concat"})
    examples = (Example({}, [(2, 3, 4), (3, 3, 4)]), Example({}, [(4,), (5,), (1,)]))

    def output_shape(self, a, in_shapes):
        first = in_shapes[0]
        for shape in in_shapes[1:]:
            if len(shape) != len(first) or shape[1:] != first[1:]:
                show = ", ".join("x".join(map(str, s)) for s in in_shapes)
                raise ShapeError(f"cannot concatenate along channels: sizes differ ({show})",
                                 "inputs joined by `all` or listed together must have the same height and width")
        return (sum(s[0] for s in in_shapes),) + tuple(first[1:])

    def forward(self, a, params, xs, ctx):
        return np.concatenate(xs, axis=1), [x.shape[1] for x in xs]

    def backward(self, a, params, widths, dy, ctx):
        return np.split(dy, np.cumsum(widths)[:-1], axis=1), {}

    def torch_forward(self, a, params, xs, train, state=None):
        import torch
        return torch.cat(xs, dim=1)

    def onnx(self, b, name, d, xs):
        b.op("Concat", xs, name, axis=1)
