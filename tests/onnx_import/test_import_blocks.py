"""`netdsl import` writes repeated regions (residual units, inception modules, units with a
squeeze-and-excitation branch) as a block used once per region, with the checkpoint's names
those netdsl gives the layers inside the uses; `--flat` writes one statement per layer. Both
give the source's logits (relative 1e-5) and parameter count."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
nn = torch.nn

from netdsl.cli import main  # noqa: E402
from netdsl.inspect import onnx_import  # noqa: E402
from netdsl.inspect.onnx_export import onnx_model  # noqa: E402
from netdsl.train.launch import network_from_source  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_onnx_import import (RTOL, Basic, block_uses, imported_logits, param_count, rel_err,  # noqa: E402
                              small_resnet, spread_batch_norms)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inspect"))
from networks import EXAMPLES  # noqa: E402


def export_example(tmp_path, name: str):
    net = network_from_source((EXAMPLES / f"{name}.net").read_text(), f"{name}.net", {})
    ex = net.executor(backend="reference", batch=2, seed=0)
    rng = np.random.default_rng(1)
    for value in ex.state.values():
        value[...] = rng.uniform(0.5, 1.5, value.shape)
    onnx.save(onnx_model(net.graph, dict(ex.params) | dict(ex.state)), tmp_path / "m.onnx")
    return net, ex


def test_flat_flag_and_blocks_give_the_same_network(tmp_path):
    net, ex = export_example(tmp_path, "resnet20-cifar")
    images = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    expected = ex.forward(images, train=False)
    imported, _, logits = imported_logits(tmp_path, tmp_path / "m.onnx", images)
    text = (tmp_path / "imported.net").read_text()
    assert block_uses(text) == {"basic": 7, "down": 2}
    assert "s1 = basic(stem_relu_Relu, 16) * 3" in text          # a stage's identical units as one stack
    assert "s2_down = down(s1, 32)" in text
    with np.load(tmp_path / "imported.npz") as ckpt:           # named as netdsl names the layers in the stack
        assert ckpt["param/s1.basic2.c1_conv.weight"].shape == (16, 16, 3, 3)
        assert ckpt["state/s3_down.proj_batchnorm.running_var"].shape == (64,)
    assert rel_err(logits, expected) <= RTOL and param_count(imported) == param_count(net)

    flat = tmp_path / "flat.net"
    assert main(["import", str(tmp_path / "m.onnx"), "-o", str(flat), "--flat"]) == 0
    flat_text = flat.read_text()
    assert "block" not in flat_text and " * " not in flat_text
    flat_net = network_from_source(flat_text, str(flat), {})
    assert len(re.findall(r"^\w+ = ", flat_text, re.M)) == sum(1 for n in flat_net.graph
                                                                if flat_net.graph.nodes[n].is_layer)
    flat_ex = flat_net.executor(backend="reference", batch=2)
    flat_ex.load(flat.with_suffix(".npz"))
    assert rel_err(flat_ex.forward(images, train=False), expected) <= RTOL
    assert param_count(flat_net) == param_count(net)


class Inception(nn.Module):
    def __init__(self, c_in, a, b, c):
        super().__init__()
        self.b1 = nn.Conv2d(c_in, a, 1)
        self.b2 = nn.Sequential(nn.Conv2d(c_in, b, 1), nn.ReLU(), nn.Conv2d(b, b, 3, padding=1))
        self.b3 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(c_in, c, 1))

    def forward(self, x):
        return torch.cat([torch.relu(self.b1(x)), torch.relu(self.b2(x)), torch.relu(self.b3(x))], 1)


class SqueezeExcite(nn.Module):
    """A conv whose output is rescaled per channel by a squeeze-and-excitation branch, plus the input."""

    def __init__(self, c, reduced):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.squeeze = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, reduced, 1), nn.ReLU(),
                                     nn.Conv2d(reduced, c, 1), nn.Sigmoid())

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return torch.relu(y * self.squeeze(y) + x)


def inceptions():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), Inception(8, 4, 6, 2),
                         nn.MaxPool2d(2), Inception(12, 8, 4, 4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 5))


def squeeze_excites():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), SqueezeExcite(8, 2), SqueezeExcite(8, 4),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))


def different_kernels():
    """Two residual units alike but for a kernel size, which no block parameter stands for: flat."""
    second = Basic(8, 8, 1)
    second.conv2 = nn.Conv2d(8, 8, 5, 1, 2, bias=False)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), Basic(8, 8, 1), second,
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))


def one_unit():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Basic(8, 8, 1), nn.Conv2d(8, 8, 3), nn.ReLU(),
                         nn.Conv2d(8, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))


CASES = [  # module, whether torch folds batch norms into convs, the block uses expected
    (small_resnet, False, {"unit": 3}),
    (small_resnet, True, {"unit": 3}),
    (inceptions, True, {"unit": 2}),
    (squeeze_excites, True, {"unit": 2}),
    (different_kernels, False, {}),
    (one_unit, True, {}),
]


@pytest.mark.parametrize("make, fold, uses", CASES, ids=[f"{c[0].__name__}-fold{c[1]}" for c in CASES])
def test_pytorch_modules_gathered(tmp_path, make, fold, uses):
    torch.manual_seed(0)
    module = make()
    spread_batch_norms(module)
    images = torch.randn(2, 3, 16, 16)
    kwargs = {} if fold else {"training": torch.onnx.TrainingMode.PRESERVE}
    torch.onnx.export(module, images, str(tmp_path / "m.onnx"), opset_version=13, dynamo=False,
                      do_constant_folding=fold, **kwargs)
    with torch.no_grad():
        expected = module(images).numpy()
    net, _, logits = imported_logits(tmp_path, tmp_path / "m.onnx", images.numpy())
    text = (tmp_path / "imported.net").read_text()
    assert block_uses(text) == uses
    assert rel_err(logits, expected) <= RTOL
    if not fold:
        assert param_count(net) == sum(p.numel() for p in module.parameters())


def test_block_parameters_stand_for_what_varies(tmp_path):
    """The two inception modules differ in every branch's width: one parameter per width,
    the block's other arguments as written."""
    torch.manual_seed(0)
    module = inceptions().eval()
    torch.onnx.export(module, torch.randn(1, 3, 16, 16), str(tmp_path / "m.onnx"), opset_version=13, dynamo=False)
    assert main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "i.net")]) == 0
    text = (tmp_path / "i.net").read_text()
    header = re.search(r"^block unit\((.*)\) \{", text, re.M).group(1)
    assert header == "a, width, width_2, width_3"          # b2's two convs share their width
    assert re.search(r"^  \w+ = conv\(\w+, width_2, size=3, pad=1\)$", text, re.M)
    assert re.search(r"= unit\(\w+, 4, 6, 2\)", text) and re.search(r"= unit\(\w+, 8, 4, 4\)", text)


def test_a_file_whose_names_miss_the_weights_is_written_flat(tmp_path, monkeypatch):
    """The file with blocks is built before it is written; were its layers named otherwise than
    the checkpoint's keys, the import would write the flat file rather than lose weights."""
    export_example(tmp_path, "resnet20-cifar")
    monkeypatch.setattr(onnx_import, "_weight_shapes", lambda net: {})
    out = tmp_path / "x.net"
    assert main(["import", str(tmp_path / "m.onnx"), "-o", str(out)]) == 0
    assert "block" not in out.read_text()
    with np.load(out.with_suffix(".npz")) as ckpt:
        assert "param/s1_basic_c1_conv_Conv.weight" in ckpt.files
