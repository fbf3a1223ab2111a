"""Elementwise product of two inputs of one shape, or of a C x H x W map and
per-channel values C x 1 x 1 broadcast over its pixels (_broadcast.py): the
rescaling of a squeeze-and-excitation block (Hu et al. 2018),
`x * sigmoid(fc(...))`. The gradient of each input is dy times the other,
summed over the pixels for the broadcast one."""
from __future__ import annotations

from ._broadcast import broadcast_shape, reduce_to
from .base import Example, Layer, ShapeError


class Mul(Layer):
    kind = "mul"
    doc = "elementwise product of two inputs (of one shape, or C x 1 x 1 broadcast over C x H x W)"
    n_inputs = 2
    examples = (
        Example({}, [(3, 4, 5), (3, 4, 5)]),
        Example({}, [(3, 4, 5), (3, 1, 1)], "per-channel scale: squeeze-and-excitation"),
        Example({}, [(2, 1, 1), (2, 3, 5)], "the scale first"),
        Example({}, [(7,), (7,)], "vectors"),
    )

    def output_shape(self, a, in_shapes):
        out = broadcast_shape(in_shapes)
        if out is None:
            shown = " and ".join("x".join(map(str, s)) for s in in_shapes)
            raise ShapeError(f"cannot multiply tensors of shapes {shown}",
                             "give both one shape, or make one of them C x 1 x 1 (one value per channel of a "
                             "C x H x W map, e.g. `global_avgpool` then 1x1 convolutions)")
        return out

    def forward(self, a, params, xs, ctx):
        return xs[0] * xs[1], (xs[0], xs[1])

    def backward(self, a, params, cache, dy, ctx):
        x0, x1 = cache
        return [reduce_to(dy * x1, x0.shape[1:]), reduce_to(dy * x0, x1.shape[1:])], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return xs[0] * xs[1]

    def onnx(self, b, name, d, xs):
        b.op("Mul", xs, name)
