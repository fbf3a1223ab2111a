"""A run killed with SIGKILL mid-epoch and resumed ends bitwise where an
uninterrupted run ends (reference backend)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def train_cmd(data, out, *extra):
    return [sys.executable, "-m", "netdsl", "train", str(EXAMPLES / "cifar.net"), "--data", str(data), "--out",
            str(out), "--epochs", "2", "--batch", "8", "--backend", "reference", "--no-progress", "--save-every", "3",
            "--set", "optimizer.lr=0.0003", *extra]


def weights(run: Path) -> dict:
    with np.load(run / "checkpoint.npz") as f:
        return {k: f[k] for k in f.files if k.startswith(("param/", "velocity/"))} | {"steps": f["meta/steps"]}


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bitwise(small_shapes, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight = tmp_path / "straight"
    subprocess.run(train_cmd(small_shapes, straight), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(small_shapes, killed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for the first checkpoint in the middle of epoch 1
        if (killed / "checkpoint.npz").exists():
            break
        time.sleep(0.01)
    time.sleep(0.3)  # let it run past the checkpoint, so the resumed run must replay batches
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    with np.load(killed / "checkpoint.npz") as f:
        position = json.loads(str(f["extra/state"]))
    assert position["epoch"] == 0 or position["next_batch"] > 0 or (killed / "metrics.jsonl").exists()

    resumed = subprocess.run([sys.executable, "-m", "netdsl", "train", "--resume", str(killed), "--no-progress"],
                             env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout

    a, b = weights(straight), weights(killed)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    lines = [json.loads(l) for l in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2]
    straight_lines = [json.loads(l) for l in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [l["val_loss"] for l in lines] == [l["val_loss"] for l in straight_lines]
