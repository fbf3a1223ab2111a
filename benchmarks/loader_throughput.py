"""Throughput of the data pipeline: decoding into the cache, and augmented batches from it.

Writes a shapes dataset of 320x320 JPEGs, prepares it at 256x256 (decode,
DCT-domain downscale, resize, centre square), then serves the paper's training
batches (random 224 crop, mirror, PCA lighting, mean subtraction) from the
cache. Prints the median of several repeats: images per wall-clock second,
and images per CPU-second (the per-core rate, which other load on the
machine disturbs far less). The aim for batches is at least 1,000 images/s
per core.

    pip install -e . && python benchmarks/loader_throughput.py [--images 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from netdsl.data import AugmentSpec, BatchLoader, make_shapes, prepare


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


def time_prepare(dataset: Path, scratch: Path, workers: int, repeats: int) -> list[Stopwatch]:
    """Full, uncached prepares (the pool's processes are reaped before prepare returns)."""
    watches = []
    for attempt in range(repeats):
        with Stopwatch() as watch:
            cache_dir = scratch / f"prepare-{workers}-{attempt}"
            prepare(dataset, size=256, cache_dir=cache_dir, workers=workers, progress=False)
        watches.append(watch)
    return watches


def time_batches(prepared, spec: AugmentSpec, batch: int, workers: int, repeats: int) -> tuple[list[Stopwatch], int]:
    """One epoch of batches per repeat, and the images an epoch holds."""
    watches = []
    for epoch in range(repeats):
        loader = BatchLoader(prepared, "train", batch, spec, seed=0, epoch=epoch, workers=workers)
        with Stopwatch() as watch, loader:
            for _ in loader:
                pass
        watches.append(watch)
    return watches, len(loader) * batch


def report(what: str, images: int, watches: list[Stopwatch]) -> None:
    wall = statistics.median(w.wall for w in watches)
    cpu = statistics.median(w.cpu for w in watches)
    print(f"  {what:<22} {images / wall:7.0f} images/s wall   {images / cpu:7.0f} images per CPU-second")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="images in the synthetic dataset")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    worker_counts = sorted({1, cores})

    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        per_class = max(1, args.images // 10)
        start = time.perf_counter()
        dataset = make_shapes(scratch / "shapes", classes=10, train_per_class=per_class, val_per_class=0, size=320)
        load = os.getloadavg()[0]
        print(f"wrote {10 * per_class} 320x320 JPEGs in {time.perf_counter() - start:.1f} s "
              f"({cores} cores, load average {load:.1f}: wall-clock rates need an idle machine)")

        print("decode into the cache (prepare, 320 -> 256, processes):")
        for workers in worker_counts:
            report(f"workers={workers}", 10 * per_class, time_prepare(dataset, scratch, workers, args.repeats))

        prepared = prepare(dataset, size=256, cache_dir=scratch / "cache", progress=False)
        prepared.train_images[:].sum()  # page the cache in: measure augmentation, not the disk
        spec = AugmentSpec.paper_train(224)
        print(f"augmented batches of {args.batch} (256 -> 224 crop, flip, PCA lighting, mean, threads):")
        for workers in [0] + worker_counts:
            watches, images = time_batches(prepared, spec, args.batch, workers, args.repeats)
            report(f"workers={workers}" + (" (caller)" if workers == 0 else ""), images, watches)


if __name__ == "__main__":
    main()
