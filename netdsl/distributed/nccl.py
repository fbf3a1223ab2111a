"""Averaging gradients across ranks on the GPUs with NCCL, called through ctypes.

The library is the nvidia-nccl-cu12 / -cu13 wheel's nvidia/nccl/lib/libnccl.so.2
(or $NETDSL_NCCL, else the system's libnccl.so.2). A rank owns one or more
physical GPUs (its towers' mapping); each of them gets a communicator spanning the
same GPU position on every rank, because a parameter lives on one logical device
and its copies on the other ranks live on theirs. Rank 0 makes each communicator's
unique id and MPI hands it to the others (World.share).

A bucket's allreduces are one NCCL group, in place, with ncclAvg, issued on the
stream of the logical device that wrote those gradients: they queue behind the
kernels that wrote them and the update kernels queue behind them, with no host
copy. At the end of backward the host polls the streams and the communicators'
asynchronous errors against the deadline (a dead peer would block a stream
forever) and aborts the communicators when it passes. The cuda executor
synchronizes after every run of launches, so a bucket's sum overlaps the host's
issue of the next backward segment, not yet its kernels.
"""
from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path

from ..errors import NetDslError
from .buckets import DEFAULT_CAP, BucketCounting
from .comm import RankLost

NCCL_FLOAT32, NCCL_AVG = 7, 4
SUCCESS, IN_PROGRESS = 0, 7
UNIQUE_ID_BYTES = 128


class UniqueId(ctypes.Structure):
    _fields_ = [("internal", ctypes.c_char * UNIQUE_ID_BYTES)]


def library_path() -> str:
    if os.environ.get("NETDSL_NCCL"):
        return os.environ["NETDSL_NCCL"]
    try:
        import nvidia.nccl
        for base in nvidia.nccl.__path__:
            if (Path(base) / "lib" / "libnccl.so.2").exists():
                return str(Path(base) / "lib" / "libnccl.so.2")
    except ImportError:
        pass
    return "libnccl.so.2"


class Nccl:
    """The few NCCL entry points data parallelism needs."""

    def __init__(self):
        try:
            self.lib = ctypes.CDLL(library_path())
        except OSError as exc:
            raise NetDslError(f"cannot load NCCL: {exc}",
                              hint="pip install nvidia-nccl-cu12 (or -cu13, matching the driver), "
                              "or point NETDSL_NCCL at libnccl.so.2") from None
        lib = self.lib
        lib.ncclGetErrorString.restype = ctypes.c_char_p
        lib.ncclCommInitRank.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, UniqueId, ctypes.c_int]
        lib.ncclAllReduce.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                      ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        lib.ncclCommGetAsyncError.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
        for name in ("ncclCommAbort", "ncclCommDestroy"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]

    def check(self, result: int, what: str) -> None:
        if result not in (SUCCESS, IN_PROGRESS):
            raise NetDslError(f"NCCL {what} failed: {self.lib.ncclGetErrorString(result).decode()}")

    def unique_id(self) -> bytes:
        uid = UniqueId()
        self.check(self.lib.ncclGetUniqueId(ctypes.byref(uid)), "ncclGetUniqueId")
        return ctypes.string_at(ctypes.addressof(uid), UNIQUE_ID_BYTES)

    def init_rank(self, uid: bytes, ranks: int, rank: int) -> ctypes.c_void_p:
        comm, packed = ctypes.c_void_p(), UniqueId()
        ctypes.memmove(ctypes.addressof(packed), uid, UNIQUE_ID_BYTES)
        self.check(self.lib.ncclCommInitRank(ctypes.byref(comm), ranks, packed, rank), "ncclCommInitRank")
        return comm

    def average(self, address: int, count: int, comm, stream_handle: int) -> None:
        """In place: the mean over the communicator's ranks, queued on the stream."""
        self.check(self.lib.ncclAllReduce(address, address, count, NCCL_FLOAT32, NCCL_AVG, comm, stream_handle),
                   "ncclAllReduce")

    def failed(self, comm) -> str | None:
        state = ctypes.c_int()
        self.check(self.lib.ncclCommGetAsyncError(comm, ctypes.byref(state)), "ncclCommGetAsyncError")
        return None if state.value in (SUCCESS, IN_PROGRESS) else self.lib.ncclGetErrorString(state.value).decode()


class NcclGradients(BucketCounting):
    """`ex.on_gradients_ready` for the cuda backend (the MPI buckets' counterpart)."""

    def __init__(self, world, executor, cap: int = DEFAULT_CAP):
        self.world, self.ex, self.nccl = world, executor, Nccl()
        self.comms = {}
        for device in sorted(executor.places):  # the same order on every rank: ids pair up
            uid = world.share(self.nccl.unique_id() if world.is_root else None, f"the NCCL id of GPU {device}")
            with executor.places[device]:
                self.comms[device] = self.nccl.init_rank(uid, world.size, world.rank)
        self._count(executor, cap)
        self.nbytes = sum(executor.plan.tensors[r].nbytes for refs in self.refs.values() for r in refs)
        self.wait_seconds, self.steps = 0.0, 0
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self.streams = set()

    def _start(self, b: int) -> None:
        lib, ex = self.nccl.lib, self.ex
        self.nccl.check(lib.ncclGroupStart(), "ncclGroupStart")
        try:
            for layer in self.layout[b]:
                for ref in self.refs[layer]:
                    logical = ex.plan.tensors[ref].device
                    stream = ex._stream(logical)
                    self.streams.add((ex.plan.placement[logical], stream))
                    with ex._place(ref):
                        self.nccl.average(ex._address(ref), ex.plan.tensors[ref].size,
                                          self.comms[ex.plan.placement[logical]], stream.handle)
        finally:
            self.nccl.check(lib.ncclGroupEnd(), "ncclGroupEnd")

    def _finish(self) -> None:
        started = time.perf_counter()
        self.world.wait([], f"the gradient sums of step {self.ex.steps}")  # every peer reached this step
        deadline = time.monotonic() + self.world.timeout
        for device, stream in self.streams:
            with self.ex.places[device]:
                while not stream.is_done():
                    problem = self.nccl.failed(self.comms[device])
                    if problem or time.monotonic() > deadline:
                        for comm in self.comms.values():
                            self.nccl.lib.ncclCommAbort(comm)
                        raise RankLost(f"the NCCL gradient sums of step {self.ex.steps} on GPU {device} "
                                       + (f"failed: {problem}" if problem else
                                          f"did not complete within {self.world.timeout:g} s"),
                                       hint="a peer rank's GPU or link stopped; its own output says why")
                    time.sleep(1e-4)
        self.wait_seconds += time.perf_counter() - started
        self.steps += 1
        self._reset()
