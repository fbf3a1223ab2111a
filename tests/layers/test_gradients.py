"""Every kind's backward against central differences of its own forward, in float64.

The scalar differentiated is a fixed random projection of the output,
L = sum(y * R), whose gradient with respect to y is R: backward(dy=R) must
then give dL/dx for every input and dL/dp for every parameter.
"""
from __future__ import annotations

import numpy as np
import pytest
from tolerances import FD_RTOL, FD_STEP, assert_close

from netdsl.layers import REGISTRY


def central_difference(f, v: np.ndarray, step: float) -> np.ndarray:
    """d f() / d v, perturbing v in place one element at a time (restored afterwards)."""
    flat = v.reshape(-1)
    assert np.shares_memory(flat, v), "v must be contiguous so perturbations reach f"
    grad = np.empty(flat.shape, np.float64)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + step
        up = f()
        flat[i] = saved - step
        down = f()
        flat[i] = saved
        grad[i] = (up - down) / (2 * step)
    return grad.reshape(v.shape)


def test_every_kind_has_examples():
    # The per-kind tests loop over examples: a kind without any is not tested at all.
    bare = [kind for kind, layer in REGISTRY.items() if not layer.examples]
    assert not bare, f"layer kinds without examples (so untested): {bare}"


@pytest.mark.parametrize("batch", [1, 3])
def test_backward_matches_central_differences(case, batch):
    layer, a, ctx = case.layer, case.args, case.ctx
    rng = np.random.default_rng(batch)
    xs = case.inputs(batch, np.float64, rng)
    params = case.params(np.float64, rng)
    untouched = [x.copy() for x in xs]

    y, cache = layer.forward(a, params, xs, ctx)
    assert np.shape(y) == case.output_shape(batch)
    assert np.asarray(y).dtype == np.float64, "forward must keep float64 inputs in float64"
    projection = rng.standard_normal(np.shape(y))
    dxs, dparams = layer.backward(a, params, cache, projection, ctx)
    for x, before in zip(xs, untouched):
        np.testing.assert_array_equal(x, before, err_msg="forward/backward modified an input")
    assert len(dxs) == len(xs)
    assert set(dparams) == set(params)

    def loss() -> float:
        return float(np.sum(layer.forward(a, params, xs, ctx)[0] * projection))

    for i, x in enumerate(xs):
        if case.is_label(i):
            assert dxs[i] is None, "labels have no gradient"
            continue
        assert dxs[i].dtype == np.float64
        assert_close(dxs[i], central_difference(loss, x, FD_STEP), FD_RTOL, f"{case} d/dx{i}")
    for name, p in params.items():
        assert dparams[name].dtype == np.float64
        assert_close(dparams[name], central_difference(loss, p, FD_STEP), FD_RTOL, f"{case} d/d{name}")
