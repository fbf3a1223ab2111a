"""Throughput of the data pipeline's host part: what one core feeds per second.

Two paths serve the paper's training batches (random 224 crop of 256 px images,
mirror, PCA lighting, mean subtraction) from a prepared cache:

* cuda: the host cuts each uint8 crop (the device mirrors, lights, subtracts
  and converts), and the batch is copied into a preallocated uint8 staging
  buffer, as netdsl/runtime/cuda_feed.py copies it into pinned memory;
* cpu: the host makes the whole float32 NCHW batch.

The cache is a synthetic prepared set (default 20,000 images at 256 px, 3.9
GB) written straight as a cache (no JPEG decoding: that is prepare's cost, see
--prepare) into --cache, and reused when present. Reported: images per
wall-clock second and per CPU-second (the per-core rate, which other load
disturbs far less), the median of --repeats epochs, for one thread and one per
core, and the bytes uploaded per image. Aims: cuda host part >= 6,000 images
per core-second, cpu path >= 1,500.

    python benchmarks/loader_throughput.py [--images 20000] [--repeats 3] [--prepare 2000]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from netdsl.data import AugmentSpec, BatchLoader, prepare
from netdsl.data.prepare import PreparedData

SIZE = 256
CLASSES = 1000


class Stopwatch:
    """Wall-clock and CPU seconds of a block, CPU including threads and reaped child processes."""

    def __enter__(self) -> Stopwatch:
        self._wall, self._cpu = time.perf_counter(), self._cpu_now()
        return self

    def __exit__(self, *exc_info) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = self._cpu_now() - self._cpu

    @staticmethod
    def _cpu_now() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(f"{i['internal_api']} {i.get('architecture', '?')}" for i in threadpool_info()
                         if i.get("user_api") == "blas") or "none loaded"
    except ImportError:
        blas = "threadpoolctl missing"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"cpu {cpu} ({os.cpu_count()} cores); blas {blas}; load average {load}"


def synthetic_cache(directory: Path, count: int) -> PreparedData:
    """count 256 px uint8 images with labels, mean image and PCA basis, made once and reused.

    Smooth gradients plus noise: the content does not change the cost of
    cropping or augmenting, only that the bytes are real and paged in."""
    directory.mkdir(parents=True, exist_ok=True)
    images_path, done = directory / "train_images.npy", directory / f"complete-{count}"
    if not done.exists():
        images = np.lib.format.open_memmap(images_path, "w+", np.uint8, (count, SIZE, SIZE, 3))
        rng = np.random.default_rng(0)
        ramp = np.add.outer(np.arange(SIZE), np.arange(SIZE)).astype(np.uint16)[None, :, :, None]
        for start in range(0, count, 256):
            part = images[start : start + 256]
            noise = rng.integers(0, 64, part.shape, dtype=np.uint16)
            part[...] = ((ramp + noise + rng.integers(0, 256, (len(part), 1, 1, 3))) % 256).astype(np.uint8)
        images.flush()
        del images
        done.touch()
    images = np.load(images_path, mmap_mode="r")
    labels = np.arange(count, dtype=np.int64) % CLASSES
    mean = np.full((SIZE, SIZE, 3), 127.5, np.float32)
    eigval = np.array([0.2175, 0.0188, 0.0045])
    eigvec = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])
    empty = np.zeros((0, SIZE, SIZE, 3), np.uint8)
    names = [str(k) for k in range(CLASSES)]
    return PreparedData(directory, SIZE, images, labels, empty, np.zeros(0, np.int64), mean, eigval, eigvec,
                        names, names, [])


def time_epochs(prepared, batch: int, workers: int, repeats: int, crops: bool) -> tuple[list[Stopwatch], int, int]:
    """One epoch per repeat; returns the watches, the images made, and the bytes an upload carries per image."""
    spec = AugmentSpec.paper_train(224)
    watches, staging, upload = [], None, 0
    for epoch in range(repeats):
        loader = BatchLoader(prepared, "train", batch, spec, seed=0, epoch=epoch, workers=workers, crops=crops)
        with Stopwatch() as watch, loader:
            for made, _ in loader:
                if crops:  # the copy into (pinned) staging that cuda_feed makes before each upload
                    if staging is None:
                        staging = np.empty(made.crops.size, np.uint8)
                    staging[:] = made.crops.reshape(-1)
                    upload = (made.crops.nbytes + made.windows.nbytes + made.shifts.nbytes) // len(made)
                else:
                    upload = made.nbytes // len(made)
        watches.append(watch)
    return watches, len(loader) * batch, upload


def report(what: str, images: int, watches: list[Stopwatch], extra: str = "") -> None:
    wall = statistics.median(w.wall for w in watches)
    cpu = statistics.median(w.cpu for w in watches)
    print(f"  {what:<26} {images / wall:8.0f} images/s wall   {images / cpu:8.0f} images per CPU-second{extra}")


def imagenet_like_jpegs(directory: Path, count: int, classes: int = 10) -> Path:
    """count JPEGs of ImageNet's typical size (sides around 400 x 350, about 110 KB at quality 90),
    in class folders, made once and reused. A gradient under strong noise: libjpeg's work
    grows with the detail to code, and this detail gives ILSVRC's mean file size."""
    from PIL import Image

    done = directory / f"complete-{count}"
    if done.exists():
        return directory
    rng = np.random.default_rng(0)
    for label in range(classes):
        (directory / "train" / f"n{label:08d}").mkdir(parents=True, exist_ok=True)
        (directory / "val" / f"n{label:08d}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        height, width = int(rng.integers(280, 421)), int(rng.integers(320, 481))
        y, x = np.mgrid[0:height, 0:width]
        base = np.stack([(x * 0.5 + y * 0.2) % 256, (y * 0.6) % 256, (x * 0.3 + 90) % 256], -1)
        pixels = np.clip(base + rng.normal(0, 64, (height, width, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(directory / "train" / f"n{i % classes:08d}" / f"{i:07d}.JPEG", quality=90)
    done.touch()
    return directory


def time_prepare(directory: Path, images: int, repeats: int) -> None:
    """Full, uncached prepares (decode, downscale, centre square at 256) of ImageNet-sized JPEGs."""
    dataset = imagenet_like_jpegs(directory, images)
    files = list((dataset / "train").rglob("*.JPEG"))
    mean_kb = sum(f.stat().st_size for f in files) / len(files) / 1e3
    print(f"prepare: {len(files)} JPEGs of about 400 x 350 ({mean_kb:.0f} KB mean) -> {SIZE} px cache:")
    with tempfile.TemporaryDirectory() as scratch_name:
        for workers in sorted({1, os.cpu_count() or 1}):
            watches = []
            for attempt in range(repeats):
                with Stopwatch() as watch:
                    prepare(dataset, size=SIZE, cache_dir=Path(scratch_name) / f"p-{workers}-{attempt}",
                            workers=workers, progress=False)
                watches.append(watch)
            report(f"workers={workers}", len(files), watches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000, help="images in the synthetic cache (>= 20,000 to report)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "netdsl-loader-bench",
                        help="where the synthetic cache is made, and found again")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--prepare", type=int, default=0, metavar="N",
                        help="also time prepare on N ImageNet-sized JPEGs (made once under --cache)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(machine())
    if args.images < 20000:
        print(f"note: {args.images} images, below the 20,000 the figures are meant for: a check, not a measurement")
    start = time.perf_counter()
    prepared = synthetic_cache(args.cache / f"{args.images}x{SIZE}", args.images)
    prepared.train_images.sum(dtype=np.uint64)  # page the cache in: measure the feed, not the disk
    print(f"synthetic cache of {args.images} {SIZE} px images ready in {time.perf_counter() - start:.1f} s "
          f"({prepared.train_images.nbytes / 1e9:.1f} GB in {prepared.cache_dir})")
    for crops, title in ((True, "cuda host part: uint8 224 crops into staging"),
                         (False, "cpu path: crop, flip, PCA lighting, mean, float32 NCHW")):
        print(f"{title}, batches of {args.batch}:")
        for workers in sorted({0, 1, cores}):
            watches, images, upload = time_epochs(prepared, args.batch, workers, args.repeats, crops)
            label = "caller thread" if workers == 0 else f"threads={workers}"
            report(label, images, watches, f"   {upload} bytes/image" + (" uploaded" if crops else " made"))
    print(f"after: load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.prepare:
        time_prepare(args.cache / f"jpegs-{args.prepare}", args.prepare, args.repeats)


if __name__ == "__main__":
    main()
