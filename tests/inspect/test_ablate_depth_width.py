"""`netdsl ablate --vary` over a block's repeat count and a width: a depth and a
width sweep as one command, each variant the network the values describe."""
from __future__ import annotations

import json

import numpy as np
import pytest

from netdsl.cli import main
from netdsl.compiler import compile_graph
from netdsl.data.synthetic import make_shapes

# `stage(...) * depth` repeats a block; `width` feeds both its use and the head.
DEEP = """
param depth = 1
param width = 4
block stage(a, c) {
  y = conv(a, c, size=3, pad=1) -> relu
}
defaults conv, fc { init = gauss(0.1); bias = 0 }
input image : 3 x 16 x 16
input label : 5 classes
stem   = conv(image, width, size=3, pad=1) -> relu
body   = stage(stem, width) * depth
scores = fc(body, 5)
loss   = softmax_loss(scores, label)
train { batch = 5; epochs = 1; augment = []; test = center_crop }
"""


def parameters(path) -> int:
    with np.load(path) as data:
        return sum(data[k].size for k in data.files if k.startswith("param/"))


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path / "cache"))


def test_depth_and_width_sweep_is_one_command(tmp_path, capsys):
    data = make_shapes(tmp_path / "shapes", classes=5, train_per_class=2, val_per_class=1, size=16, seed=3)
    net = tmp_path / "deep.net"
    net.write_text(DEEP)
    out = tmp_path / "sweep"
    assert main(["ablate", str(net), "--vary", "depth=1,3", "--vary", "width=4,8", "--data", str(data),
                 "--out", str(out), "--epochs", "1", "--batch", "5", "--backend", "reference",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    for depth in (1, 3):
        for width in (4, 8):
            run = out / f"depth-{depth}_width-{width}"
            assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 1
            # stem 3->w (27w + w), `depth` stages w->w (9w*w + w), fc (w*256*5 + 5)
            expected = 28 * width + depth * (9 * width * width + width) + width * 256 * 5 + 5
            assert parameters(run / "checkpoint.npz") == expected, run.name
            g = compile_graph(net, overrides={"depth": str(depth), "width": str(width)}, training=True)
            assert sum(1 for n in g if g.nodes[n].is_layer and g.nodes[n].kind == "conv") == 1 + depth
            assert any(line.startswith(f"depth={depth} width={width}") for line in text.splitlines())
