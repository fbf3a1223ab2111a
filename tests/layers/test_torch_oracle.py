"""Every kind's float32 forward and backward against PyTorch on the CPU.

PyTorch is an independent implementation used only as an oracle here. Its
gradients come from autograd on L = sum(y * R), so they check netdsl's
backward(dy=R) without sharing any code with it. `ORACLE` maps each kind to
the PyTorch computation it must agree with; a kind missing from it fails.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is the oracle here; install the `oracle` extra to run these")
import torch.nn.functional as F  # noqa: E402
from tolerances import FLOAT32_RTOL, assert_close  # noqa: E402

from netdsl import rng as netdsl_rng  # noqa: E402
from netdsl.layers import REGISTRY  # noqa: E402
from netdsl.layers.base import Context  # noqa: E402


def torch_arg(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


def pool_stride(a):
    return a["stride"] or a["size"]  # no stride: windows side by side


def dropout(a, p, xs, ctx):
    # PyTorch cannot draw netdsl's counter-based mask, so draw it from the
    # generator directly; autograd then checks that backward reuses it.
    x = xs[0]
    if not ctx.train:
        return x
    key = netdsl_rng.stream_key(ctx.seed, ctx.stream)
    keep = netdsl_rng.bernoulli_keep(key, ctx.step, x.numel(), 1.0 - a["rate"]).reshape(x.shape)
    return x * torch.from_numpy(keep) / (1.0 - a["rate"])


def lrn(a, x):
    """netdsl's alpha is the paper's, not divided by the window size; torch's and Caffe's are."""
    if a["region"] == "across":
        return F.local_response_norm(x, a["size"], alpha=a["alpha"] * a["size"], beta=a["beta"], k=a["k"])
    # Caffe's WITHIN_CHANNEL: the mean of x^2 over the zero-padded size x size window
    # (count_include_pad), times alpha; netdsl's alpha multiplies the sum instead.
    mean = F.avg_pool2d(x * x, a["size"], stride=1, padding=a["size"] // 2, count_include_pad=True)
    return x * (a["k"] + a["alpha"] * a["size"] ** 2 * mean) ** -a["beta"]


# kind -> f(args, params, inputs, ctx) with torch tensors in and out.
ORACLE = {
    "adaptive_avgpool": lambda a, p, xs, ctx: F.adaptive_avg_pool2d(xs[0], torch_arg(a["out"])),
    "adaptive_maxpool": lambda a, p, xs, ctx: F.adaptive_max_pool2d(xs[0], torch_arg(a["out"])),
    "add": lambda a, p, xs, ctx: sum(xs[1:], xs[0]),
    "avgpool": lambda a, p, xs, ctx: F.avg_pool2d(xs[0], a["size"], pool_stride(a), a["pad"], ceil_mode=a["ceil"],
                                                  count_include_pad=False),
    "batchnorm": lambda a, p, xs, ctx: F.batch_norm(xs[0], None, None, p.get("weight"), p.get("bias"),
                                                    training=ctx.train, eps=a["eps"]),
    "clip": lambda a, p, xs, ctx: F.hardtanh(xs[0], a["min"], a["max"]),
    "concat": lambda a, p, xs, ctx: torch.cat(xs, dim=1),
    # torch takes ints, pairs and padding="same" as they are written in netdsl (lists as tuples)
    "conv": lambda a, p, xs, ctx: F.conv2d(xs[0], p["weight"], p.get("bias"), stride=torch_arg(a["stride"]),
                                           padding=torch_arg(a["pad"]), dilation=torch_arg(a["dilation"]),
                                           groups=a["groups"]),
    "dropout": dropout,
    "elu": lambda a, p, xs, ctx: F.elu(xs[0], alpha=a["alpha"]),
    "fc": lambda a, p, xs, ctx: F.linear(xs[0].flatten(1), p["weight"], p["bias"]),
    "flatten": lambda a, p, xs, ctx: xs[0].flatten(1),
    "gelu": lambda a, p, xs, ctx: F.gelu(xs[0]),
    "global_avgpool": lambda a, p, xs, ctx: F.adaptive_avg_pool2d(xs[0], 1),
    "hard_sigmoid": lambda a, p, xs, ctx: F.hardsigmoid(xs[0]),
    "hard_swish": lambda a, p, xs, ctx: F.hardswish(xs[0]),
    "identity": lambda a, p, xs, ctx: xs[0],
    "leaky_relu": lambda a, p, xs, ctx: F.leaky_relu(xs[0], a["slope"]),
    "lrn": lambda a, p, xs, ctx: lrn(a, xs[0]),
    "maxpool": lambda a, p, xs, ctx: F.max_pool2d(xs[0], a["size"], pool_stride(a), a["pad"], ceil_mode=a["ceil"]),
    "mul": lambda a, p, xs, ctx: xs[0] * xs[1],
    "prelu": lambda a, p, xs, ctx: F.prelu(xs[0], p["weight"]),
    "relu": lambda a, p, xs, ctx: torch.relu(xs[0]),
    "relu6": lambda a, p, xs, ctx: F.relu6(xs[0]),
    "sigmoid": lambda a, p, xs, ctx: torch.sigmoid(xs[0]),
    "silu": lambda a, p, xs, ctx: F.silu(xs[0]),
    "softmax": lambda a, p, xs, ctx: torch.softmax(xs[0], dim=1),
    # C x 1 x 1 scores as PyTorch takes them: flattened
    "softmax_loss": lambda a, p, xs, ctx: F.cross_entropy(xs[0].flatten(1), xs[1], reduction="mean"),
    "tanh": lambda a, p, xs, ctx: torch.tanh(xs[0]),
    "transfer": lambda a, p, xs, ctx: xs[0],
}


def test_oracle_table_names_only_registered_kinds():
    stale = sorted(set(ORACLE) - set(REGISTRY))
    assert not stale, f"ORACLE entries for kinds that no longer exist: {stale}"


@pytest.mark.parametrize("batch", [1, 3])
def test_forward_and_backward_match_pytorch(case, batch):
    if case.kind not in ORACLE:
        pytest.fail(f"no PyTorch oracle for layer kind {case.kind!r}: add one to ORACLE in {__file__}")
    layer, a, ctx = case.layer, case.args, case.ctx
    rng = np.random.default_rng(100 + batch)
    xs = case.inputs(batch, np.float32, rng)
    params = case.params(np.float32, rng)

    y, cache = layer.forward(a, params, xs, ctx)
    projection = rng.standard_normal(np.shape(y)).astype(np.float32)
    dxs, dparams = layer.backward(a, params, cache, projection, ctx)

    xs_t = [torch.tensor(x, requires_grad=not case.is_label(i)) for i, x in enumerate(xs)]
    params_t = {name: torch.tensor(p, requires_grad=True) for name, p in params.items()}
    y_t = ORACLE[case.kind](a, params_t, xs_t, ctx)
    (y_t * torch.from_numpy(projection)).sum().backward()

    assert np.asarray(y).dtype == np.float32, f"{case}: forward promoted float32 to {np.asarray(y).dtype}"
    assert_close(y, y_t.detach().numpy(), FLOAT32_RTOL, f"{case} forward")
    for i, (dx, x_t) in enumerate(zip(dxs, xs_t)):
        if case.is_label(i):
            continue
        assert dx.dtype == np.float32, f"{case}: d/dx{i} is {dx.dtype}"
        assert_close(dx, x_t.grad.numpy(), FLOAT32_RTOL, f"{case} d/dx{i}")
    for name, p_t in params_t.items():
        assert dparams[name].dtype == np.float32, f"{case}: d/d{name} is {dparams[name].dtype}"
        assert_close(dparams[name], p_t.grad.numpy(), FLOAT32_RTOL, f"{case} d/d{name}")


@pytest.mark.parametrize("classes", [3, 10])
def test_top_k_errors_match_torch_topk(classes):
    scores = np.random.default_rng(classes).standard_normal((200, classes)).astype(np.float32)
    labels = np.random.default_rng(classes + 1).integers(0, classes, 200)
    metrics = REGISTRY["softmax_loss"].metrics(scores, labels)
    for k, key in [(1, "top1_error"), (5, "top5_error")]:
        top = torch.topk(torch.from_numpy(scores), min(k, classes), dim=1).indices.numpy()
        expected = 1.0 - (top == labels[:, None]).any(axis=1).mean()
        assert metrics[key] == pytest.approx(expected, abs=1e-12), key
    if classes < 5:
        assert metrics["top5_error"] == 0.0  # every class is in the top 5


@pytest.mark.parametrize("index", range(len(REGISTRY["maxpool"].examples)))
def test_maxpool_ties_send_the_gradient_where_pytorch_does(index):
    # After relu most windows tie at 0: the gradient must go to the first
    # maximum in row-major order, as PyTorch's, or the two diverge in training.
    layer = REGISTRY["maxpool"]
    example = layer.examples[index]
    a = {spec.name: spec.default for spec in layer.args} | example.args
    x = np.random.default_rng(index).integers(-3, 2, (2,) + example.in_shapes[0]).clip(0).astype(np.float32)
    y, cache = layer.forward(a, {}, [x], Context())
    dy = np.random.default_rng(index + 1).standard_normal(y.shape).astype(np.float32)
    (dx,), _ = layer.backward(a, {}, cache, dy, Context())

    x_t = torch.tensor(x, requires_grad=True)
    ORACLE["maxpool"](a, {}, [x_t], None).backward(torch.from_numpy(dy))
    # Overlapping windows may add their shares in another order: compare to rounding.
    assert_close(dx, x_t.grad.numpy(), FLOAT32_RTOL, f"maxpool-{index} d/dx with ties")
