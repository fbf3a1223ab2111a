"""Adaptive pooling's window rule over many (input, output) sizes, and max
pooling's ties, forward and backward against PyTorch, on the numpy reference
and (ties) on the generated C."""
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
TORCH = {"adaptive_avgpool": F.adaptive_avg_pool2d, "adaptive_maxpool": F.adaptive_max_pool2d}


def oracle(kind, x, out, dy):
    x_t = torch.tensor(x, requires_grad=True)
    y_t = TORCH[kind](x_t, out)
    (y_t * torch.from_numpy(dy)).sum().backward()
    return y_t.detach().numpy(), x_t.grad.numpy()


def reference(kind, x, out, dy):
    layer = REGISTRY[kind]
    y, cache = layer.forward({"out": list(out)}, {}, [x], Context())
    (dx,), _ = layer.backward({"out": list(out)}, {}, cache, dy, Context())
    return y, dx


@pytest.mark.parametrize("kind", sorted(TORCH))
@pytest.mark.parametrize("h,w,oh,ow", [(7, 9, 3, 4), (13, 13, 6, 6), (6, 5, 6, 5), (3, 2, 7, 5), (10, 1, 4, 1),
                                       (1, 1, 2, 3), (9, 7, 1, 1)])
def test_every_size_matches_pytorch(kind, h, w, oh, ow):
    rng = np.random.default_rng(h * 100 + w)
    x = rng.standard_normal((2, 3, h, w)).astype(np.float32)
    dy = rng.standard_normal((2, 3, oh, ow)).astype(np.float32)
    y, dx = reference(kind, x, (oh, ow), dy)
    y_t, dx_t = oracle(kind, x, (oh, ow), dy)
    assert y.shape == y_t.shape and y.dtype == dx.dtype == np.float32
    assert_close(y, y_t, FLOAT32_RTOL, f"{kind} forward")
    assert_close(dx, dx_t, FLOAT32_RTOL, f"{kind} backward")


def test_max_ties_go_to_the_first_maximum_on_the_reference_and_in_c():
    """Constant planes (as after a ReLU) with overlapping windows: every window ties."""
    x = np.zeros((1, 2, 5, 7), np.float32)
    x[0, 1, 2:, :] = 1.0
    out = (3, 4)
    dy = np.random.default_rng(2).standard_normal((1, 2, *out)).astype(np.float32)
    y_t, dx_t = oracle("adaptive_maxpool", x, out, dy)
    y, dx = reference("adaptive_maxpool", x, out, dy)
    np.testing.assert_array_equal(y, y_t)
    assert_close(dx, dx_t, FLOAT32_RTOL, "reference backward")
    source = render_layer("adaptive_maxpool", "p", 1, {"out": list(out)}, [(2, 5, 7)], (2, *out), 1, "c")
    lib = cbuild.load(render_module([source], "c"))
    buffers = {name: np.full(buf.size, np.nan, np.float32) if buf.dtype == "float32" else np.zeros(buf.size, np.int32)
               for name, buf in source.buffers.items()}
    buffers["x0"][:] = x.reshape(-1)
    buffers["dy"][:] = dy.reshape(-1)
    for kernel in source.forward + source.backward:
        cbuild.call(lib, kernel, buffers)
    np.testing.assert_array_equal(buffers["y"], y_t.reshape(-1))
    assert_close(buffers["dx0"], dx_t.reshape(-1), FLOAT32_RTOL, "C backward")
