"""Data-parallel scaling on this machine: images/s of a training step on 1 and 2
MPI ranks with one thread each, the scaling efficiency, and the gradient allreduce
per step against the bytes it moves.

    python benchmarks/scaling.py [--net examples/cifar.net] [--batch 128] [--steps 20]
                                 [--ranks 1,2] [--wait 0] [--tcp]

Each configuration is `mpiexec -n N` of this file in worker mode: every rank builds
the cpu backend's plan at batch B/N (B, the global batch, stays fixed: strong
scaling, as `mpiexec netdsl train` does), trains on synthetic images through
netdsl.distributed.attach (bucketed Iallreduce started as backward finishes each
layer), and after warm-up times `--steps` steps. Reported per configuration:

    images/s        global batch x steps / wall seconds
    exposed wait    seconds per step backward waited for the sums (what overlap did not hide)
    allreduce       seconds of one blocking MPI Allreduce of the same bytes, alone (its full cost)

The figures mean something only on otherwise idle cores: every line carries the CPU
model, the BLAS kernel and the load average. `--wait S` waits up to S seconds for the
1-minute load to drop below 1 before each configuration. Never run by CI.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    try:
        from threadpoolctl import threadpool_info
        blas = ", ".join(f"{i['internal_api']} {i.get('architecture', '?')}" for i in threadpool_info()
                         if i.get("user_api") == "blas") or "none loaded"
    except ImportError:
        blas = "threadpoolctl missing"
    return f"cpu {cpu}; blas {blas}"


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def worker(args) -> None:
    from netdsl.compiler import load as load_net
    from netdsl.distributed import World, attach
    world = World.from_environment()
    net = load_net(args.net)
    ex = attach(net.executor(backend="cpu", batch=world.local_batch(args.batch), seed=0), world)
    shape = net.graph.nodes[ex.image_input].shape
    classes = net.graph.nodes[ex.label_input].shape[0]
    data = np.random.default_rng(0)
    images = data.standard_normal((args.batch, *shape)).astype(np.float32)
    labels = data.integers(0, classes, args.batch)
    part = world.shard(args.batch)
    for _ in range(3):  # warm-up: first touches of the arena, BLAS buffers, MPI connections
        ex.step(images[part], labels[part])
    buckets = ex.on_gradients_ready
    waited = buckets.wait_seconds if buckets else 0.0
    world.sum_(np.zeros(1), "the start line")
    started = time.perf_counter()
    for _ in range(args.steps):
        ex.step(images[part], labels[part])
    world.sum_(np.zeros(1), "the finish line")
    seconds = time.perf_counter() - started
    nbytes = buckets.nbytes if buckets else sum(4 * p.size for p in ex.params.values())
    full = 0.0
    if world.size > 1:
        flat = np.ones(nbytes // 4, np.float32)
        from mpi4py import MPI
        world.comm.Barrier()
        t = time.perf_counter()
        for _ in range(args.steps):
            world.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
        full = (time.perf_counter() - t) / args.steps
    if world.is_root:
        print(json.dumps({"ranks": world.size, "images_per_s": args.batch * args.steps / seconds,
                          "step_s": seconds / args.steps, "bytes": nbytes,
                          "exposed_wait_s": ((buckets.wait_seconds - waited) / args.steps) if buckets else 0.0,
                          "allreduce_s": full, "buckets": len(buckets.layout) if buckets else 0}), flush=True)


def run(ranks: int, args) -> dict:
    command = ["mpiexec", "-n", str(ranks), "--oversubscribe", "--bind-to", "core"]
    if os.geteuid() == 0:
        command.append("--allow-run-as-root")
    if args.tcp:
        command += ["--mca", "btl", "self,tcp"]
    command += [sys.executable, __file__, "--worker", "--net", args.net, "--batch", str(args.batch),
                "--steps", str(args.steps)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        sys.exit(done.stdout + done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def wait_for_quiet(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while os.getloadavg()[0] >= 1 and time.monotonic() < deadline:
        time.sleep(10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", default=str(ROOT / "examples" / "cifar.net"))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--ranks", default="1,2")
    p.add_argument("--wait", type=float, default=0, help="seconds to wait for a load below 1 before each run")
    p.add_argument("--tcp", action="store_true", help="TCP only (btl self,tcp), as between hosts")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    print(f"{Path(args.net).name}, global batch {args.batch}, {args.steps} timed steps, one thread per rank")
    print(machine())
    results = {}
    for ranks in map(int, args.ranks.split(",")):
        wait_for_quiet(args.wait)
        before = load()
        r = results[ranks] = run(ranks, args)
        line = f"{ranks} rank(s): {r['images_per_s']:8.1f} images/s, step {1e3 * r['step_s']:7.1f} ms"
        if ranks > 1:
            rate = r["bytes"] / r["allreduce_s"] / 1e9 if r["allreduce_s"] else float("nan")
            line += (f"; gradients {r['bytes']:,} bytes/step/rank in {r['buckets']} bucket(s): allreduce alone "
                     f"{1e3 * r['allreduce_s']:.2f} ms ({rate:.2f} GB/s, {r['allreduce_s'] / r['step_s']:.1%} of "
                     f"the step), exposed wait {1e3 * r['exposed_wait_s']:.2f} ms "
                     f"({r['exposed_wait_s'] / r['step_s']:.1%})")
        print(f"{line}  [{before} before, {load()} after]", flush=True)
    if 1 in results:
        for ranks, r in results.items():
            if ranks > 1:
                speedup = r["images_per_s"] / results[1]["images_per_s"]
                print(f"speedup 1 -> {ranks} ranks: {speedup:.2f}x, scaling efficiency {speedup / ranks:.0%}  [{load()}]")


if __name__ == "__main__":
    main()
