"""Trains a network a few steps on fixed data as one rank of `mpiexec`, or alone, and
writes the weights: the tests compare N ranks against one process.

    python rank_steps.py NET OUT.npz --batch B --steps S [--backend cpu] [--set k=v ...]

Every rank builds the same global batches (seeded), takes its shard, and trains
through netdsl.distributed.attach exactly as `netdsl train` does; rank 0 writes OUT.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from pathlib import Path

from netdsl.compiler import Network, compile_graph
from netdsl.distributed import World, attach


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("net")
    p.add_argument("out")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--backend", default="cpu")
    p.add_argument("--die-at", type=int, default=-1, help="rank 1 kills itself at this step (fault tests)")
    p.add_argument("--hang-at", type=int, default=-1, help="rank 1 stops responding at this step")
    p.add_argument("--emulate-gpu", metavar="DIR", help="cuda backend over PyCUDA and NCCL stand-ins (no GPU)")
    args = p.parse_args()
    if args.emulate_gpu:
        import fake_nccl
        fake_nccl.install(Path(args.emulate_gpu))
    world = World.from_environment()
    with open(args.net) as f:
        net = Network(compile_graph(text=f.read(), file=args.net, training=True))
    ex = attach(net.executor(backend=args.backend, batch=world.local_batch(args.batch), seed=3,
                             devices=world.devices(None, args.backend)), world)
    if os.environ.get("NETDSL_TEST_ZERO_OFFSET"):  # every shard draws the first images' dropout bits
        ex.image_offset = 0
    shape = net.graph.nodes[ex.image_input].shape
    classes = net.graph.nodes[ex.label_input].shape[0]
    data = np.random.default_rng(11)
    with world.stop_all_on_error():
        for step in range(args.steps):
            images = data.standard_normal((args.batch, *shape)).astype(np.float32)
            labels = data.integers(0, classes, args.batch)
            if world.rank == 1 and step == args.die_at:
                import signal
                os.kill(os.getpid(), signal.SIGKILL)
            if world.rank == 1 and step == args.hang_at:
                import time
                time.sleep(3600)
            part = world.shard(args.batch)
            metrics = world.mean_metrics(ex.step(images[part], labels[part]))
            print(f"step {step}: loss {metrics['loss']:.6f}", flush=True)
        if world.is_root:
            np.savez(args.out, **{k: v for k, v in ex.params.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
