"""examples/resnet50.net against torchvision's resnet50 rebuilt from torch.nn
modules, with torchvision's parameter names: the same parameters name for name
(so torchvision's weights would load), its parameter count and multiply-adds at
224, and its logits and gradients with netdsl's weights on a 64x64 input (so
the numpy reference stays quick)."""
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
                         module_as_twin, small_executor)

FILE = EXAMPLES / "resnet50.net"
STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, stride)


class Bottleneck(torch.nn.Module):
    """torchvision's Bottleneck (v1.5: the stride on the 3x3 conv)."""

    def __init__(self, i, w, stride):
        super().__init__()
        nn = torch.nn
        self.conv1, self.bn1 = nn.Conv2d(i, w, 1, bias=False), nn.BatchNorm2d(w)
        self.conv2, self.bn2 = nn.Conv2d(w, w, 3, stride, 1, bias=False), nn.BatchNorm2d(w)
        self.conv3, self.bn3 = nn.Conv2d(w, 4 * w, 1, bias=False), nn.BatchNorm2d(4 * w)
        self.downsample = None if i == 4 * w and stride == 1 else \
            nn.Sequential(nn.Conv2d(i, 4 * w, 1, stride, bias=False), nn.BatchNorm2d(4 * w))
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet50(torch.nn.Module):
    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.conv1, self.bn1, self.relu = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU()
        i = 64
        for k, (w, blocks, stride) in enumerate(STAGES, 1):
            setattr(self, f"layer{k}", nn.Sequential(*[Bottleneck(i if b == 0 else 4 * w, w, stride if b == 0 else 1)
                                                       for b in range(blocks)]))
            i = 4 * w
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(self.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for k in range(1, 5):
            x = getattr(self, f"layer{k}")(x)
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


def torch_name(name: str) -> str:
    """netdsl's `layer2.bottleneck3.c1.batchnorm.weight` is torchvision's `layer2.3.bn1.weight`."""
    fixed = {"stem.conv.weight": "conv1.weight", "scores.fc.weight": "fc.weight", "scores.fc.bias": "fc.bias"}
    if name in fixed:
        return fixed[name]
    if name.startswith("stem.batchnorm."):
        return "bn1." + name.split(".")[-1]
    stage, use, part, kind, p = name.split(".")
    index = 0 if use == "down" else int(re.sub(r"\D", "", use) or 1)
    if part == "proj":
        return f"{stage}.0.downsample.{0 if kind == 'conv' else 1}.{p}"
    return f"{stage}.{index}.{'conv' if kind == 'conv' else 'bn'}{part[1]}.{p}"


def test_resnet50_is_torchvisions_resnet50_name_for_name():
    g = compile_graph(FILE)
    model = ResNet50()
    assert_same_parameters(graph_params(g), model, torch_name)
    layers = [d for _, d in g.nodes(data=True) if d.is_layer]
    params = sum(math.prod(s) for d in layers for s in d.params.values())
    assert params == sum(p.numel() for p in model.parameters()) == 25_557_032  # torchvision's figure
    assert sum(d.macs for d in layers) == torch_macs(model, 224) == 4_089_184_256
    assert sum(d.kind == "conv" for d in layers) == 53 and g.nodes["layer4.bottleneck2.c3.relu"].shape == (2048, 7, 7)
    assert g.nodes["layer2.down.c2.conv"].args["stride"] == 2 and g.nodes["layer2.down.c1.conv"].args["stride"] == 1


@pytest.mark.parametrize("train", [True, False], ids=["train", "test"])
def test_resnet50_logits_and_gradients_match_the_module(tmp_path, train):
    """Training's gradients are not compared: among the 1.5 million ReLU inputs of a training
    pass at 64x64 some lie within float32's rounding of 0 (the closest 2e-8 to 2e-7 in eight
    batches), the float32 reference and the float64 twin then disagree on their sign, and
    batch norm's backward spreads that element's difference over its channel and every
    layer before it (1% of a gradient). At 32x32 layer4's map is 1x1, and batch norm over a
    batch of two passes no gradient back at all. resnet18's test compares training's
    gradients; here, training's loss."""
    ex = small_executor(FILE, tmp_path, 64)
    images = np.random.default_rng(4).standard_normal((2, 3, 64, 64)).astype(np.float32)
    assert_matches_twin(ex, module_as_twin(ResNet50(), torch_name, train), images, np.array([3, 999]),
                        train=train, logits=not train, gradients=not train)
