"""Per-layer gradient flow in metrics.jsonl and gradients.png: the logged
norms equal norms computed here from the weights before and after every step
and gradients from a separate executor; a run interrupted mid-epoch and
resumed logs the same figures; the cpu backend and the cuda backend (over
the PyCUDA stand-in, its norms reduced on the device) log the reference's;
compare draws two runs side by side."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pictures import read_png

from netdsl.cli import main
from netdsl.runtime.reference import ReferenceExecutor
from netdsl.train.launch import network_from_source

TINY = """
network tiny
input image : 3 x 16 x 16
input label : 4 classes
defaults conv, fc { init = gauss(0.1) }
c1 = conv(image, 4, size=3, pad=1) -> relu -> maxpool(2, stride=2)
f1 = fc(c1, 8) -> relu
out = fc(f1, 4)
loss = softmax_loss(out, label)
train { batch = 8; epochs = 2; augment = [scale(0.015625)]; test = center_crop
        optimizer = sgd(lr=0.02, momentum=0.9, weight_decay=0.0005) }
"""


@pytest.fixture
def data(tmp_path):
    from netdsl.data.synthetic import make_shapes
    return make_shapes(tmp_path / "shapes", classes=4, train_per_class=12, val_per_class=4, size=16, seed=1)


def train(tmp_path, data, out, *extra):
    net = tmp_path / "tiny.net"
    net.write_text(TINY)
    return main(["train", str(net), "--data", str(data), "--out", str(out), "--backend", "reference",
                 "--no-progress", *extra])


def history(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_logged_norms_equal_norms_computed_from_the_steps(tmp_path, data, monkeypatch):
    steps = []  # (epoch's step, weights before, images, labels, weights after)
    original = ReferenceExecutor.step

    def recording(self, images, labels):
        before = {k: v.copy() for k, v in self.params.items()}
        result = original(self, images, labels)
        steps.append((before, np.array(images), np.array(labels), {k: v.copy() for k, v in self.params.items()}))
        return result

    monkeypatch.setattr(ReferenceExecutor, "step", recording)
    run = tmp_path / "run"
    assert train(tmp_path, data, run) == 0
    records = history(run)
    per_epoch = len(steps) // 2
    assert per_epoch == 6 and len(records) == 2
    fresh = network_from_source(TINY, "tiny.net", {}).executor(backend="reference", batch=8)
    for epoch, record in enumerate(records):
        grads, ratios = {}, {}
        for before, images, labels, after in steps[epoch * per_epoch:(epoch + 1) * per_epoch]:
            fresh.set_params(before)
            _, gradient = fresh.gradients(images, labels)
            for name in before:
                grads.setdefault(name, []).append(np.linalg.norm(gradient[name].astype(np.float64)))
                moved = np.linalg.norm(after[name].astype(np.float64) - before[name])
                ratios.setdefault(name, []).append(moved / np.linalg.norm(after[name].astype(np.float64)))
        assert record["gradient_norm"].keys() == grads.keys() == record["update_ratio"].keys()
        for name in grads:
            assert record["gradient_norm"][name] == pytest.approx(np.mean(grads[name]), rel=1e-5), name
            assert record["update_ratio"][name] == pytest.approx(np.mean(ratios[name]), rel=1e-4), name
    # the layers do differ: the figure is not one line drawn six times
    assert len({round(np.log10(v), 1) for v in records[-1]["update_ratio"].values()}) > 2
    read_png(run / "gradients.png")


def test_the_cpu_backend_logs_the_reference_figures(tmp_path, data):
    pytest.importorskip("netdsl.runtime.cpu")
    for backend in ("reference", "cpu"):
        net = tmp_path / "tiny.net"
        net.write_text(TINY)
        assert main(["train", str(net), "--data", str(data), "--out", str(tmp_path / backend), "--backend", backend,
                     "--no-progress", "--epochs", "1"]) == 0
    ref, cpu = history(tmp_path / "reference")[0], history(tmp_path / "cpu")[0]
    for key in ("gradient_norm", "update_ratio"):
        for name, value in ref[key].items():
            assert cpu[key][name] == pytest.approx(value, rel=1e-4), (key, name)


def test_the_cuda_backend_logs_the_reference_figures(tmp_path, data, monkeypatch):
    """The trainer on the cuda backend, over the PyCUDA stand-in: the norms come from the
    device's reduction after each update (runtime/cuda_watch.py), not from the host."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to emulate CUDA with")
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "codegen"))
    import fake_pycuda
    (tmp_path / "emulated").mkdir()
    fake_pycuda.cuda_backend(tmp_path / "emulated", monkeypatch)
    for backend in ("reference", "cuda"):
        assert train(tmp_path, data, tmp_path / backend, "--epochs", "1", "--backend", backend,
                     "--set", "precision=fp32") == 0
    ref, gpu = history(tmp_path / "reference")[0], history(tmp_path / "cuda")[0]
    assert gpu["gradient_norm"].keys() == ref["gradient_norm"].keys() == gpu["update_ratio"].keys()
    for key in ("gradient_norm", "update_ratio"):
        for name, value in ref[key].items():
            assert gpu[key][name] == pytest.approx(value, rel=1e-4), (key, name)
    read_png(tmp_path / "cuda" / "gradients.png")


def test_an_interrupted_and_resumed_run_logs_the_same_flow(tmp_path, data, monkeypatch, capsys):
    straight = tmp_path / "straight"
    assert train(tmp_path, data, straight) == 0
    original = ReferenceExecutor.step

    def interrupted(self, images, labels):
        if self.steps == 8:  # epoch 2, after the checkpoint written at its second batch
            raise KeyboardInterrupt
        return original(self, images, labels)

    monkeypatch.setattr(ReferenceExecutor, "step", interrupted)
    killed = tmp_path / "killed"
    assert train(tmp_path, data, killed, "--save-every", "2") == 130
    with np.load(killed / "checkpoint.npz") as f:
        state = json.loads(str(f["extra/state"]))
    assert state["epoch"] == 1 and state["next_batch"] == 2 and state["sums"]["flow"]
    monkeypatch.setattr(ReferenceExecutor, "step", original)
    assert main(["train", "--resume", str(killed), "--no-progress"]) == 0
    a, b = history(straight), history(killed)
    for key in ("gradient_norm", "update_ratio"):
        assert [h[key] for h in a] == [h[key] for h in b], key


def test_compare_shows_two_runs_flow_side_by_side(tmp_path, data, capsys):
    for name in ("a", "b"):
        assert train(tmp_path, data, tmp_path / name, "--epochs", "1", "--set",
                     f"optimizer.lr={0.02 if name == 'a' else 0.002}") == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "cmp.png")]) == 0
    out = capsys.readouterr().out
    assert "cmp-gradients.png" in out and "||update|| / ||weight||" in out
    row = next(line for line in out.splitlines() if line.startswith("f1.fc.weight"))
    a, b = (float(x) for x in row.split()[1:])
    ratio_a = history(tmp_path / "a")[0]["update_ratio"]["f1.fc.weight"]
    assert a == pytest.approx(ratio_a, rel=1e-2) and b < a  # a tenth of the rate moves the weights less
    read_png(tmp_path / "cmp-gradients.png")
