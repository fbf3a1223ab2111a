"""`netdsl import` of PyTorch's LocalResponseNorm, which torch.onnx.export writes as
primitives (Mul, Reshape, Pad, AveragePool, If, Reshape, Mul, Add, Pow, Div) and the
importer reads back as one `lrn` (netdsl/inspect/onnx_import_lrn.py): the imported
logits are PyTorch's, and a pattern that differs in one place stays refused."""
from __future__ import annotations

import numpy as np
import pytest
from test_onnx_import import RTOL, imported_logits, rel_err

from netdsl.cli import main

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional


def alexnet_style(size, alpha, beta, k):
    """conv -> relu -> LRN -> maxpool twice, as AlexNet's first two layers, then a classifier."""
    return nn.Sequential(nn.Conv2d(3, 12, 5, stride=2, padding=2), nn.ReLU(),
                         nn.LocalResponseNorm(size, alpha, beta, k), nn.MaxPool2d(3, 2),
                         nn.Conv2d(12, 10, 3, padding=1), nn.ReLU(),
                         nn.LocalResponseNorm(size, alpha, beta, k), nn.MaxPool2d(3, 2),
                         nn.Flatten(), nn.Linear(10 * 3 * 3, 6))


def images(scale):
    # large activations, so that alpha's sum of squares weighs against k
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * scale


def export(tmp_path, module, x, opset, fold):
    torch.onnx.export(module, x, str(tmp_path / "m.onnx"), opset_version=opset, dynamo=False,
                      do_constant_folding=fold)
    return tmp_path / "m.onnx"


# AlexNet's (5, 1e-4, 0.75, 2); an odd size with k=1; an even size, which torch centres as netdsl does
SETTINGS = [(5, 1e-4, 0.75, 2.0, 300.0), (3, 0.05, 0.6, 1.0, 3.0), (4, 0.02, 0.75, 1.0, 3.0)]


@pytest.mark.parametrize("setting", SETTINGS, ids=["alexnet-5", "odd-3-k1", "even-4"])
@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("opset", [13, 18])
def test_local_response_norm_imported_as_lrn(tmp_path, setting, fold, opset):
    size, alpha, beta, k, scale = setting
    torch.manual_seed(0)
    module = alexnet_style(size, alpha, beta, k).eval()
    x = images(scale)
    with torch.no_grad():
        expected = module(x).numpy()
        # the test can tell the alpha conventions apart: with alpha not divided by the window
        # (netdsl's meaning read as torch's), the logits are far off
        module[2].alpha = module[6].alpha = alpha * size
        undivided = module(x).numpy()
    assert rel_err(undivided, expected) > 100 * RTOL
    _, _, logits = imported_logits(tmp_path, export(tmp_path, module_with(size, alpha, beta, k), x, opset, fold),
                                   x.numpy())
    assert rel_err(logits, expected) <= RTOL
    text = (tmp_path / "imported.net").read_text()
    lines = [line for line in text.splitlines() if " = lrn(" in line]
    assert len(lines) == 2 and f", {size}, alpha=" in lines[0], text
    for kind in ("mul", "add", "avgpool", "pow"):
        assert f" = {kind}(" not in text, text


def module_with(size, alpha, beta, k):
    torch.manual_seed(0)
    return alexnet_style(size, alpha, beta, k).eval()


class HandWritten(nn.Module):
    """F.local_response_norm's own arithmetic (4-d input), with the channel padding and what
    the result is divided by open to change: the near misses of the pattern."""

    def __init__(self, size=5, pads=None, reuse=False):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.size, self.reuse = size, reuse
        self.pads = pads or (size // 2, (size - 1) // 2)
        self.fc = nn.Linear(8 * 8 * 8, 4)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        n, c, h, w = x.shape
        div = (x * x).view(n, 1, c, h, -1)
        div = F.pad(div, (0, 0, 0, 0, *self.pads))
        div = F.avg_pool3d(div, (self.size, 1, 1), stride=1).squeeze(1).view(n, c, h, w)
        div = div.mul(1e-2).add(1.0).pow(0.75)
        y = x / div + div if self.reuse else x / div
        return self.fc(y.flatten(1))


def test_hand_written_pattern_is_the_same_lrn(tmp_path):
    torch.manual_seed(0)
    module = HandWritten().eval()
    x = images(3.0)[:, :, :8, :8]
    with torch.no_grad():
        expected = module(x).numpy()
    _, _, logits = imported_logits(tmp_path, export(tmp_path, module, x, 17, True), x.numpy())
    assert rel_err(logits, expected) <= RTOL
    assert " = lrn(" in (tmp_path / "imported.net").read_text()


@pytest.mark.parametrize("near_miss", [{"pads": (1, 3)}, {"pads": (3, 1)}, {"reuse": True}],
                         ids=["window-shifted-up", "window-shifted-down", "inner-tensor-read-twice"])
def test_near_miss_stays_refused_at_its_first_primitive(tmp_path, capsys, near_miss):
    module = HandWritten(**near_miss).eval()
    path = export(tmp_path, module, torch.randn(2, 3, 8, 8), 17, True)
    assert main(["import", str(path), "-o", str(tmp_path / "out.net")]) == 2
    err = capsys.readouterr().err
    assert "(Reshape): only a reshape to 2-d (batch, features) can be expressed" in err, err
    assert "node `/Reshape`" in err and "Traceback" not in err, err
    assert not (tmp_path / "out.net").exists()
