"""Decode a dataset folder once into a cache of fixed-size uint8 arrays.

Training reads every image about ninety times; decoding JPEGs each time would
cost more than the network on a CPU. As in the paper, each image is rescaled so
its short side is `size` and the central size x size square is kept. The cache
holds, per split, an N x size x size x 3 uint8 array (HWC, RGB) in a
memory-mapped .npy file and an int64 label array, plus statistics of the
training split:

* mean.npy: the per-pixel mean image, float32 size x size x 3, 0..255 scale;
* eigval / eigvec (in meta.json): eigen-decomposition of the 3 x 3 covariance of
  RGB values scaled to [0, 1], eigenvalues descending, eigenvectors as columns
  with their largest component positive. [0, 1] is the scale PCA lighting is
  usually quoted in (ImageNet: 0.2175, 0.0188, 0.0045).

The sums behind the statistics are exact integers (int64, and float64 below
2**53), so they do not depend on the number of workers or on which chunk
finishes first.

A build is resumable: a prepare killed part-way (SIGKILL, Ctrl-C, a full disk)
keeps its finished chunks in the build folder, and the next prepare of the same
files goes on from there to a cache identical to an uninterrupted one
(build_folders.py, decode_split.py, prepare_progress.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netdsl import paths
from netdsl.data.decode_split import decode_pool, decode_split
from netdsl.data.folder import DataWarning, FolderDataset, scan_folder
from netdsl.data.build_folders import OWNER, build_folder, claim, remove_abandoned
from netdsl.data.cache_space import check_space
from netdsl.data.progress import progress_bar

CACHE_FORMAT = 1  # bump when the cache layout or the decoding changes
SPLITS = ("train", "val")
SKIPPED_SHOWN = 10


@dataclass(frozen=True)
class PreparedData:
    """A decoded dataset: what the loader and the trainer read."""

    cache_dir: Path
    size: int
    train_images: np.ndarray  # memmap, N x size x size x 3 uint8
    train_labels: np.ndarray  # N int64
    val_images: np.ndarray
    val_labels: np.ndarray
    mean: np.ndarray  # size x size x 3 float32, 0..255
    eigval: np.ndarray  # (3,) float64, covariance of [0, 1] RGB, descending
    eigvec: np.ndarray  # (3, 3) float64, columns are eigenvectors
    classes: list[str]
    class_names: list[str]
    skipped: list[str]  # files that could not be decoded, relative to the dataset root

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")


def prepare(
    root: str | Path,
    size: int = 256,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> PreparedData:
    """Decode `root` into the cache, or reuse the cache if no file changed.

    workers: decoding processes (default: one per CPU; 0 or 1 decodes in this process).
    Unreadable images are skipped and named in one DataWarning, never fatal.
    """
    if size < 1:
        raise ValueError(f"image size must be positive, got {size}")
    dataset = scan_folder(root)
    fingerprint = _fingerprint(dataset, size)
    target = Path(cache_dir).expanduser() if cache_dir else default_cache_dir(dataset.root, size)
    if _fingerprint_in(target) == fingerprint:
        data = load_prepared(target)
        if data.skipped:  # said on every run, not only the one that built the cache
            _warn_skipped(data.skipped, dataset.root, target / "meta.json")
        return data
    if target.is_dir() and any(target.iterdir()) and not (target / "meta.json").is_file():
        # Builds are renamed into place whole, so a cache always has meta.json: this is someone's folder.
        raise ValueError(f"{target} exists and is not a prepared-dataset cache; refusing to replace it")

    target.parent.mkdir(parents=True, exist_ok=True)
    # Named by the fingerprint, so a killed prepare of the same files is resumed, not redone.
    building = build_folder(target, fingerprint)
    remove_abandoned(target, keep=building)
    check_space(target.parent, len(dataset.train) + len(dataset.val), size, announce=progress, built=building)
    resumed = claim(building)
    if resumed and progress:
        print(f"prepare: resuming the build in {building}", file=sys.stderr)
    try:
        workers = (os.cpu_count() or 1) if workers is None else workers
        meta = _build(dataset, size, building, workers, progress)
        _write_json(building / "meta.json", {**meta, "fingerprint": fingerprint})
        _swap_in(building, target)
    except ValueError:
        shutil.rmtree(building, ignore_errors=True)  # the data itself is at fault: nothing to resume
        raise
    except BaseException:
        # Ctrl-C, a full disk, a crash: the finished chunks stay for the next prepare.
        if progress:
            print(f"prepare: stopped; the next prepare of {dataset.root} at {size} px resumes from "
                  f"what was finished ({building})", file=sys.stderr)
        raise
    if meta["skipped"]:
        _warn_skipped(meta["skipped"], dataset.root, target / "meta.json")
    return load_prepared(target)


def load_prepared(cache_dir: str | Path) -> PreparedData:
    """Open a finished cache without rescanning its dataset folder."""
    cache_dir = Path(cache_dir)
    meta_path = cache_dir / "meta.json"
    if not meta_path.is_file():
        raise ValueError(f"{cache_dir} is not a prepared dataset (no meta.json); run prepare first")
    meta = json.loads(meta_path.read_text())
    arrays = {
        f"{split}_{kind}": np.load(cache_dir / f"{split}_{kind}.npy", mmap_mode="r" if kind == "images" else None)
        for split in SPLITS
        for kind in ("images", "labels")
    }
    return PreparedData(
        cache_dir=cache_dir,
        size=meta["size"],
        mean=np.load(cache_dir / "mean.npy"),
        eigval=np.array(meta["eigval"]),
        eigvec=np.array(meta["eigvec"]),
        classes=meta["classes"],
        class_names=meta["class_names"],
        skipped=meta["skipped"],
        **arrays,
    )


def default_cache_dir(root: Path, size: int) -> Path:
    """DIR/.netdsl-cache/<size>, or the user's netdsl cache (netdsl.paths) when DIR is read-only."""
    beside = root / ".netdsl-cache"
    try:
        beside.mkdir(exist_ok=True)
        if os.access(beside, os.W_OK):
            return beside / str(size)
    except OSError:
        pass
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return paths.cache_dir("prepared") / key / str(size)


