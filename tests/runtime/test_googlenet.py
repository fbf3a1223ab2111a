"""examples/googlenet.net against torchvision's googlenet (aux_logits=True)
rebuilt from torch.nn modules, with torchvision's parameter names: the same
parameters name for name, its parameter counts with and without the side
classifiers and its multiply-adds at 224, and, with netdsl's weights on a
96x96 input (the side heads' 4x4 pool then has overlapping windows), the main
logits, the loss (main + 0.3 x each side loss) and every gradient."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from netdsl.compiler import compile_graph

torch = pytest.importorskip("torch", reason="PyTorch (the `oracle` extra) is not installed")
from test_resnet18 import torch_macs  # noqa: E402
from test_torch_networks import EXAMPLES, rel_err  # noqa: E402
from twin_checks import RTOL, assert_same_parameters, graph_params, small_executor  # noqa: E402

FILE = EXAMPLES / "googlenet.net"
AUX_WEIGHT = 0.3
# Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
MODULES = {"3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64), "4a": (192, 96, 208, 16, 48, 64),
           "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
           "4e": (256, 160, 320, 32, 128, 128), "5a": (256, 160, 320, 32, 128, 128),
           "5b": (384, 192, 384, 48, 128, 128)}


class BasicConv2d(torch.nn.Sequential):
    def __init__(self, i, o, k, pad=0, stride=1):
        super().__init__()
        self.conv = torch.nn.Conv2d(i, o, k, stride, pad, bias=False)
        self.bn = torch.nn.BatchNorm2d(o, eps=0.001)
        self.relu = torch.nn.ReLU()


class Inception(torch.nn.Module):
    def __init__(self, i, c1, r3, c3, r5, c5, pp):
        super().__init__()
        nn = torch.nn
        self.branch1 = BasicConv2d(i, c1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(i, r3, 1), BasicConv2d(r3, c3, 3, 1))
        self.branch3 = nn.Sequential(BasicConv2d(i, r5, 1), BasicConv2d(r5, c5, 3, 1))  # torchvision's 3x3
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), BasicConv2d(i, pp, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(torch.nn.Module):
    def __init__(self, i):
        super().__init__()
        self.conv = BasicConv2d(i, 128, 1)
        self.fc1, self.fc2 = torch.nn.Linear(2048, 1024), torch.nn.Linear(1024, 1000)
        self.dropout = torch.nn.Dropout(0.7)

    def forward(self, x):
        x = self.conv(torch.nn.functional.adaptive_avg_pool2d(x, 4)).flatten(1)
        return self.fc2(self.dropout(torch.relu(self.fc1(x))))


class GoogLeNet(torch.nn.Module):
    """(logits, aux1, aux2), every pass: netdsl's loss has all three."""

    def __init__(self, aux=True):
        super().__init__()
        nn = torch.nn
        self.conv1, self.conv2 = BasicConv2d(3, 64, 7, 3, 2), BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, 1)
        sizes = {"3a": 192, "3b": 256, "4a": 480, "4b": 512, "4c": 512, "4d": 512, "4e": 528, "5a": 832, "5b": 832}
        for name, widths in MODULES.items():
            setattr(self, f"inception{name}", Inception(sizes[name], *widths))
        self.aux1, self.aux2 = (InceptionAux(512), InceptionAux(528)) if aux else (None, None)
        self.dropout, self.fc = nn.Dropout(0.2), nn.Linear(1024, 1000)

    def forward(self, x):
        pool = lambda h, k=3: torch.nn.functional.max_pool2d(h, k, 2, ceil_mode=True)  # noqa: E731
        x = pool(self.conv3(self.conv2(pool(self.conv1(x)))))
        x = pool(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1 = self.aux1(x)
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x)
        x = pool(self.inception4e(x), 2)
        x = self.inception5b(self.inception5a(x))
        return self.fc(self.dropout(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))), aux1, aux2


