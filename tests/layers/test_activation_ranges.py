"""The activations whose interesting points lie outside the registry examples'
inputs (which stay within [-2, 2]): relu6 and clip saturate at 6 or their
ends, hard_sigmoid and hard_swish bend at -3 and 3, silu and gelu have
minima and tails. Here every one sees [-10, 10] with its kinks hit exactly,
forward and backward against PyTorch, on the numpy reference and on the
generated C (same tolerance as the oracle suite). And softmax on values near
±1e4, which overflow e^x unless the largest is subtracted first."""
from __future__ import annotations

import numpy as np
import pytest
from tolerances import FLOAT32_RTOL, assert_close

from netdsl.codegen import render_layer, render_module
from netdsl.layers import REGISTRY
from netdsl.layers.base import Context
from netdsl.runtime import cbuild

torch = pytest.importorskip("torch", reason="PyTorch is the oracle here")
F = torch.nn.functional

CASES = {
    "relu6": ({}, lambda x: F.relu6(x)),
    "clip": ({"min": -1.5, "max": 2.25}, lambda x: F.hardtanh(x, -1.5, 2.25)),
    "hard_sigmoid": ({}, lambda x: F.hardsigmoid(x)),
    "hard_swish": ({}, lambda x: F.hardswish(x)),
    "silu": ({}, lambda x: F.silu(x)),
    "gelu": ({}, lambda x: F.gelu(x)),
}
KINKS = [-3.0, -1.5, 0.0, 2.25, 3.0, 6.0]


def inputs() -> np.ndarray:
    grid = np.linspace(-10, 10, 157)
    return np.concatenate([grid, KINKS, [-100.0, 100.0]]).astype(np.float32).reshape(1, -1)


def oracle(kind, x, dy):
    x_t = torch.tensor(x, requires_grad=True)
    y_t = CASES[kind][1](x_t)
    (y_t * torch.from_numpy(dy)).sum().backward()
    return y_t.detach().numpy(), x_t.grad.numpy()


@pytest.mark.parametrize("kind", sorted(CASES))
def test_reference_over_the_whole_range(kind):
    layer, a = REGISTRY[kind], CASES[kind][0]
    x = inputs()
    dy = np.random.default_rng(5).standard_normal(x.shape).astype(np.float32)
    y, cache = layer.forward(a, {}, [x], Context())
    (dx,), _ = layer.backward(a, {}, cache, dy, Context())
    y_t, dx_t = oracle(kind, x, dy)
    assert y.dtype == dx.dtype == np.float32
    assert_close(y, y_t, FLOAT32_RTOL, f"{kind} forward")
    assert_close(dx, dx_t, FLOAT32_RTOL, f"{kind} backward")


@pytest.mark.parametrize("kind", sorted(CASES))
def test_generated_c_over_the_whole_range(kind):
    a = {spec.name: spec.default for spec in REGISTRY[kind].args} | CASES[kind][0]
    x = inputs()
    shape = (x.shape[1],)
    source = render_layer(kind, kind, 1, a, [shape], shape, 1, "c")
    lib = cbuild.load(render_module([source], "c"))
    dy = np.random.default_rng(5).standard_normal(x.shape).astype(np.float32)
    buffers = {name: np.full(buf.size, np.nan, np.float32) for name, buf in source.buffers.items()}
    buffers["x0"][:] = x.reshape(-1)
    buffers["dy"][:] = dy.reshape(-1)
    for kernel in source.forward + source.backward:
        cbuild.call(lib, kernel, buffers)
    y_t, dx_t = oracle(kind, x, dy)
    assert_close(buffers["y"], y_t.reshape(-1), FLOAT32_RTOL, f"{kind} forward")
    assert_close(buffers["dx0"], dx_t.reshape(-1), FLOAT32_RTOL, f"{kind} backward")


@pytest.mark.parametrize("shape", [(6,), (4, 2, 3)], ids=["vector", "map"])
def test_softmax_of_large_values_on_the_reference_and_in_c(shape):
    """Values near ±1e4, where e^x overflows float32 unless the largest is subtracted first."""
    rng = np.random.default_rng(9)
    x = (1e4 * rng.standard_normal((2, *shape))).astype(np.float32)
    x[0, 0] = x[0, 1] = 1e4  # a tie at the top: two equal probabilities
    dy = rng.standard_normal(x.shape).astype(np.float32)
    x_t = torch.tensor(x, requires_grad=True)
    y_t = torch.softmax(x_t, dim=1)
    (y_t * torch.from_numpy(dy)).sum().backward()
    layer = REGISTRY["softmax"]
    with np.errstate(over="raise", invalid="raise"):
        y, cache = layer.forward({}, {}, [x], Context())
        (dx,), _ = layer.backward({}, {}, cache, dy, Context())
    assert_close(y, y_t.detach().numpy(), FLOAT32_RTOL, "softmax forward")
    assert_close(dx, x_t.grad.numpy(), FLOAT32_RTOL, "softmax backward")
    source = render_layer("softmax", "s", 1, {}, [shape], shape, 2, "c")
    lib = cbuild.load(render_module([source], "c"))
    buffers = {name: np.full(buf.size, np.nan, np.float32) for name, buf in source.buffers.items()}
    buffers["x0"][:] = x.reshape(-1)
    buffers["dy"][:] = dy.reshape(-1)
    for kernel in source.forward + source.backward:
        cbuild.call(lib, kernel, buffers)
    assert_close(buffers["y"], y_t.detach().numpy().reshape(-1), FLOAT32_RTOL, "C forward")
    assert_close(buffers["dx0"], x_t.grad.numpy().reshape(-1), FLOAT32_RTOL, "C backward")


def test_backward_keeps_the_output_or_the_input_as_the_derivative_needs():
    def kept(kind, args=None):
        return render_layer(kind, "n", 1, args or {}, [(5,)], (5,), 2, "c").kept_for_backward

    for kind in ("relu6", "hard_sigmoid"):
        assert kept(kind) == ("y",), kind
    assert kept("clip", {"min": -1.0, "max": 1.0}) == ("y",)
    for kind in ("hard_swish", "silu", "gelu"):
        assert kept(kind) == ("x0",), kind
