"""Data-parallel training over MPI ranks (docs/distributed.md).

Every rank builds the same plan at batch B/N, trains on its shard of each global
batch of B, and the ranks average their parameter gradients before each update:
over MPI (buckets.py) for the host backends, over NCCL (nccl.py) for cuda.
"""
from __future__ import annotations

from .comm import RankLost, World


def attach(executor, world: World):
    """Make `executor` (built at the local batch) one rank of `world`: its shard's first
    image for the dropout masks, and gradients averaged across ranks before each update."""
    if world.size == 1:
        return executor
    executor.image_offset = world.rank * executor.batch
    if executor.backend == "cuda":
        from .nccl import NcclGradients
        executor.on_gradients_ready = NcclGradients(world, executor)
    elif hasattr(executor, "plan"):
        from .buckets import GradientBuckets
        executor.on_gradients_ready = GradientBuckets(world, executor)
    else:
        _average_after_backward(executor, world)
    return executor


def _average_after_backward(executor, world: World) -> None:
    """The reference interpreter returns all gradients at once after backward: they are
    averaged there, by wrapping this one instance's `_gradients` (no overlap to gain)."""
    from .buckets import average_arrays
    inner = executor._gradients

    def averaged(images, labels, train, with_metrics=False):
        out = inner(images, labels, train, with_metrics)
        average_arrays(world, list(out[1].values()), executor.steps)
        return out
    executor._gradients = averaged


__all__ = ["RankLost", "World", "attach"]
