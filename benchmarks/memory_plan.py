"""The memory plan of a training step beside what PyTorch allocates for the
same network and batch, printed side by side.

    python benchmarks/memory_plan.py [--net alexnet] [--batch 128]

netdsl: per device, the planned arena (the peak of the static plan), the sum
of every buffer allocated apart, and the most bytes live at one step (a bound
no placement beats); parameters and momentum are besides.

PyTorch: its CPU twin (benchmarks/torch_models.py) runs one SGD step after a
warm-up step (which creates the momentum buffers), under
`torch.profiler.profile(profile_memory=True)`. With memory profiling on,
PyTorch's CPU allocator reports every allocation and free to the profiler
with its running total of bytes allocated since profiling began; the largest
such total is the step's peak above what lived before it. The gradients are
freed before profiling starts, so what lived before is the parameters, the
momentum and the batch; the batch's bytes are added back, since the arenas
hold the input too. That is the quantity an arena stands for. It counts tensors from the
CPU allocator only (oneDNN's own scratch, if any, is not seen), and it is
PyTorch's CPU algorithm choice, not cuDNN's, that sets its workspaces, so
read it as an estimate of the framework's activation memory, not a GPU figure.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netdsl.compiler import compile_graph  # noqa: E402
from netdsl.graph_ops import image_input, label_input  # noqa: E402
from netdsl.passes import plan_step  # noqa: E402
from torch_models import MODELS, train_step_fn  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FILES = {"alexnet": "alexnet.net", "cifar": "cifar.net"}
MIB = 2**20


def torch_step_peak(net: str, batch: int, shape, classes: int) -> tuple[int, int]:
    """(peak bytes allocated during one step, inputs included; parameter + momentum bytes)."""
    model = MODELS[net](classes)
    step = train_step_fn(model)
    x = torch.randn((batch,) + tuple(shape))
    y = torch.randint(0, classes, (batch,))
    step(x, y)  # warm-up: momentum buffers, lazy initialisation
    model.zero_grad(set_to_none=True)  # what lives now: parameters, momentum, the batch
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(x, y)
    peak = 0
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        if event.tag == _EventType.Allocation:
            peak = max(peak, event.extra_fields.total_allocated)
        stack.extend(event.children)
    persistent = sum(p.numel() * p.element_size() for p in model.parameters()) * 2
    return peak + x.numel() * x.element_size() + y.numel() * y.element_size(), persistent


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--net", default="alexnet", choices=sorted(FILES))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    g = compile_graph(EXAMPLES / FILES[args.net], training=True)
    plan = plan_step(g, args.batch, "c", lambda device: "host")  # what the cpu backend allocates
    image = g.nodes[image_input(g)].shape
    classes = g.nodes[label_input(g)].shape[0]

    print(f"{args.net}, batch {args.batch}: one training step (MiB; parameters + momentum apart)")
    print(f"{'':<22} {'arena':>13} {'sum of tensors':>15} {'live bound':>11} {'params+mom':>11}")
    total = dict.fromkeys(("arena_bytes", "sum_bytes", "live_peak_bytes", "persistent_bytes"), 0)
    for device, arena in plan.arenas.items():
        d = {"arena_bytes": arena.nbytes, "sum_bytes": arena.sum_bytes, "live_peak_bytes": arena.live_peak_bytes,
             "persistent_bytes": arena.by_role.get("param", 0) + arena.by_role.get("momentum", 0)}
        print(f"netdsl {device:<15} {d['arena_bytes'] / MIB:>13,.1f} {d['sum_bytes'] / MIB:>15,.1f} "
              f"{d['live_peak_bytes'] / MIB:>11,.1f} {d['persistent_bytes'] / MIB:>11,.1f}")
        for key in total:
            total[key] += d[key]
    peak, persistent = torch_step_peak(args.net, args.batch, image, classes)
    print(f"{'PyTorch CPU, 1 device':<22} {peak / MIB:>13,.1f} {'':>15} {'':>11} {persistent / MIB:>11,.1f}")
    print(f"planned peak / PyTorch peak: {total['arena_bytes'] / peak:.2f}; "
          f"planned / sum of buffers: {total['arena_bytes'] / total['sum_bytes']:.2f}")


if __name__ == "__main__":
    main()
