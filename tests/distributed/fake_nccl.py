"""NCCL's calls as netdsl.distributed.nccl makes them, over MPI and host memory, with
tests/codegen's PyCUDA stand-in (device memory is host memory at real addresses):
the cuda backend's data-parallel path runs where no GPU is."""
from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import numpy as np

CODEGEN = Path(__file__).resolve().parents[1] / "codegen"


class FakeLibrary:
    def ncclGroupStart(self):
        return 0

    def ncclGroupEnd(self):
        return 0

    def ncclCommAbort(self, comm):
        return 0

    def ncclCommDestroy(self, comm):
        return 0


class FakeNccl:
    """Each communicator is the MPI world; averaging is an MPI sum over the bytes at the address."""

    calls: list[tuple[int, int]] = []

    def __init__(self):
        self.lib = FakeLibrary()

    def check(self, result, what):
        assert result == 0, what

    def unique_id(self) -> bytes:
        return os.urandom(128)

    def init_rank(self, uid, ranks, rank):
        from mpi4py import MPI
        assert len(uid) == 128 and MPI.COMM_WORLD.Get_size() == ranks and MPI.COMM_WORLD.Get_rank() == rank
        return MPI.COMM_WORLD

    def average(self, address, count, comm, stream_handle):
        from mpi4py import MPI
        values = np.ctypeslib.as_array((ctypes.c_float * count).from_address(address))
        comm.Allreduce(MPI.IN_PLACE, values, op=MPI.SUM)
        values /= np.float32(comm.Get_size())
        FakeNccl.calls.append((address, count))

    def failed(self, comm):
        return None


def install(folder) -> None:
    """The PyCUDA stand-in (with what nccl.py asks of a stream) and this NCCL."""
    sys.path.insert(0, str(CODEGEN))
    import fake_pycuda
    folder = Path(folder) / f"rank{os.environ.get('OMPI_COMM_WORLD_RANK', 0)}"  # each rank builds its own
    folder.mkdir(parents=True, exist_ok=True)
    fake_pycuda.install(folder)
    fake_pycuda._Stream.handle = 0
    fake_pycuda._Stream.is_done = lambda self: True
    fake_pycuda._Stream.synchronize = lambda self: None
    from netdsl.distributed import nccl
    nccl.Nccl = FakeNccl
