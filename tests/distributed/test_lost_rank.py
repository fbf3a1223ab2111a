"""A rank that dies or hangs stops the run with the rank named, never a hang."""
from __future__ import annotations

import time

import pytest
from mpirun import HERE, mpiexec, needs_mpi, with_dropout

pytestmark = [needs_mpi, pytest.mark.slow]


def run_with_fault(tmp_path, fault: str):
    net = with_dropout("lenet.net", "f5", tmp_path)
    started = time.monotonic()
    done = mpiexec(2, ["python", str(HERE / "rank_steps.py"), net, str(tmp_path / "w.npz"), "--batch", "16",
                       "--steps", "6", fault, "2"], timeout=120, NETDSL_MPI_TIMEOUT="4")
    return done, time.monotonic() - started


def test_a_hung_rank_is_named_after_the_deadline(tmp_path):
    done, seconds = run_with_fault(tmp_path, "--hang-at")
    assert done.returncode != 0
    assert "rank 1 (pid" in done.stderr and "did not reach step 2 within 4 s" in done.stderr, done.stderr
    assert not (tmp_path / "w.npz").exists()
    assert seconds < 60


def test_a_killed_rank_ends_the_job_with_its_name(tmp_path):
    done, seconds = run_with_fault(tmp_path, "--die-at")
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "rank 1" in output and "signal 9" in output, output
    assert seconds < 60
