"""examples/resnet18.net against torch twins: torchvision's layout rebuilt from
torch.nn modules (parameters and multiply-adds at 224), and a functional twin
taking netdsl's weights by name (logits and gradients, on a 64x64 input so the
numpy reference stays quick)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from netdsl.compiler import compile_graph

torch = pytest.importorskip("torch", reason="PyTorch (the `oracle` extra) is not installed")
from test_torch_networks import EXAMPLES  # noqa: E402
from twin_checks import assert_matches_twin, small_executor  # noqa: E402

FILE = EXAMPLES / "resnet18.net"
WIDTHS = (64, 128, 256, 512)


def module_twin():
    """torchvision's resnet18 layout (option B shortcuts, convs without bias)."""
    nn = torch.nn

    def conv(i, o, k, stride=1):
        return nn.Conv2d(i, o, k, stride, k // 2, bias=False)

    class Block(nn.Module):
        def __init__(self, i, o, stride):
            super().__init__()
            self.c1, self.b1, self.c2, self.b2 = conv(i, o, 3, stride), nn.BatchNorm2d(o), conv(o, o, 3), nn.BatchNorm2d(o)
            self.proj = nn.Sequential(conv(i, o, 1, stride), nn.BatchNorm2d(o)) if stride != 1 else None

        def forward(self, x):
            y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
            return torch.relu(y + (x if self.proj is None else self.proj(x)))

    layers, i = [conv(3, 64, 7, 2), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)], 64
    for o in WIDTHS:
        layers += [Block(i, o, 1 if o == 64 else 2), Block(o, o, 1)]
        i = o
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000))


def torch_macs(model, size: int) -> int:
    total = []

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total.append(output.numel() * module.in_channels // module.groups * k)
        elif isinstance(module, torch.nn.Linear):
            total.append(module.in_features * module.out_features)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return sum(total)


def test_resnet18_is_short_and_counts_as_torchvision():
    assert len(FILE.read_text().splitlines()) < 40
    g = compile_graph(FILE)
    params = sum(math.prod(s) for _, d in g.nodes(data=True) if d.is_layer for s in d.params.values())
    macs = sum(d.macs for _, d in g.nodes(data=True) if d.is_layer)
    without = module_twin()
    assert params == sum(p.numel() for p in without.parameters()) == 11_689_512  # torchvision's figure
    convs = [d for _, d in g.nodes(data=True) if d.kind == "conv"]
    assert len(convs) == 20 and not any("bias" in d.params for d in convs)
    assert macs == torch_macs(without, 224) == 1_814_073_344
    assert g.nodes["scores.fc"].shape == (1000,) and g.nodes["layer4.basic.c2.relu"].shape == (512, 7, 7)


def functional_twin(F, p, x, train):
    """The example in torch from the paper, with netdsl's weights by name."""
    def conv(name, h, stride=1, pad=1):
        return F.conv2d(h, p[f"{name}.weight"], None, stride=stride, padding=pad)  # bias=none

    def bn(name, h):
        c = h.shape[1]
        mean, var = (None, None) if train else (h.new_zeros(c), h.new_ones(c))
        return F.batch_norm(h, mean, var, p[f"{name}.weight"], p[f"{name}.bias"], training=train, eps=1e-5)

    h = F.relu(bn("stem.batchnorm", conv("stem.conv", x, 2, 3)))
    h = F.max_pool2d(h, 3, 2, 1)
    for stage in (1, 2, 3, 4):
        for use in (["basic", "basic2"] if stage == 1 else ["down", "basic"]):
            name, stride = f"layer{stage}.{use}", 2 if use == "down" else 1
            shortcut = bn(f"{name}.proj.batchnorm", conv(f"{name}.proj.conv", h, 2, 0)) if stride == 2 else h
            branch = F.relu(bn(f"{name}.c1.batchnorm", conv(f"{name}.c1.conv", h, stride)))
            h = F.relu(bn(f"{name}.c2.batchnorm", conv(f"{name}.c2.conv", branch)) + shortcut)
    return F.linear(F.adaptive_avg_pool2d(h, 1).flatten(1), p["scores.fc.weight"], p["scores.fc.bias"])


@pytest.mark.parametrize("train", [True, False], ids=["train", "test"])
def test_resnet18_logits_and_gradients_match_the_twin(tmp_path, train):
    """No conv bias to compare: the twin would fail on one."""
    ex = small_executor(FILE, tmp_path, 64)
    images = np.random.default_rng(2).standard_normal((2, 3, 64, 64)).astype(np.float32)
    assert_matches_twin(ex, lambda F, p, x: functional_twin(F, p, x, train), images, np.array([7, 991]),
                        train=train, logits=False)