FIXED = {"stem.conv": "conv1.conv", "stem.batchnorm": "conv1.bn", "conv3.conv": "conv2.conv",
         "conv3.batchnorm": "conv2.bn", "conv3.conv2": "conv3.conv", "conv3.batchnorm2": "conv3.bn",
         "scores.fc": "fc", "head.conv": "conv.conv", "head.batchnorm": "conv.bn", "out.fc": "fc1", "out.fc2": "fc2"}
BRANCHES = {"b1": "branch1", "b3": "branch2", "b5": "branch3", "pool": "branch4"}


def torch_name(name: str) -> str:
    """netdsl's `i3b.inception.b5.conv2.weight` is torchvision's `inception3b.branch3.1.conv.weight`,
    `aux1.out.fc.bias` its `aux1.fc1.bias`."""
    layer, p = name.rsplit(".", 1)
    if layer in FIXED:
        return f"{FIXED[layer]}.{p}"
    if layer.startswith("aux"):
        aux, rest = layer.split(".", 1)
        return f"{aux}.{FIXED[rest]}.{p}"
    m, branch, kind = re.match(r"i(\d\w)(?:\.inception)?\.(\w+)\.(\D+\d?)$", layer).groups()
    index = "" if branch == "b1" else "1." if branch == "pool" or kind[-1] == "2" else "0."
    return f"inception{m}.{BRANCHES[branch]}.{index}{'conv' if kind.startswith('conv') else 'bn'}.{p}"


def test_googlenet_is_torchvisions_name_for_name():
    g = compile_graph(FILE)
    model = GoogLeNet()
    assert_same_parameters(graph_params(g), model, torch_name)
    layers = [d for _, d in g.nodes(data=True) if d.is_layer]
    params = sum(math.prod(s) for d in layers for s in d.params.values())
    assert params == sum(p.numel() for p in model.parameters()) == 13_004_888  # torchvision, aux_logits=True
    main = sum(math.prod(s) for n, d in g.nodes(data=True) if d.is_layer and not n.startswith("aux")
               for s in d.params.values())
    assert main == sum(p.numel() for p in GoogLeNet(aux=False).parameters()) == 6_624_904  # aux_logits=False
    assert sum(d.macs for d in layers) == torch_macs(model, 224)
    assert g.nodes["i5b.out"].shape == (1024, 7, 7) and g.nodes["aux2.head.adaptive_avgpool"].shape == (528, 4, 4)
    losses = {n: d.args.get("weight") for n, d in g.nodes(data=True) if d.kind == "softmax_loss"}
    assert losses == {"loss": None, "aux1_loss": AUX_WEIGHT, "aux2_loss": AUX_WEIGHT}


def test_googlenet_logits_loss_and_gradients_match_the_module(tmp_path):
    """A test pass (dropout is the identity, batch norm uses its running statistics); the loss
    is still all three, each side loss times 0.3, as in training."""
    ex = small_executor(FILE, tmp_path, 96, unit_gains=True)
    assert ex.losses == {"loss": 1.0, "aux1_loss": AUX_WEIGHT, "aux2_loss": AUX_WEIGHT}
    images = np.random.default_rng(7).standard_normal((2, 3, 96, 96)).astype(np.float32)
    labels = np.array([12, 900])
    loss, grads = ex.gradients(images, labels, train=False)
    model = GoogLeNet().double().eval()
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in ex.params.items()}
    logits, aux1, aux2 = torch.func.functional_call(model, {torch_name(k): v for k, v in p.items()},
                                                    (torch.tensor(images, dtype=torch.float64),))
    ce = lambda scores: torch.nn.functional.cross_entropy(scores, torch.tensor(labels))  # noqa: E731
    t_loss = ce(logits) + AUX_WEIGHT * (ce(aux1) + ce(aux2))
    t_loss.backward()
    assert rel_err(ex.forward(images, train=False), logits.detach().numpy()) < RTOL
    assert abs(float(loss) - t_loss.item()) < RTOL * abs(t_loss.item())
    assert grads.keys() == p.keys()
    worst = max((rel_err(grads[k], p[k].grad.numpy()), k) for k in grads)
    assert worst[0] < RTOL, f"largest gradient mismatch: {worst[1]} ({worst[0]:.2e})"
