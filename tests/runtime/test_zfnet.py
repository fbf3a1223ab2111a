"""examples/zfnet.net against torch twins: Zeiler & Fergus's Figure 3 from
torch.nn modules (parameters, multiply-adds and map sizes at 224), and a
functional twin taking netdsl's weights by name (logits and gradients on a
63x63 input, where pools 1 and 2 round up past a partial last window as they
do at 224, and the numpy reference stays quick)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from netdsl.compiler import compile_graph

torch = pytest.importorskip("torch", reason="PyTorch (the `oracle` extra) is not installed")
from test_resnet18 import torch_macs  # noqa: E402
from test_torch_networks import EXAMPLES, lrn  # noqa: E402
from twin_checks import assert_matches_twin, small_executor  # noqa: E402

FILE = EXAMPLES / "zfnet.net"


def module_twin():
    nn = torch.nn
    pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
    norm = lambda: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)  # noqa: E731 -- alpha per channel
    return nn.Sequential(
        nn.Conv2d(3, 96, 7, 2, 1), nn.ReLU(), pool(), norm(),
        nn.Conv2d(96, 256, 5, 2), nn.ReLU(), pool(), norm(),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(), pool(), nn.Flatten(),
        nn.Linear(256 * 6 * 6, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(),
        nn.Linear(4096, 1000))


def test_zfnet_counts_and_map_sizes_are_the_papers():
    g = compile_graph(FILE)
    layers = [d for _, d in g.nodes(data=True) if d.is_layer]
    model = module_twin()
    assert sum(math.prod(s) for d in layers for s in d.params.values()) == sum(
        p.numel() for p in model.parameters()) == 62_357_608
    assert sum(d.macs for d in layers) == torch_macs(model, 224) == 1_168_032_896
    # Figure 3's sizes: 110 after conv1, 55 after pool 1, 26 after conv2, 13 after pool 2, 6 after pool 5.
    sizes = {n: g.nodes[n].shape for n in ("conv1.conv", "conv1.lrn", "conv2.conv", "conv2.lrn", "conv5.maxpool")}
    assert sizes == {"conv1.conv": (96, 110, 110), "conv1.lrn": (96, 55, 55), "conv2.conv": (256, 26, 26),
                     "conv2.lrn": (256, 13, 13), "conv5.maxpool": (256, 6, 6)}
    with torch.no_grad():
        assert model[:-7].eval()(torch.zeros(1, 3, 224, 224)).shape == (1, 256 * 6 * 6)


def functional_twin(F, p, x):
    """Figure 3 in torch with netdsl's weights by name (dropout off: a test pass)."""
    def conv(name, h, stride=1, pad=1):
        return F.relu(F.conv2d(h, p[f"{name}.conv.weight"], p[f"{name}.conv.bias"], stride=stride, padding=pad))

    pool = lambda h: F.max_pool2d(h, 3, 2, ceil_mode=True)  # noqa: E731
    h = lrn(pool(conv("conv1", x, 2, 1)))
    h = lrn(pool(conv("conv2", h, 2, 0)))
    h = pool(conv("conv5", conv("conv4", conv("conv3", h))))
    h = F.relu(F.linear(h.flatten(1), p["fc6.fc.weight"], p["fc6.fc.bias"]))
    h = F.relu(F.linear(h, p["fc7.fc.weight"], p["fc7.fc.bias"]))
    return F.linear(h, p["fc8.weight"], p["fc8.bias"])


@pytest.mark.slow
def test_zfnet_logits_and_gradients_match_the_twin(tmp_path):
    ex = small_executor(FILE, tmp_path, 63)
    assert ex.g.nodes["conv1.maxpool"].shape == (96, 15, 15)  # 30 -> 15: a partial last window
    images = np.random.default_rng(4).standard_normal((2, 3, 63, 63)).astype(np.float32)
    assert_matches_twin(ex, functional_twin, images, np.array([1, 500]))
