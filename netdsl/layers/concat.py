"""Channel concatenation: what `all x` and a layer with several inputs mean."""
from __future__ import annotations

import numpy as np

from .base import Example, Layer, ShapeError


def _show(shape) -> str:
    return "x".join(map(str, shape))


def _hint(first, other, i: int) -> str:
    """Maps a few pixels apart usually come from a convolution or pooling without padding
    (a size-k window at stride 1 shrinks a map by k - 1), so the hint names padding then."""
    same = "inputs joined by `all` or listed together must have the same height and width"
    if len(first) != 3 or len(other) != 3 or first[1] - other[1] != first[2] - other[2]:
        return same  # vectors, or height and width apart by different amounts
    gap = abs(first[1] - other[1])
    if gap > 6:  # more than a 7x7 window loses: a stride or a pooling, which padding does not undo
        return same
    small, large = (i, 1) if other[1] < first[1] else (1, i)
    return (f"{same}: input {small} is {gap} pixel(s) smaller than input {large}, as a stride-1 convolution or "
            f"pooling of size {gap + 1} without padding makes it; padding it (pad={gap // 2}"
            + ("" if gap % 2 == 0 else ", and one more row and column") + ") keeps the size")


class Concat(Layer):
    kind = "concat"
    doc = "joins its inputs along channels (spatial sizes must agree)"
    n_inputs = None
    traits = frozenset({"concat"})
    examples = (Example({}, [(2, 3, 4), (3, 3, 4)]), Example({}, [(4,), (5,), (1,)]))

    def output_shape(self, a, in_shapes):
        first = in_shapes[0]
        for i, shape in enumerate(in_shapes[1:], start=2):
            if len(shape) != len(first) or shape[1:] != first[1:]:
                show = ", ".join("x".join(map(str, s)) for s in in_shapes)
                raise ShapeError(f"cannot concatenate along channels: sizes differ ({show}); input {i} "
                                 f"({_show(shape)}) differs from input 1 ({_show(first)})", _hint(first, shape, i))
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
