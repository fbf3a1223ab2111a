"""Flatten: a C x H x W map (or any tensor) as one vector of C*H*W values in
C, H, W order, torch.flatten(x, 1)'s. What lets softmax_loss, which takes a
vector of class scores, follow a C x 1 x 1 map from a convolution or a
global pooling (fc flattens its input itself and needs no flatten)."""
from __future__ import annotations

import math

from .base import Example, Layer


class Flatten(Layer):
    kind = "flatten"
    doc = "the input as one vector (C, H, W order)"
    examples = (
        Example({}, [(3, 2, 2)]),
        Example({}, [(4, 1, 1)], "a C x 1 x 1 map of class scores"),
        Example({}, [(5,)], "already a vector"),
    )

    def output_shape(self, a, in_shapes):
        return (math.prod(in_shapes[0]),)

    def forward(self, a, params, xs, ctx):
        x = xs[0]
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, a, params, shape, dy, ctx):
        return [dy.reshape(shape)], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return xs[0].flatten(1)

    def onnx(self, b, name, d, xs):
        b.op("Flatten", [xs[0]], name, axis=1)
