"""The cuda backend's data-parallel path where no GPU is: netdsl/runtime/cuda.py and
netdsl/distributed/nccl.py run unchanged over tests/codegen's PyCUDA stand-in, with
NCCL's calls done over MPI on host memory (fake_nccl.py). Two ranks, each on its
shard with dropout, must train the weights of one process."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from mpirun import HERE, alone, mpiexec, needs_mpi

pytestmark = [needs_mpi, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to emulate CUDA with")]

NET = """network tiny
input image : 3 x 6 x 6
input label : 4 classes
c = conv(image, 4, size=3, init=gauss(0.1)) -> relu -> dropout(0.5)
f = fc(c, 6, init=gauss(0.1)) -> relu -> dropout(0.25)
out = fc(f, 4, init=gauss(0.1))
loss = softmax_loss(out, label)
train { batch = 4 }
"""


def test_two_emulated_gpu_ranks_match_one(tmp_path):
    net = tmp_path / "tiny.net"
    net.write_text(NET)
    found = {}
    for ranks in (1, 2):
        out = tmp_path / f"w{ranks}.npz"
        args = [str(HERE / "rank_steps.py"), str(net), str(out), "--batch", "4", "--steps", "3",
                "--backend", "cuda", "--emulate-gpu", str(tmp_path / "emulator")]
        done = mpiexec(2, ["python"] + args) if ranks == 2 else alone(args)
        assert done.returncode == 0, done.stdout + done.stderr
        with np.load(out) as data:
            found[ranks] = {k: data[k] for k in data.files}
    one, two = found[1], found[2]
    assert max(float(np.abs(one[k] - two[k]).max()) for k in one) < 1e-6
