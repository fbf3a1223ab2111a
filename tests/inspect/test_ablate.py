"""`netdsl ablate`: every combination trained into its own run, the compare
table at the end, and an interrupted ablation resumed to the same weights
an uninterrupted run reaches."""
from __future__ import annotations

import json

import numpy as np
import pytest
from networks import TWO_TOWER
from pictures import read_png

from netdsl.cli import main
from netdsl.data.synthetic import make_shapes
from netdsl.runtime.reference import ReferenceExecutor


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path / "cache"))


def weights(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files if k.startswith("param/")}


@pytest.mark.slow
def test_ablation_trains_every_variant_resumes_and_compares(tmp_path, monkeypatch, capsys):
    data = make_shapes(tmp_path / "shapes", classes=5, train_per_class=4, val_per_class=2, size=16, seed=4)
    net = tmp_path / "two.net"
    net.write_text(TWO_TOWER)
    out = tmp_path / "abl"
    command = ["ablate", str(net), "--vary", "act=relu,tanh", "--vary", "optimizer.lr=0.01,0.05", "--data", str(data),
               "--out", str(out), "--epochs", "1", "--batch", "4", "--save-every", "2", "--backend", "reference",
               "--no-progress"]

    # interrupt the second variant after its first in-epoch checkpoint (5 steps an epoch)
    calls = {"n": 0}
    step = ReferenceExecutor.step

    def interrupted(self, images, labels):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return step(self, images, labels)

    monkeypatch.setattr(ReferenceExecutor, "step", interrupted)
    assert main(command) == 130
    monkeypatch.setattr(ReferenceExecutor, "step", step)
    capsys.readouterr()
    assert main(command) == 0
    text = capsys.readouterr().out
    assert "act=relu optimizer.lr=0.01: finished" in text
    assert "act=relu optimizer.lr=0.05: resuming" in text and "act=tanh optimizer.lr=0.05: training" in text
    names = ["act-relu_optimizer.lr-0.01", "act-relu_optimizer.lr-0.05", "act-tanh_optimizer.lr-0.01",
             "act-tanh_optimizer.lr-0.05"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == names
    for name in names:
        history = [json.loads(l) for l in (out / name / "metrics.jsonl").read_text().splitlines()]
        assert [h["epoch"] for h in history] == [1]
    table = text[text.index("run "):]
    for label in ("act=relu optimizer.lr=0.01", "act=tanh optimizer.lr=0.05"):
        assert any(line.startswith(label) for line in table.splitlines())
    read_png(out / "compare.png", 800, 300)

    # the resumed variant ends where an uninterrupted run of it ends
    alone = tmp_path / "alone"
    assert main(["train", str(net), "--set", "act=relu", "--set", "optimizer.lr=0.05", "--data", str(data),
                 "--out", str(alone), "--epochs", "1", "--batch", "4", "--backend", "reference",
                 "--no-progress"]) == 0
    resumed, fresh = weights(out / names[1] / "checkpoint.npz"), weights(alone / "checkpoint.npz")
    assert resumed.keys() == fresh.keys()
    for key in fresh:
        np.testing.assert_array_equal(resumed[key], fresh[key])

    # a different ablation into the same directory is refused
    assert main(command[:3] + ["act=relu,sigmoid"] + command[4:]) == 2
    assert "holds another ablation" in capsys.readouterr().err


def test_bad_vary_is_a_named_error(tmp_path, capsys):
    net = tmp_path / "two.net"
    net.write_text(TWO_TOWER)
    assert main(["ablate", str(net), "--vary", "act"]) == 2
    assert "bad --vary `act`" in capsys.readouterr().err
    assert main(["ablate", str(net), "--vary", "act=relu,nosuch", "--out", str(tmp_path / "x")]) == 2
    assert "nosuch" in capsys.readouterr().err
