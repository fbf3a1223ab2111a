"""Whole networks against PyTorch CPU, used only as an independent oracle.

The torch models below are written out by hand from the paper's description,
not derived from netdsl's graph: they take netdsl's weights by name and must
give the same logits, loss and gradient for every parameter."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import netdsl

torch = pytest.importorskip("torch", reason="PyTorch (the `oracle` extra) is not installed")
F = torch.nn.functional

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RTOL = 1e-4


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def lrn(x):  # the paper's alpha=1e-4 over n=5 channels is torch's alpha=5e-4
    return F.local_response_norm(x, 5, alpha=5e-4, beta=0.75, k=2.0)


def alexnet_tower_features(p, x, towers):
    """conv1..conv5 of the two-GPU layout; `towers` lists the device suffixes."""
    def conv(name, t, inp, stride=1, pad=0):
        return F.conv2d(inp, p[f"{name}.conv{t}.weight"], p[f"{name}.conv{t}.bias"], stride=stride, padding=pad)

    pool = lambda v: F.max_pool2d(v, 3, 2)
    c1 = {t: pool(lrn(F.relu(conv("conv1", t, x, 4, 2)))) for t in towers}
    c2 = {t: pool(lrn(F.relu(conv("conv2", t, c1[t], pad=2)))) for t in towers}
    both2 = torch.cat([c2[t] for t in towers], 1)
    c3 = {t: F.relu(conv("conv3", t, both2, pad=1)) for t in towers}
    c4 = {t: F.relu(conv("conv4", t, c3[t], pad=1)) for t in towers}
    c5 = {t: pool(F.relu(conv("conv5", t, c4[t], pad=1))) for t in towers}
    return torch.cat([c5[t] for t in towers], 1).flatten(1)


def alexnet_two_gpu(p, x):
    towers = ["@gpu0", "@gpu1"]
    h = alexnet_tower_features(p, x, towers)
    for fc in ("fc6", "fc7"):  # dropout is the identity with train=False
        h = torch.cat([F.relu(F.linear(h, p[f"{fc}.fc{t}.weight"], p[f"{fc}.fc{t}.bias"])) for t in towers], 1)
    return F.linear(h, p["fc8.weight"], p["fc8.bias"])


def alexnet_one_gpu(p, x):
    h = alexnet_tower_features(p, x, [""])
    for fc in ("fc6", "fc7"):
        h = F.relu(F.linear(h, p[f"{fc}.fc.weight"], p[f"{fc}.fc.bias"]))
    return F.linear(h, p["fc8.weight"], p["fc8.bias"])


def cifar(p, x):
    h = lrn3(F.relu(F.max_pool2d(F.conv2d(x, p["conv1.conv.weight"], p["conv1.conv.bias"], padding=2), 3, 2,
                                 ceil_mode=True)))
    h = lrn3(F.avg_pool2d(F.relu(F.conv2d(h, p["conv2.conv.weight"], p["conv2.conv.bias"], padding=2)), 3, 2,
                          ceil_mode=True, count_include_pad=False))
    h = F.avg_pool2d(F.relu(F.conv2d(h, p["conv3.conv.weight"], p["conv3.conv.bias"], padding=2)), 3, 2,
                     ceil_mode=True, count_include_pad=False)
    return F.linear(h.flatten(1), p["fc10.weight"], p["fc10.bias"])


def lrn3(x):
    return F.local_response_norm(x, 3, alpha=3 * 5e-5, beta=0.75, k=1.0)


def well_scaled_params(ex, seed=0):
    """He-scaled weights and small biases, so that activations are O(1) and
    every gradient carries signal (the paper's N(0, 0.01) makes them tiny)."""
    r = np.random.default_rng(seed)
    out = {}
    for name, value in ex.params.items():
        fan_in = int(np.prod(value.shape[1:])) if value.ndim > 1 else 1
        std = np.sqrt(2.0 / fan_in) if value.ndim > 1 else 0.1
        out[name] = (r.standard_normal(value.shape) * std).astype(np.float32)
    return out


@pytest.mark.parametrize("example,model,size,classes", [
    pytest.param("alexnet-1gpu.net", alexnet_one_gpu, 224, 1000, marks=pytest.mark.slow),
    pytest.param("alexnet.net", alexnet_two_gpu, 224, 1000, marks=pytest.mark.slow),
    ("cifar.net", cifar, 32, 10),
], ids=["alexnet-1gpu", "alexnet-2gpu", "cifar"])
def test_network_matches_torch(example, model, size, classes):
    net = netdsl.load(EXAMPLES / example)
    ex = net.executor(backend="reference", batch=2, seed=0)
    ex.set_params(well_scaled_params(ex))
    r = np.random.default_rng(1)
    images = r.standard_normal((2, 3, size, size)).astype(np.float32)
    labels = np.array([3, classes - 1])

    logits = ex.forward(images)
    loss, grads = ex.gradients(images, labels, train=False)

    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in ex.params.items()}
    t_logits = model(p, torch.tensor(images, dtype=torch.float64))
    t_loss = F.cross_entropy(t_logits, torch.tensor(labels))
    t_loss.backward()

    assert rel_err(logits, t_logits.detach().numpy()) < RTOL
    assert abs(float(loss) - t_loss.item()) / abs(t_loss.item()) < RTOL
    assert list(grads) == list(ex.params)
    worst = max(((rel_err(grads[k], p[k].grad.numpy()), k) for k in grads))
    assert worst[0] < RTOL, f"largest gradient mismatch: {worst[1]} ({worst[0]:.2e})"
