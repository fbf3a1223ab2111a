"""What a training step of the cuda backend asks of the host, counted without a GPU.

    python benchmarks/host_traffic.py [--nets lenet,alexnet] [--batch 2] [--steps 3] [--no-guard]

netdsl/runtime/cuda.py runs over the PyCUDA stand-in (tests/codegen/fake_pycuda.py:
host memory at real addresses, kernels under the thread emulator), which counts
bytes copied device to host and host to device and host synchronisations
(explicit ones and blocking copies). For each net (`examples/<name>.net`, every
logical GPU on device 0): one warm-up step, then `--steps` training steps with
the guard on (training's default), and the counts per step. Batches are fed as
the trainer feeds the cuda backend, as uint8 crops augmented on the device
(runtime/cuda_feed.py), with flips and lighting on; the bytes uploaded per image
are printed beside what the image is as float32. The step's target: under 64
KiB read back and one synchronisation. AlexNet takes about a minute.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "codegen"))

import netdsl  # noqa: E402
from netdsl.data.augment import AUGMENT_STREAM, AugmentSpec, counter_rng, crop_batch  # noqa: E402
from netdsl.train.datasets import data_plan, input_scale  # noqa: E402

TARGET_BYTES, TARGET_SYNCS = 64 * 1024, 1


def measure(example: Path, batch: int, steps: int, guard: bool, folder: Path) -> dict:
    """Counts per step of `steps` steps after a warm-up one."""
    import fake_pycuda
    fake_pycuda.install(folder)
    sys.modules.pop("netdsl.runtime.cuda", None)
    cuda = importlib.import_module("netdsl.runtime.cuda")
    net = netdsl.load(example)
    ex = cuda.Executor(net.graph, batch, seed=1, guard=guard)
    fake_pycuda.FLAT.update(k.name for m in ex.plan.modules for k in m.kernels if k.shape == "flat")
    fake_pycuda.FLAT.add("netdsl_input_augment")
    size, spec, _ = data_plan(net)
    spec = AugmentSpec(crop=spec.crop, flip=True, pca_std=0.1)  # the paper's, whatever the net asks
    gen = np.random.default_rng(0)
    images = gen.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    mean = np.full((size, size, 3), 120.0, np.float32)
    eigval, eigvec = np.array([0.2, 0.02, 0.005]), np.eye(3)
    crops = crop_batch(images, spec, counter_rng(0, AUGMENT_STREAM, 0, 0), eigval, eigvec)
    labels = gen.integers(0, net.graph.nodes[ex.label_input].shape[0], batch)
    # as the trainer feeds the cuda backend: uint8 crops, finished on the device
    ex.feed_crops(mean, input_scale(net), size, True)
    ex.step_crops(crops, labels)
    fake_pycuda.traffic.clear()
    losses = [ex.step_crops(crops, labels)["loss"] for _ in range(steps)]
    counts = {key: fake_pycuda.traffic[key] / steps for key in ("dtoh_bytes", "htod_bytes", "syncs")}
    return counts | {"htod_per_image": counts["htod_bytes"] / batch, "float_per_image": 4 * crops.crops[0].size,
                     "weights_bytes": sum(v.nbytes for v in ex._params.values()), "loss": losses[-1]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="lenet,alexnet")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--no-guard", action="store_true")
    args = parser.parse_args(argv)
    ok = True
    print(f"{'net':10} {'D2H bytes/step':>15} {'H2D bytes/step':>15} {'H2D bytes/image':>16} "
          f"{'as float32':>11} {'syncs/step':>11} {'weights (bytes)':>16}")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.nets.split(","):
            counts = measure(ROOT / "examples" / f"{name}.net", args.batch, args.steps, not args.no_guard,
                             Path(folder))
            ok &= counts["dtoh_bytes"] < TARGET_BYTES and counts["syncs"] <= TARGET_SYNCS
            print(f"{name:10} {counts['dtoh_bytes']:15,.0f} {counts['htod_bytes']:15,.0f} "
                  f"{counts['htod_per_image']:16,.0f} {counts['float_per_image']:11,} {counts['syncs']:11.1f} "
                  f"{counts['weights_bytes']:16,}")
    print(f"target: under {TARGET_BYTES:,} bytes and at most {TARGET_SYNCS} synchronisation per step: "
          + ("met" if ok else "MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