def _fingerprint(dataset: FolderDataset, size: int) -> str:
    """Changes whenever a file is added, removed, renamed, rewritten or touched.

    Per file: its name, size, modification time and a hash of its first and last
    4 KiB, so a file rewritten with its old size and time (`cp -p`, `rsync -t`)
    is noticed unless only its middle changed; the cost is two small reads per
    file on each start. A class tar is one file for all its images; the name
    file and a flat val/'s label files count too, as they change names and labels. The class list is part of it: an added empty class
    folder renumbers the labels.
    """
    digest = hashlib.sha256(f"format={CACHE_FORMAT} size={size}\n".encode())
    digest.update("\0".join(dataset.classes).encode() + b"\n")
    for path in dataset.watched_files():
        try:
            stat = path.stat()
        except OSError:  # a dangling link or a loop: decoding will skip and name it
            digest.update(f"{path.relative_to(dataset.root)}\0unreadable\n".encode())
            continue
        digest.update(f"{path.relative_to(dataset.root)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        digest.update(_ends(path, stat.st_size) + b"\n")
    return digest.hexdigest()


ENDS = 4096  # bytes hashed at each end of a file for the fingerprint


def _ends(path: Path, size: int) -> bytes:
    try:
        with open(path, "rb") as f:
            head = f.read(ENDS)
            if size > 2 * ENDS:
                f.seek(size - ENDS)
            tail = f.read(ENDS)
    except OSError:
        return b"unreadable"
    return hashlib.sha256(head + tail).digest()


def _fingerprint_in(cache_dir: Path) -> str | None:
    try:
        return json.loads((cache_dir / "meta.json").read_text()).get("fingerprint")
    except (OSError, ValueError):
        return None


def _build(dataset: FolderDataset, size: int, out: Path, workers: int, progress: bool) -> dict:
    """Decode both splits and the training statistics into `out`, resuming what an earlier
    run finished there; returns the metadata."""
    counts, skipped = {}, []
    bar = progress_bar(len(dataset.train) + len(dataset.val), f"prepare {size}px", progress)
    with bar, decode_pool(workers) as pool:
        for split in SPLITS:
            items = getattr(dataset, split)
            state = decode_split(items, size, out, split, pool, workers, bar)
            counts[split] = len(items) - len(state.failed)
            skipped += [str(items[i][0].relative_to(dataset.root)) for i in state.failed]
            if split == "train":
                train_moments = state.moments
    if counts["train"] == 0:
        raise ValueError(f"none of the {len(dataset.train)} training images in {dataset.root} could be read")
    mean, eigval, eigvec = train_moments.statistics()
    np.save(out / "mean.npy", mean)
    return {
        "format": CACHE_FORMAT, "size": size, "root": str(dataset.root),
        "classes": dataset.classes, "class_names": dataset.class_names, "counts": counts,
        "eigval": eigval.tolist(), "eigvec": eigvec.tolist(), "skipped": skipped,
    }


def _swap_in(building: Path, target: Path) -> None:
    """Replace `target` by the finished `building` dir in renames only.

    A reader sees the old cache, no cache, or the new one; never half of one.
    What only a build needs (its owner, its progress) is left behind.
    """
    for leftover in [building / OWNER, *building.glob("*.progress.npz")]:
        leftover.unlink()
    if target.exists():
        stale = target.with_name(f".{target.name}.stale-{uuid.uuid4().hex[:8]}")
        os.rename(target, stale)
        shutil.rmtree(stale, ignore_errors=True)
    os.rename(building, target)


def _warn_skipped(skipped: list[str], root: Path, listing: Path) -> None:
    shown = ", ".join(skipped[:SKIPPED_SHOWN])
    more = f" and {len(skipped) - SKIPPED_SHOWN} more" if len(skipped) > SKIPPED_SHOWN else ""
    message = f"skipped {len(skipped)} unreadable image(s) in {root}: {shown}{more} (all listed in {listing})"
    warnings.warn(message, DataWarning, stacklevel=3)


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=1) + "\n")
