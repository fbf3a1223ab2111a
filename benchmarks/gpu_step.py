"""A training step on one GPU: netdsl's cuda backend beside the PyTorch twin on the same card.

    python benchmarks/gpu_step.py [--nets alexnet:128,cifar:128] [--precisions fp32,tf32,bf16]
                                  [--repeats 20] [--json FILE]

For each net (`examples/<name>.net` at the given batch, both towers of a
two-tower net on device 0) and each precision of its matrix products:
- netdsl: the median wall time of `ex.step` (forward, backward, SGD update,
  the loss read back) over the repeats after warm-up steps, with the guard as
  training runs it and without;
- GPU time per kernel family: one step with a CUDA event pair on the legacy
  stream around every launch (that stream waits for the backend's streams, so
  each pair brackets one launch), summed by kernel name with its variant
  suffixes dropped (`netdsl_sgemm_nn_128x128` counts as `netdsl_sgemm`);
- PyTorch: the twin (netdsl/inspect/torch_twin.py, the same weights) on the
  same GPU with PyTorch's defaults (cuDNN convolutions in TF32, matmuls in
  FP32), the same step timed the same way, then again with
  cudnn.benchmark on;
- the netdsl/PyTorch step-time ratio.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
import traceback
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import netdsl  # noqa: E402
from netdsl.inspect.timing import random_batch, time_torch  # noqa: E402
from timing import median_seconds  # noqa: E402


def family(kernel_name: str) -> str:
    """The kernel's family: its name without shape, tile and transpose suffixes."""
    name = re.sub(r"_\d+x\d+(x\d+)*", "", kernel_name)
    return re.sub(r"_(nn|nt|tn|tt)$", "", name)


def launch_gpu_times(net, ex) -> dict[str, list[float]]:
    """Kernel family -> [milliseconds, launches] over one training step, from event pairs."""
    import pycuda.driver as drv
    from netdsl.step import Copy
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    images, labels = random_batch(net, ex.batch)
    ex._load_inputs(ex._images(images), ex._labels(labels))
    ex._set_rates()
    place = next(iter(ex.places.values()))
    with place:
        for phase in ("forward", "backward", "update"):
            ex.set_cell(ex.cells["step"], ex.steps)
            ex.set_cell(ex.cells["train"], 1)
            ex.set_cell(ex.cells["image_offset"], ex.image_offset)
            for step, launch in zip(getattr(ex.plan, phase), ex.launches[phase]):
                start, end = drv.Event(), drv.Event()
                start.record()
                ex.run([launch])
                end.record()
                end.synchronize()
                name = "copy" if isinstance(step, Copy) else family(step.kernel.name)
                totals[name][0] += end.time_since(start)
                totals[name][1] += 1
    return dict(totals)


def bench(name: str, batch: int, repeats: int, precision: str, torch_too: bool) -> dict:
    net = netdsl.load(ROOT / "examples" / f"{name}.net", {"precision": precision})
    result = {"net": name, "batch": batch, "precision": precision}
    started = time.perf_counter()
    ex = net.executor(backend="cuda", batch=batch, seed=0, devices=[0])
    result["build_s"] = time.perf_counter() - started
    images, labels = random_batch(net, batch)
    ex.step(images, labels)
    result["netdsl_step_guard_ms"] = median_seconds(lambda: ex.step(images, labels), repeats) * 1e3
    ex.guard = False
    result["netdsl_step_ms"] = median_seconds(lambda: ex.step(images, labels), repeats) * 1e3
    result["families_ms"] = launch_gpu_times(net, ex)
    result["launches"] = sum(n for _, n in result["families_ms"].values())
    result["gpu_sum_ms"] = sum(ms for ms, _ in result["families_ms"].values())
    import torch
    result["device"] = torch.cuda.get_device_name()
    if not torch_too:
        return result
    params = dict(ex.params)
    _, result["torch_step_ms"] = time_torch(net, params, batch, repeats, "cuda")
    result["torch_step_ms"] *= 1e3
    torch.backends.cudnn.benchmark = True
    _, result["torch_step_benchmark_ms"] = time_torch(net, params, batch, repeats, "cuda")
    result["torch_step_benchmark_ms"] *= 1e3
    torch.backends.cudnn.benchmark = False
    return result


def table(r: dict, torch_ms: float) -> str:
    lines = [f"== {r['net']} batch {r['batch']}, {r['precision']} matrix products, on {r['device']} "
             f"(build {r['build_s']:.1f} s)",
             f"netdsl step, guard on : {r['netdsl_step_guard_ms']:9.2f} ms  "
             f"{r['batch'] / r['netdsl_step_guard_ms'] * 1e3:9.1f} img/s",
             f"netdsl step, guard off: {r['netdsl_step_ms']:9.2f} ms  {r['batch'] / r['netdsl_step_ms'] * 1e3:9.1f} img/s",
             f"netdsl GPU time summed over {r['launches']} launches: {r['gpu_sum_ms']:.2f} ms",
             *([f"pytorch step (defaults): {r['torch_step_ms']:9.2f} ms  "
                f"{r['batch'] / r['torch_step_ms'] * 1e3:9.1f} img/s",
                f"pytorch step (cudnn.benchmark): {r['torch_step_benchmark_ms']:9.2f} ms"] if "torch_step_ms" in r else []),
             f"ratio netdsl (guard on) / pytorch (defaults): {r['netdsl_step_guard_ms'] / torch_ms:.2f}",
             f"ratio netdsl GPU sum / pytorch (defaults): {r['gpu_sum_ms'] / torch_ms:.2f}",
             "kernel family                          GPU ms  launches"]
    for fam, (ms, n) in sorted(r["families_ms"].items(), key=lambda kv: -kv[1][0]):
        lines.append(f"  {fam:<36} {ms:8.3f}  {n:8d}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="alexnet:128,cifar:128")
    parser.add_argument("--precisions", default="fp32,tf32,bf16")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results, failed = [], 0
    for spec in args.nets.split(","):
        name, batch = spec.split(":")
        torch_ms = None
        for precision in args.precisions.split(","):
            try:
                r = bench(name, int(batch), args.repeats, precision, torch_too=torch_ms is None)
                results.append(r)
                torch_ms = torch_ms or r["torch_step_ms"]
                print(table(r, torch_ms), flush=True)
            except Exception:
                failed += 1
                print(f"== {name}, {precision}: failed", flush=True)
                traceback.print_exc()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
