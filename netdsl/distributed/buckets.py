"""Summing parameter gradients across ranks in buckets, overlapped with backward.

The planned executor runs backward in segments and calls `on_gradients_ready(layer,
refs)` once a layer's parameter gradients are final (planned.py). Layers are grouped,
in the order backward finishes them, into buckets of about `cap` bytes (PyTorch DDP's
and Horovod's fusion buffers: one large message moves at the link's rate, many small
ones pay its latency each). When a bucket's last layer is ready its gradients are
packed into one flat float32 buffer and a non-blocking Iallreduce starts; the next
segments of backward compute while it runs (each later callback Test()s the pending
ones, which is when MPI moves their bytes). At the last layer every sum is awaited,
divided by the number of ranks (each rank's loss is the mean over its shard, so the
mean of the ranks' gradients is the gradient of the global batch's mean loss) and
written back where the update kernels read it.
"""
from __future__ import annotations

import time

import numpy as np

DEFAULT_CAP = 4 << 20  # bytes per bucket


def group(sizes: list[tuple[str, int]], cap: int) -> list[list[str]]:
    """Consecutive layers into buckets: a bucket closes once it holds `cap` bytes or more."""
    buckets, current, filled = [], [], 0
    for layer, nbytes in sizes:
        current.append(layer)
        filled += nbytes
        if filled >= cap:
            buckets.append(current)
            current, filled = [], 0
    if current:
        buckets.append(current)
    return buckets


class BucketCounting:
    """The counting both reductions share (MPI's below, NCCL's in nccl.py): each layer's
    gradient tensors, the layers grouped into buckets, and per step a count-down of each
    bucket's layers as backward finishes them. A bucket whose last layer arrives is
    started (`_start`), the step's last layer finishes the sums (`_finish`), and between
    arrivals `_progress` may drive the ones in flight."""

    def _count(self, executor, cap: int) -> None:
        segments = executor.gradient_segments()
        self.refs = {layer: refs for _, layer, refs in segments}
        sizes = [(layer, sum(executor.plan.tensors[r].nbytes for r in refs)) for _, layer, refs in segments]
        self.layout = group(sizes, cap)
        self.bucket_of = {layer: b for b, layers in enumerate(self.layout) for layer in layers}

    def _reset(self) -> None:
        self.waiting = [len(layers) for layers in self.layout]
        self.ready = 0

    def __call__(self, layer: str, refs) -> None:
        if self.ready == 0:
            self.world.arrive(self.ex.steps)
        self.ready += 1
        b = self.bucket_of[layer]
        self.waiting[b] -= 1
        if self.waiting[b] == 0:
            self._start(b)
        if self.ready == len(self.refs):
            self._finish()
        else:
            self._progress()

    def _start(self, b: int) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def _progress(self) -> None:
        pass


class GradientBuckets(BucketCounting):
    """The callback a planned executor calls during backward (set as `ex.on_gradients_ready`)."""

    def __init__(self, world, executor, cap: int = DEFAULT_CAP):
        self.world, self.ex = world, executor
        self._count(executor, cap)
        self.buffers = [np.empty(sum(executor.plan.tensors[r].size for layer in layers for r in self.refs[layer]),
                                 np.float32) for layers in self.layout]
        self.nbytes = sum(buf.nbytes for buf in self.buffers)  # what each rank sends into the sum per step
        self.wait_seconds = 0.0  # time backward waited for sums (what the overlap did not hide)
        self.steps = 0
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self.requests = []

    def _progress(self) -> None:
        self.world.progress(self.requests)

    def _start(self, b: int) -> None:
        from mpi4py import MPI
        self.ex.synchronize()  # a device backend's writes of these gradients have landed
        flat, at = self.buffers[b], 0
        for layer in self.layout[b]:
            for ref in self.refs[layer]:
                part = self.ex.read(ref).reshape(-1)
                flat[at:at + part.size] = part
                at += part.size
        self.requests.append(self.world.comm.Iallreduce(MPI.IN_PLACE, flat, op=MPI.SUM))

    def _finish(self) -> None:
        started = time.perf_counter()
        self.world.wait(self.requests, f"the gradient sums of step {self.ex.steps}")
        self.wait_seconds += time.perf_counter() - started
        self.steps += 1
        for b, flat in enumerate(self.buffers):
            np.divide(flat, np.float32(self.world.size), out=flat)
            at = 0
            for layer in self.layout[b]:
                for ref in self.refs[layer]:
                    n = self.ex.plan.tensors[ref].size
                    view = self.ex.view(ref)
                    if view is not None:
                        view.reshape(-1)[...] = flat[at:at + n]
                    else:
                        self.ex.upload(ref, flat[at:at + n])
                    at += n
        self._reset()


def average_arrays(world, arrays: list[np.ndarray], step: int, cap: int = DEFAULT_CAP) -> None:
    """The mean over ranks of each array, in place, in buckets started together (the
    reference executor's gradients, which it hands over all at once after backward)."""
    from mpi4py import MPI
    sizes = [(str(i), a.nbytes) for i, a in enumerate(arrays)]
    layout = [[int(i) for i in bucket] for bucket in group(sizes, cap)]
    flats = [np.concatenate([arrays[i].reshape(-1) for i in bucket]).astype(np.float32) for bucket in layout]
    what = f"the gradient sums of step {step}"
    world.arrive(step)
    world.wait([world.comm.Iallreduce(MPI.IN_PLACE, flat, op=MPI.SUM) for flat in flats], what)
    for bucket, flat in zip(layout, flats):
        np.divide(flat, np.float32(world.size), out=flat)
        at = 0
        for i in bucket:
            arrays[i][...] = flat[at:at + arrays[i].size].reshape(arrays[i].shape)
            at += arrays[i].size
