"""examples/mobilenet_v2.net against torchvision's mobilenet_v2 rebuilt from
torch.nn modules, with torchvision's parameter names: the same parameters name
for name, its parameter count and multiply-adds at 224, and its logits and
gradients with netdsl's weights on a 64x64 input (so the numpy reference stays
quick)."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from netdsl.compiler import compile_graph

torch = pytest.importorskip("torch", reason="PyTorch (the `oracle` extra) is not installed")
from test_resnet18 import torch_macs  # noqa: E402
from test_torch_networks import EXAMPLES  # noqa: E402
from twin_checks import (assert_matches_twin, assert_same_parameters, graph_params,  # noqa: E402
                         images_far_from_kinks, module_as_twin, small_executor)

FILE = EXAMPLES / "mobilenet_v2.net"
# Table 2 of the paper: expansion t, output channels c, blocks n, first block's stride s.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def conv_bn(i, o, k=1, stride=1, groups=1, act=True):
    """torchvision's Conv2dNormActivation: conv [0], batch norm [1], ReLU6 [2]."""
    nn = torch.nn
    layers = [nn.Conv2d(i, o, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(o)]
    return nn.Sequential(*layers, nn.ReLU6()) if act else nn.Sequential(*layers)


class InvertedResidual(torch.nn.Module):
    def __init__(self, i, o, stride, t):
        super().__init__()
        hidden, nn = i * t, torch.nn
        expand = [conv_bn(i, hidden)] if t != 1 else []
        self.conv = nn.Sequential(*expand, conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                  nn.Conv2d(hidden, o, 1, bias=False), nn.BatchNorm2d(o))
        self.residual = stride == 1 and i == o

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


def mobilenet_v2():
    """torchvision's MobileNetV2(width_mult=1.0): features 0 to 18, then dropout and fc."""
    nn, features, i = torch.nn, [conv_bn(3, 32, 3, 2)], 32
    for t, c, n, s in SETTINGS:
        for b in range(n):
            features.append(InvertedResidual(i, c, s if b == 0 else 1, t))
            i = c
    features.append(conv_bn(320, 1280))
    return nn.Sequential(nn.Sequential(*features), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000)))


# The file's block uses in order; torchvision's features 2 to 17.
USES = ["b24.inverted", "b24.residual", "b32.inverted", "b32.residual", "b32.residual2", "b64.inverted",
        "b64.residual", "b64.residual2", "b64.residual3", "b96.inverted", "b96.residual", "b96.residual2",
        "b160.inverted", "b160.residual", "b160.residual2", "b320"]
FIXED = {"stem.conv": "0.0.0", "stem.batchnorm": "0.0.1", "first.conv": "0.1.conv.0.0",
         "first.batchnorm": "0.1.conv.0.1", "first.conv2": "0.1.conv.1", "first.batchnorm2": "0.1.conv.2",
         "last.conv": "0.18.0", "last.batchnorm": "0.18.1", "scores.fc": "3.1"}
PARTS = {"expand.conv": "0.0", "expand.batchnorm": "0.1", "filter.conv": "1.0", "filter.batchnorm": "1.1",
         "project.conv": "2", "project.batchnorm": "3"}


def torch_name(name: str) -> str:
    """netdsl's `b32.residual2.filter.conv.weight` is the module's `0.5.conv.1.0.weight`
    (torchvision's `features.5.conv.1.0.weight`: the module's `0.` is its `features.`)."""
    layer, p = name.rsplit(".", 1)
    if layer in FIXED:
        return f"{FIXED[layer]}.{p}"
    use, part = re.match(r"(b\d+(?:\.\w+)?)\.(\w+\.\w+)$", layer).groups()
    return f"0.{USES.index(use) + 2}.conv.{PARTS[part]}.{p}"


def test_mobilenet_v2_is_torchvisions_name_for_name():
    g = compile_graph(FILE)
    model = mobilenet_v2()
    assert_same_parameters(graph_params(g), model, torch_name)
    layers = [d for _, d in g.nodes(data=True) if d.is_layer]
    params = sum(math.prod(s) for d in layers for s in d.params.values())
    assert params == sum(p.numel() for p in model.parameters()) == 3_504_872  # torchvision's figure
    assert sum(d.macs for d in layers) == torch_macs(model, 224) == 300_774_272
    depthwise = [d for d in layers if d.kind == "conv" and d.args["groups"] > 1]
    assert len(depthwise) == 17 and all(d.args["groups"] == d.shape[0] for d in depthwise)
    assert sum(d.kind == "add" for d in layers) == 10 and g.nodes["last.relu6"].shape == (1280, 7, 7)


@pytest.fixture
def one_torch_thread():
    """torch runs a float64 depthwise conv as one small parallel region per channel; on a
    shared machine, threads spinning at thousands of barriers made this test take from 7 s
    to 4 minutes. One thread has no barriers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_mobilenet_v2_logits_and_gradients_match_the_module(tmp_path, one_torch_thread):
    """A test pass (dropout is the identity, batch norm uses its running statistics)."""
    ex = small_executor(FILE, tmp_path, 64, unit_gains=True)
    images = images_far_from_kinks(mobilenet_v2(), torch_name, ex.params, 64)
    assert_matches_twin(ex, module_as_twin(mobilenet_v2(), torch_name, False), images, np.array([0, 777]))
