"""The PyTorch twin (each kind's torch_forward) for every layer kind, on the kind's registry
examples, against the kind's numpy forward at test time: a kind added
without a twin, or with a wrong one, fails here."""
from __future__ import annotations

import numpy as np
import pytest

from netdsl.layers import REGISTRY
from netdsl.layers.base import Context

torch = pytest.importorskip("torch")
KINDS = sorted(set(REGISTRY) - {"softmax_loss"})


def test_every_kind_has_a_twin():
    assert [k for k, layer in REGISTRY.items() if not layer.has_torch_twin()] == []


@pytest.mark.parametrize("kind", KINDS)
def test_twin_matches_the_numpy_forward(kind):
    layer, r = REGISTRY[kind], np.random.default_rng(3)
    for example in layer.examples:
        a = {spec.name: spec.default for spec in layer.args} | example.args
        shapes = [tuple(s) for s in example.in_shapes]
        params = {p: r.standard_normal(s).astype(np.float32) for p, s in layer.param_shapes(a, shapes).items()}
        xs = [r.standard_normal((2, *s)).astype(np.float32) for s in shapes]
        expected, _ = layer.forward(a, params, xs, Context(train=False))
        state = {s: torch.full(shape, float(layer.state_init(a, s))) for s, shape in layer.state_shapes(a, shapes).items()}
        got = layer.torch_forward(a, {k: torch.from_numpy(v) for k, v in params.items()},
                                  [torch.from_numpy(x) for x in xs], False, state or None)
        np.testing.assert_allclose(got.numpy().reshape(expected.shape), expected, rtol=1e-4, atol=1e-5,
                                   err_msg=f"{kind} {example.args}")
