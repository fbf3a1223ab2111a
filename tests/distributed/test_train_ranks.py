"""`mpiexec -n 2 netdsl train`: one run directory written by rank 0 alone, the same
weights as one process, and a run that resumes on a different number of ranks."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from mpirun import ROOT, mpiexec, needs_mpi

from netdsl.data.synthetic import make_shapes

pytestmark = [needs_mpi, pytest.mark.slow]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("data") / "shapes", classes=10, train_per_class=16,
                       val_per_class=5, size=36, seed=3)


def train(ranks, *args):
    command = ["netdsl", "train", *args, "--no-progress", "--backend", "cpu"]
    if ranks == 1:
        return subprocess.run(command, capture_output=True, text=True, timeout=600)
    return mpiexec(ranks, command)


def weights(run):
    with np.load(run / "checkpoint.npz") as data:
        return int(data["meta/steps"]), {k: data[k] for k in data.files if k.startswith("param/")}


def test_two_ranks_then_one_match_one_process_throughout(tmp_path, shapes):
    net = str(ROOT / "examples" / "lenet.net")
    common = ["--data", str(shapes), "--batch", "32", "--epochs", "1"]
    two = train(2, net, *common, "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stdout + two.stderr
    assert two.stdout.count("epoch 1:") == 1  # rank 0 alone prints
    assert "(2 ranks)" in two.stdout
    one = train(1, net, *common, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1
    a, b = json.loads(lines[0]), json.loads((tmp_path / "one" / "metrics.jsonl").read_text())
    assert abs(a["val_loss"] - b["val_loss"]) < 1e-5 and a["val_top1_error"] == b["val_top1_error"]
    # the 2-rank run continues on one process, the 1-process run on two ranks
    resumed = train(1, "--resume", str(tmp_path / "two"), "--epochs", "2")
    assert resumed.returncode == 0, resumed.stderr
    resumed = train(2, "--resume", str(tmp_path / "one"), "--epochs", "2")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    (steps_a, wa), (steps_b, wb) = weights(tmp_path / "two"), weights(tmp_path / "one")
    assert steps_a == steps_b == 10
    assert max(float(np.abs(wa[k] - wb[k]).max()) for k in wa) < 1e-6


def test_a_batch_that_does_not_split_is_refused(tmp_path, shapes):
    done = train(2, str(ROOT / "examples" / "lenet.net"), "--data", str(shapes), "--batch", "33",
                 "--out", str(tmp_path / "odd"))
    assert done.returncode != 0
    assert "does not split evenly over 2 ranks" in done.stderr, done.stderr
