"""N ranks with global batch B train the same weights as one process with batch B:
dropout masks and augmentation are keyed by the global image index, and the ranks'
gradients are averaged before every update."""
from __future__ import annotations

import numpy as np
import pytest

from mpirun import HERE, alone, mpiexec, needs_mpi, with_dropout

pytestmark = needs_mpi
STEPS = 5


def weights_after(tmp_path, net, batch, ranks=None, tcp=False, backend="cpu"):
    out = tmp_path / f"weights-{ranks or 1}{'-tcp' if tcp else ''}.npz"
    args = [str(HERE / "rank_steps.py"), net, str(out), "--batch", str(batch), "--steps", str(STEPS),
            "--backend", backend]
    done = mpiexec(ranks, ["python"] + args, tcp=tcp) if ranks else alone(args)
    assert done.returncode == 0, done.stdout + done.stderr
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def largest_difference(a, b):
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def check_same(tmp_path, example, after, batch, **kwargs):
    net = with_dropout(example, after, tmp_path)
    one = weights_after(tmp_path, net, batch)
    two = weights_after(tmp_path, net, batch, ranks=2, **kwargs)
    diff = largest_difference(one, two)
    print(f"{example}: max weight difference after {STEPS} steps, 2 ranks vs 1 process: {diff:.3g}")
    scale = max(float(np.abs(v).max()) for v in one.values())
    assert diff <= 1e-5 * scale, diff
    return one


@pytest.mark.slow
def test_lenet_two_ranks_match_one_process(tmp_path):
    check_same(tmp_path, "lenet.net", "f5", 32)


@pytest.mark.slow
def test_cifar_two_ranks_match_one_process(tmp_path):
    check_same(tmp_path, "cifar.net", "conv3", 32)


@pytest.mark.slow
def test_two_ranks_over_tcp_loopback_match_one_process(tmp_path):
    check_same(tmp_path, "lenet.net", "f5", 32, tcp=True)


@pytest.mark.slow
def test_reference_backend_ranks_match_one_process(tmp_path):
    check_same(tmp_path, "lenet.net", "f5", 16, backend="reference")


@pytest.mark.slow
def test_without_the_shard_offset_dropout_would_differ(tmp_path, monkeypatch):
    """The check above has teeth: with rank 1 drawing rank 0's dropout bits the weights part."""
    net = with_dropout("lenet.net", "f5", tmp_path)
    one = weights_after(tmp_path, net, 32)
    monkeypatch.setenv("NETDSL_TEST_ZERO_OFFSET", "1")
    two = weights_after(tmp_path, net, 32, ranks=2)
    assert largest_difference(one, two) > 1e-4
