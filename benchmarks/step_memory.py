"""Peak resident memory of one training step: netdsl's cpu backend beside
PyTorch CPU, each in a fresh process measured by /usr/bin/time -v.

    python benchmarks/step_memory.py [--net alexnet] [--batch 128]

Each child builds the network, runs one warm-up step and one measured step
on random data, and exits; "Maximum resident set size" is the whole
process's peak: the arena (netdsl) or the caching allocator's blocks
(PyTorch), the libraries, the Python heap. The netdsl child's C module is
built (or found in the cache) before anything is timed. Prints the CPU
model and the load average, as every benchmark here does.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"
FILES = {"alexnet": "alexnet.net", "cifar": "cifar.net"}


def child(which: str, net: str, batch: int) -> None:
    import numpy as np
    if which == "netdsl":
        import netdsl
        ex = netdsl.load(EXAMPLES / FILES[net]).executor(backend="cpu", batch=batch)
        shape = (batch,) + tuple(ex.g.nodes[ex.image_input].shape)
        classes = ex.g.nodes[ex.label_input].shape[0]
        images = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        labels = np.random.default_rng(1).integers(0, classes, batch)
        for _ in range(2):
            ex.step(images, labels)
        print(f"arena {sum(a.nbytes for a in ex.plan.arenas.values()) / 2**20:,.1f} MiB")
    else:
        import torch
        sys.path.insert(0, str(HERE))
        from torch_models import MODELS, train_step_fn
        classes = 1000 if net == "alexnet" else 10
        model = MODELS[net](classes)
        step = train_step_fn(model)
        shape = (batch, 3, 224, 224) if net == "alexnet" else (batch, 3, 32, 32)
        x, y = torch.randn(shape), torch.randint(0, classes, (batch,))
        for _ in range(2):
            step(x, y)


def peak_rss(which: str, net: str, batch: int) -> tuple[float, str]:
    command = ["/usr/bin/time", "-v", sys.executable, __file__, "--child", which, "--net", net, "--batch", str(batch)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return kib / 2**20, done.stdout.strip()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--net", default="alexnet", choices=sorted(FILES))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--child", choices=["netdsl", "torch"])
    args = p.parse_args()
    if args.child:
        child(args.child, args.net, args.batch)
        return
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"CPU: {cpu}; load average {os.getloadavg()[0]:.2f}")
    ours, note = peak_rss("netdsl", args.net, args.batch)
    theirs, _ = peak_rss("torch", args.net, args.batch)
    print(f"{args.net}, batch {args.batch}, one training step, peak RSS:")
    print(f"  netdsl cpu backend  {ours:6.2f} GiB  ({note})")
    print(f"  PyTorch CPU         {theirs:6.2f} GiB")
    print(f"  ratio netdsl / PyTorch: {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
