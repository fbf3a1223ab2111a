"""Decoding one split of a dataset into its prepared cache, resumably.

A split's images go, in chunks of CHUNK, to worker processes that decode each
straight into the split's memory-mapped image file and return the indices that
failed and the chunk's exact moment sums. What is finished is recorded in the
split's SplitProgress (prepare_progress.py), so a killed prepare redoes only
the chunks it had not finished. Failed rows are dropped at the end and the
labels written; then the split is finished for good.
"""

from __future__ import annotations

import collections
import contextlib
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from netdsl.data.folder import decode_square
from netdsl.data.moments import _Moments
from netdsl.data.prepare_progress import SplitProgress

CHUNK = 32  # images per worker task: small enough to balance, large enough to amortise


def decode_pool(workers: int):
    # One process needs no pool: decoding in place is simpler to debug and to profile.
    return ProcessPoolExecutor(max_workers=workers) if workers > 1 else contextlib.nullcontext()


def decode_split(items, size: int, out: Path, split: str, pool, workers: int, bar) -> SplitProgress:
    """Decode `split`'s (source, label) items into `out`, going on from what an earlier run
    finished there; returns the split's finished progress (its failures and moment sums)."""
    images_path = out / f"{split}_images.npy"
    state = SplitProgress.open(out, split, len(items), CHUNK, size, split == "train", images_path)
    if state.finished:
        bar.update(len(items))
        return state
    _decode_chunks(items, size, images_path, pool, workers, bar, state)
    _finish_split(items, images_path, out / f"{split}_labels.npy", state)
    return state


def _decode_chunks(items, size, images_path, pool, workers, bar, state: SplitProgress) -> None:
    """Decode the chunks of a split that `state` does not call done into its image file."""
    if not state.done.any():
        np.lib.format.open_memmap(images_path, "w+", np.uint8, (len(items), size, size, 3))
    bar.update(state.decoded_images(len(items)))
    tasks = [
        # Each source is a path or an image inside a class tar (both pickle small).
        (index, (str(images_path), start, [source for source, _ in items[start : start + CHUNK]], size,
                 state.moments is not None))
        for index, start in enumerate(range(0, len(items), CHUNK))
        if not state.done[index]
    ]
    for (index, task), (failed, moments) in zip(tasks, _in_order(pool, workers, [t for _, t in tasks])):
        state.record(index, failed, moments)
        bar.update(len(task[2]))
        state.save_if_due()
    state.save()


def _in_order(pool, workers: int, tasks: list):
    """_decode_chunk's results in task order, with a bounded number of tasks in flight:
    a finished chunk holds its moment sums (1.5 MB at 256 px) until it is taken, so
    submitting all 40,000 chunks of ImageNet at once could hold gigabytes."""
    if pool is None:
        yield from map(_decode_chunk, tasks)
        return
    window, pending = 4 * workers, collections.deque()
    for task in tasks:
        pending.append(pool.submit(_decode_chunk, task))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _finish_split(items, images_path: Path, labels_path: Path, state: SplitProgress) -> None:
    """Drop the failed rows and write the labels; then the split is finished for good."""
    keep = np.delete(np.arange(len(items)), state.failed)
    rows = np.load(images_path, mmap_mode="r").shape[0]
    if state.failed and rows == len(items):  # a resumed run may find the rows already dropped
        _drop_rows(images_path, keep)
    np.save(labels_path, np.array([label for _, label in items], np.int64)[keep])
    state.finished = True
    state.save()


def _decode_chunk(task: tuple[str, int, list, int, bool]) -> tuple[list[int], _Moments | None]:
    """Worker: decode a run of images straight into the split's memmap."""
    images_path, start, paths, size, with_moments = task
    images = np.load(images_path, mmap_mode="r+")
    moments = _Moments.zeros(size) if with_moments else None
    failed = []
    for offset, path in enumerate(paths):
        try:
            image = decode_square(path, size)
        except Exception:  # whatever the codec raised, an unreadable file is skipped, not fatal
            failed.append(start + offset)
            continue
        images[start + offset] = image
        if moments is not None:
            moments.add(image)
    # No flush: the mapping is shared, so the parent reads the same page cache; an
    # msync per chunk would only add a disk wait.
    return failed, moments


def _drop_rows(images_path: Path, keep: np.ndarray) -> None:
    """Rewrite a split's image file without the rows that failed to decode."""
    old = np.load(images_path, mmap_mode="r")
    compact_path = images_path.with_suffix(".compact.npy")
    new = np.lib.format.open_memmap(compact_path, "w+", np.uint8, (len(keep),) + old.shape[1:])
    for start in range(0, len(keep), 256):
        new[start : start + 256] = old[keep[start : start + 256]]
    del old, new  # unmap both before the rename
    os.replace(compact_path, images_path)
