"""The identity, y = x: what `--set norm=identity` puts in place of a layer to remove it.

It takes no arguments, so the layer it replaces must be written as a bare
param (`-> norm`) with its arguments under `defaults` (see docs/language.md):
arguments written at the call would be an error for identity, not ignored,
so a misspelt argument never passes silently.
"""
from __future__ import annotations

from .base import Example, Layer


class Identity(Layer):
    kind = "identity"
    doc = "y = x (removes a layer: `--set norm=identity`)"
    traits = frozenset({"elementwise", "activation"})
    onnx_op = "Identity"
    examples = (Example({}, [(3, 2, 5)]), Example({}, [(4,)]))

    def forward(self, a, params, xs, ctx):
        return xs[0], None

    def backward(self, a, params, cache, dy, ctx):
        return [dy], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return xs[0]
