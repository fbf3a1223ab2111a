"""examples/se_resnet.net against an SE-ResNet-20 written from torch.nn modules
(He et al.'s CIFAR ResNet with projection shortcuts, Hu et al.'s squeeze and
excitation in every block before the shortcut is added, as 1x1 convs with
biases like torchvision's SqueezeExcitation): the same parameters name for name,
the count at r = 4 and r = 16, and logits, loss and every gradient with
netdsl's weights, in training and in a test pass."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

import netdsl
from netdsl.compiler import compile_graph

torch = pytest.importorskip("torch", reason="PyTorch (the `oracle` extra) is not installed")
from test_resnet18 import torch_macs  # noqa: E402
from test_torch_networks import EXAMPLES, well_scaled_params  # noqa: E402
from twin_checks import (assert_matches_twin, assert_same_parameters, graph_params,  # noqa: E402
                         images_far_from_kinks, module_as_twin)

FILE = EXAMPLES / "se_resnet.net"
WIDTHS = (16, 32, 64)


class SqueezeExcitation(torch.nn.Module):
    def __init__(self, w, r):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Conv2d(w, w // r, 1), torch.nn.Conv2d(w // r, w, 1)
        self.relu = torch.nn.ReLU()  # modules, not torch.relu: images_far_from_kinks hooks them

    def forward(self, x):
        s = torch.nn.functional.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(self.relu(self.fc1(s))))


class SEBasicBlock(torch.nn.Module):
    def __init__(self, i, w, stride, r):
        super().__init__()
        nn = torch.nn
        self.conv1, self.bn1 = nn.Conv2d(i, w, 3, stride, 1, bias=False), nn.BatchNorm2d(w)
        self.conv2, self.bn2 = nn.Conv2d(w, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w)
        self.se, self.relu = SqueezeExcitation(w, r), nn.ReLU()
        self.downsample = None if stride == 1 else nn.Sequential(nn.Conv2d(i, w, 1, stride, bias=False),
                                                                 nn.BatchNorm2d(w))

    def forward(self, x):
        y = self.se(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class SEResNet20(torch.nn.Module):
    def __init__(self, r=4, n=3):
        super().__init__()
        nn = torch.nn
        self.conv1, self.bn1, self.relu = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        i = 16
        for k, w in enumerate(WIDTHS, 1):
            blocks = [SEBasicBlock(i if b == 0 else w, w, 2 if b == 0 and k > 1 else 1, r) for b in range(n)]
            setattr(self, f"layer{k}", nn.Sequential(*blocks))
            i = w
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


def torch_name(name: str) -> str:
    """netdsl's `s2.basic2.c2.excite.squeeze.conv.bias` is the module's `layer2.2.se.fc1.bias`."""
    fixed = {"stem.conv.weight": "conv1.weight", "scores.fc.weight": "fc.weight", "scores.fc.bias": "fc.bias"}
    if name in fixed:
        return fixed[name]
    if name.startswith("stem.batchnorm."):
        return "bn1." + name.split(".")[-1]
    stage, use, part, rest = re.match(r"s(\d)\.(\w+)\.(\w+)\.(.*)$", name).groups()
    index = 0 if use == "down" else int(re.sub(r"\D", "", use) or 1) - (stage == "1")
    block = f"layer{stage}.{index}"
    if part == "proj":
        return f"{block}.downsample.{0 if rest.startswith('conv') else 1}.{rest.split('.')[-1]}"
    if rest.startswith("excite"):
        return f"{block}.se.{'fc1' if rest.split('.')[2] == 'conv' else 'fc2'}.{rest.split('.')[-1]}"
    kind, p = rest.split(".")
    return f"{block}.{'conv' if kind == 'conv' else 'bn'}{part[1]}.{p}"


@pytest.mark.parametrize("r,count", [(4, 280_958), (16, 274_847)])
def test_se_resnet_is_the_module_name_for_name(r, count):
    g = compile_graph(FILE, overrides={"r": str(r)})
    model = SEResNet20(r)
    assert_same_parameters(graph_params(g), model, torch_name)
    layers = [d for _, d in g.nodes(data=True) if d.is_layer]
    assert sum(math.prod(s) for d in layers for s in d.params.values()) == sum(p.numel() for p in model.parameters()) \
        == count
    assert sum(d.macs for d in layers) == torch_macs(model, 32)
    # a scale per channel on every block's branch, before its shortcut
    assert sum(d.kind == "mul" for d in layers) == 9
    assert g.nodes["s3.basic2.c2.excite.squeeze.sigmoid"].shape == (64, 1, 1)


@pytest.mark.parametrize("train", [True, False], ids=["train", "test"])
def test_se_resnet_logits_and_gradients_match_the_module(train):
    ex = netdsl.load(FILE).executor(backend="reference", batch=2, seed=0)
    ex.set_params(well_scaled_params(ex))
    images = images_far_from_kinks(SEResNet20(), torch_name, ex.params, 32, train=train)
    assert_matches_twin(ex, module_as_twin(SEResNet20(), torch_name, train), images, np.array([1, 9]),
                        train=train, logits=not train)
