"""A copy of a tensor onto another device. The place-devices pass inserts one
on every edge that crosses devices (and the backward pass mirrors it); a user
may also write `y = transfer(x) on gpu1` to move a tensor explicitly."""
from __future__ import annotations

from .base import Example, Layer


class Transfer(Layer):
    kind = "transfer"
    doc = "copies its input to the layer's device (identity on values)"
    traits = frozenset({"transfer"})
    onnx_op = "Identity"
    examples = (Example({}, [(3, 4, 5)]),)

    def forward(self, a, params, xs, ctx):
        return xs[0], None

    def backward(self, a, params, cache, dy, ctx):
        return [dy], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return xs[0]
