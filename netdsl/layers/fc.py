"""Fully connected layer. A C x H x W input is flattened in C, H, W order
(PyTorch's `flatten(1)`), so weights load unchanged into torch.nn.Linear."""
from __future__ import annotations

import math

from ._weights import WEIGHT_ARGS, WeightedLayer
from .base import torch_functional, ArgSpec, Example, operand, positive


class FullyConnected(WeightedLayer):
    kind = "fc"
    activation_epilogue = True  # in its tensor-core product's epilogue
    doc = "fully connected layer with `outputs` units; flattens its input (C, H, W order)"
    args = (ArgSpec("outputs", "int", check=positive, doc="output units"),) + WEIGHT_ARGS
    examples = (
        Example({"outputs": 7}, [(3, 5, 5)], "flattens C x H x W"),
        Example({"outputs": 4}, [(9,)]),
    )

    def output_shape(self, a, in_shapes):
        return (a["outputs"],)

    def param_shapes(self, a, in_shapes):
        return {"weight": (a["outputs"], math.prod(in_shapes[0])), "bias": (a["outputs"],)}

    def macs(self, a, in_shapes, out_shape):
        return a["outputs"] * math.prod(in_shapes[0])

    def forward(self, a, params, xs, ctx):
        x = operand(ctx, xs[0].reshape(xs[0].shape[0], -1))
        return x @ operand(ctx, params["weight"]).T + params["bias"], (xs[0].shape, x)

    def backward(self, a, params, cache, dy, ctx):
        x_shape, x = cache  # x as the product's operand: already rounded
        dy_op = operand(ctx, dy)
        dx = (dy_op @ operand(ctx, params["weight"])).reshape(x_shape)
        return [dx], {"weight": dy_op.T @ x, "bias": dy.sum(axis=0)}

    def torch_forward(self, a, params, xs, train, state=None):
        return torch_functional().linear(xs[0].flatten(1), params["weight"], params.get("bias"))

    def onnx(self, b, name, d, xs):
        flat = b.op("Flatten", [xs[0]], axis=1)
        inputs = [flat, b.param(name, "weight")] + ([b.param(name, "bias")] if f"{name}.bias" in b.params else [])
        b.op("Gemm", inputs, name, transB=1)
