"""Dropout with train-time scaling ("inverted" dropout): in training a unit
is kept with probability 1 - rate and scaled by 1 / (1 - rate); at test time
it is the identity. In expectation this equals the paper's rule (no scaling
in training, outputs multiplied by 0.5 at test), and test-time code needs no
special case. The mask comes from the counter-based generator keyed by the
run's seed, the layer's name and the step, so every backend draws the same."""
from __future__ import annotations

import numpy as np

from .. import rng
from .base import torch_functional, ArgSpec, Example, Layer, probability


def keep_mask(a: dict, shape, ctx) -> np.ndarray:
    """Elements from the global batch's start: a shard beginning at image `ctx.image_offset`
    (data-parallel training) draws what its images draw in the whole batch."""
    key = rng.stream_key(ctx.seed, ctx.stream)
    n = int(np.prod(shape))
    start = ctx.image_offset * int(np.prod(shape[1:]))
    return rng.bernoulli_keep(key, ctx.step, n, 1.0 - a["rate"], start).reshape(shape)


class Dropout(Layer):
    kind = "dropout"
    doc = "zeroes each unit with probability `rate` in training (scaled by 1/(1-rate)); identity at test"
    args = (ArgSpec("rate", "float", 0.5, probability, doc="probability of dropping a unit"),)
    traits = frozenset({"elementwise", "random"})
    onnx_op = "Identity"  # at test time (scaled in training)
    examples = (
        Example({"rate": 0.5}, [(3, 4, 5)]),
        Example({"rate": 0.25}, [(9,)]),
        Example({"rate": 0.0}, [(5,)], "nothing dropped: the identity"),
    )

    def forward(self, a, params, xs, ctx):
        x = xs[0]
        if not ctx.train or a["rate"] == 0:
            return x, None
        scale = np.asarray(1.0 / (1.0 - a["rate"]), x.dtype)
        mask = keep_mask(a, x.shape, ctx) * scale
        return x * mask, mask

    def backward(self, a, params, mask, dy, ctx):
        return [dy if mask is None else dy * mask], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return torch_functional().dropout(xs[0], a["rate"], training=train)  # torch's own masks
