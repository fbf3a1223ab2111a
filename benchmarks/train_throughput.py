"""Training throughput of the cpu backend (generated C) beside PyTorch CPU, in one run.

    python benchmarks/train_throughput.py [--nets alexnet:64,cifar:128] [--repeats 3] [--threads N]

For each net: the median time of a whole training step (forward, backward,
SGD update) over the repeats after one warm-up step, for netdsl's cpu backend
and for the PyTorch twin of the net (benchmarks/torch_models.py) at the same
batch and thread count (torch.set_num_threads; threadpoolctl for the BLAS and
OpenMP pools), then images/s and the ratio. Then where the cpu backend's time
goes: one step with every launch timed on its own, summed per layer (its
forward, backward and gradient-sum kernels), largest first.

The BLAS the generated C links is the OpenBLAS numpy ships; the script prints
which of its kernels (`architecture`) ran. To run its AVX-512 kernels rather
than the ones this environment pins, start it with
`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
import netdsl  # noqa: E402
from netdsl.graph_ops import image_input, label_input  # noqa: E402
from netdsl.runtime.cpu import Executor  # noqa: E402
from timing import median_seconds  # noqa: E402
from torch_models import MODELS, train_step_fn  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def batch_for(net, batch: int):
    g = net.graph
    image = g.nodes[image_input(g)].shape
    classes = g.nodes[label_input(g)].shape[0]
    gen = np.random.default_rng(0)
    return gen.standard_normal((batch,) + tuple(image)).astype(np.float32), gen.integers(0, classes, batch), classes


def layer_of(node: str) -> str:
    """The forward layer a step serves: `x:backward` and `x:gradsum` count towards x."""
    return node.split(":", 1)[0]


def profile(ex: Executor, images, labels, top: int) -> None:
    """One training step with each launch timed alone, summed per layer."""
    timings = ex.timed_step(images, labels)
    per_layer = defaultdict(lambda: [0.0, 0.0])
    for step, phase, seconds in timings:
        per_layer[layer_of(step.node)][phase == "backward"] += seconds
    total = sum(seconds for _, _, seconds in timings)
    print(f"  where the time goes (each launch timed alone; {total * 1e3:.0f} ms in all):")
    print(f"    {'layer':32s} {'forward':>9s} {'backward':>9s} {'share':>6s}")
    ranked = sorted(per_layer.items(), key=lambda kv: -sum(kv[1]))
    for layer, (fwd, bwd) in ranked[:top]:
        print(f"    {layer:32s} {fwd * 1e3:7.1f}ms {bwd * 1e3:7.1f}ms {(fwd + bwd) / total:6.1%}")
    rest = sum(sum(v) for _, v in ranked[top:])
    if rest:
        print(f"    {'(the other ' + str(len(ranked) - top) + ')':32s} {'':9s} {'':9s} {rest / total:6.1%}")
    by_kernel = defaultdict(float)
    for step, _, seconds in timings:
        by_kernel[getattr(step, "kernel", None) and step.kernel.purpose or "copy"] += seconds
    kinds = sorted(by_kernel.items(), key=lambda kv: -kv[1])[:6]
    print("    by kernel purpose: " + ", ".join(f"{name} {s / total:.0%}" for name, s in kinds))


def run(name: str, batch: int, repeats: int, top: int) -> tuple[float, float]:
    net = netdsl.load(EXAMPLES / f"{name}.net")
    images, labels, classes = batch_for(net, batch)
    started = time.perf_counter()
    ex = Executor(net.graph, batch, seed=0)
    built = time.perf_counter() - started
    ours = median_seconds(lambda: ex.step(images, labels), repeats)

    model = MODELS[name](classes)
    step = train_step_fn(model)
    tx, ty = torch.from_numpy(images), torch.from_numpy(labels)
    theirs = median_seconds(lambda: step(tx, ty), repeats)

    print(f"{name}, batch {batch}: training step, median of {repeats} "
          f"(executor built in {built:.1f} s, the C compiled or taken from the cache)")
    print(f"  netdsl cpu   {ours * 1e3:8.1f} ms  {batch / ours:8.1f} images/s")
    print(f"  PyTorch CPU  {theirs * 1e3:8.1f} ms  {batch / theirs:8.1f} images/s")
    print(f"  netdsl / PyTorch images/s: {theirs / ours:.2f}x")
    profile(ex, images, labels, top)
    return batch / ours, batch / theirs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", default="alexnet:64,cifar:128", help="name:batch pairs, comma-separated")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--top", type=int, default=12, help="layers shown in the profile")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        for info in threadpool_info():
            print(f"{info['user_api']}: {info['internal_api']} {info.get('version') or ''} "
                  f"kernel={info.get('architecture', '-')} threads={info['num_threads']} ({Path(info['filepath']).name})")
        print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}, "
              f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE')}; torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads\n")
        results = {}
        for item in args.nets.split(","):
            name, batch = item.split(":")
            results[name] = run(name, int(batch), args.repeats, args.top)
            print()
    print("summary (images/s): " + "; ".join(f"{n} {ours:.1f} vs {theirs:.1f} = {ours / theirs:.2f}x"
                                             for n, (ours, theirs) in results.items()))


if __name__ == "__main__":
    main()
