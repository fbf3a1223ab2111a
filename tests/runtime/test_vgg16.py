"""examples/vgg16.net against torch twins: torchvision's vgg16 layout rebuilt
from torch.nn modules (parameters and multiply-adds at 224), and a functional
twin taking netdsl's weights by name (logits and gradients on a 32x32 input,
which the five pools take to 1x1, so the numpy reference stays quick)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from netdsl.compiler import compile_graph

torch = pytest.importorskip("torch", reason="PyTorch (the `oracle` extra) is not installed")
from test_resnet18 import torch_macs  # noqa: E402
from test_torch_networks import EXAMPLES  # noqa: E402
from twin_checks import assert_matches_twin, small_executor  # noqa: E402

FILE = EXAMPLES / "vgg16.net"
STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # configuration D: (channels, convs)


def module_twin():
    """torchvision's vgg16 (its adaptive 7x7 average pool is the identity at 224)."""
    nn, layers, i = torch.nn, [], 3
    for width, convs in STAGES:
        for _ in range(convs):
            layers += [nn.Conv2d(i, width, 3, padding=1), nn.ReLU()]
            i = width
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(),
                         nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 1000))


def test_vgg16_counts_as_torchvision():
    g = compile_graph(FILE)
    layers = [d for _, d in g.nodes(data=True) if d.is_layer]
    params = sum(math.prod(s) for d in layers for s in d.params.values())
    model = module_twin()
    assert params == sum(p.numel() for p in model.parameters()) == 138_357_544  # torchvision's figure
    assert sum(d.macs for d in layers) == torch_macs(model, 224) == 15_470_264_320
    assert sum(d.kind == "conv" for d in layers) == 13
    assert g.nodes["stage5.maxpool"].shape == (512, 7, 7) and g.nodes["fc8"].shape == (1000,)


def functional_twin(F, p, x):
    """Configuration D in torch, with netdsl's weights by name (dropout off: a test pass)."""
    h = x
    for s, (_, convs) in enumerate(STAGES, 1):
        for use in ["unit"] + [f"unit{k}" for k in range(2, convs + 1)]:
            name = f"stage{s}.{use}.c.conv"
            h = F.relu(F.conv2d(h, p[f"{name}.weight"], p[f"{name}.bias"], padding=1))
        h = F.max_pool2d(h, 2, 2)
    h = h.flatten(1)
    for fc in ("fc6.fc", "fc7.fc"):
        h = F.relu(F.linear(h, p[f"{fc}.weight"], p[f"{fc}.bias"]))
    return F.linear(h, p["fc8.weight"], p["fc8.bias"])


@pytest.mark.slow  # 138 million parameters drawn and compared: half a minute
def test_vgg16_logits_and_gradients_match_the_twin(tmp_path):
    ex = small_executor(FILE, tmp_path, 32)
    images = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    assert_matches_twin(ex, functional_twin, images, np.array([5, 998]))
