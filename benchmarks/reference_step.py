"""Times the numpy reference executor's training step beside PyTorch CPU on the
same network, batch and thread count, and prints images/s and the ratio.

    python benchmarks/reference_step.py [--net alexnet] [--batch 32] [--repeats 5]

Median of the repeats after one warm-up step. Both sides use the same BLAS
thread count (torch.set_num_threads and threadpoolctl). To run the AVX-512
OpenBLAS kernels rather than the ones this environment pins, start it with
`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`; the script prints which ran.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
import netdsl  # noqa: E402
from netdsl.graph_ops import image_input, label_input  # noqa: E402
from timing import median_seconds  # noqa: E402
from torch_models import MODELS, train_step_fn  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FILES = {"alexnet": "alexnet.net", "cifar": "cifar.net"}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--net", default="alexnet", choices=sorted(FILES))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        blas = [(i["internal_api"], i.get("architecture"), i["num_threads"]) for i in threadpool_info()
                if i["user_api"] == "blas"]
        print(f"BLAS: {blas}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}; threads {args.threads}")
        net = netdsl.load(EXAMPLES / FILES[args.net])
        shape = net.graph.nodes[image_input(net.graph)].shape
        classes = net.graph.nodes[label_input(net.graph)].shape[0]
        r = np.random.default_rng(0)
        x = r.standard_normal((args.batch,) + tuple(shape)).astype(np.float32)
        y = r.integers(0, classes, args.batch)

        ex = net.executor(backend="reference", batch=args.batch)
        ours = median_seconds(lambda: ex.step(x, y), args.repeats)

        model = MODELS[args.net](classes)
        step = train_step_fn(model)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        theirs = median_seconds(lambda: step(tx, ty), args.repeats)

    print(f"{args.net} training step, batch {args.batch}, median of {args.repeats}:")
    print(f"  netdsl reference  {ours * 1e3:8.1f} ms  {args.batch / ours:8.1f} images/s")
    print(f"  PyTorch CPU       {theirs * 1e3:8.1f} ms  {args.batch / theirs:8.1f} images/s")
    print(f"  reference / PyTorch time: {ours / theirs:.2f}x")


if __name__ == "__main__":
    main()
