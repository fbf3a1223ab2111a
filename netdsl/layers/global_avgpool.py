"""Global average pooling (Lin et al., Network in Network): the mean of each
channel over all its pixels, C x H x W -> C x 1 x 1, as
torch.nn.AdaptiveAvgPool2d(1) and Caffe's `global_pooling: true` give.

A kind of its own rather than an `avgpool` argument: avgpool's size, stride,
pad and ceil mean nothing here, the window follows the input (so the file
need not repeat the last map's size, and `--set` on an earlier stride keeps
it right), and a bare `global` in a call would read as a tensor's name.
The output stays a map, so a 1x1 convolution can follow; `-> flatten`
makes the vector a loss reads.
"""
from __future__ import annotations

import math

from .base import torch_functional, Example, Layer, ShapeError


class GlobalAvgPool(Layer):
    kind = "global_avgpool"
    doc = "mean of each channel over all its pixels: C x H x W -> C x 1 x 1"
    onnx_op = "GlobalAveragePool"
    examples = (
        Example({}, [(3, 4, 5)]),
        Example({}, [(2, 1, 1)], "one pixel: the identity"),
        Example({}, [(5, 7, 3)]),
    )

    def output_shape(self, a, in_shapes):
        if len(in_shapes[0]) != 3:
            raise ShapeError(f"global_avgpool needs a C x H x W map, got {'x'.join(map(str, in_shapes[0]))}",
                             "it averages each channel's pixels; a vector has none")
        return (in_shapes[0][0], 1, 1)

    def forward(self, a, params, xs, ctx):
        x = xs[0]
        return x.mean(axis=(2, 3), keepdims=True), x.shape

    def backward(self, a, params, shape, dy, ctx):
        pixels = math.prod(shape[2:])
        return [(dy / pixels).repeat(shape[2], axis=2).repeat(shape[3], axis=3)], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return torch_functional().adaptive_avg_pool2d(xs[0], 1)
