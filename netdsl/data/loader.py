"""Batches of augmented images, made ahead of the consumer by background threads.

Every batch is a pure function of (seed, epoch, batch index): the epoch's order
is a Philox permutation keyed by the seed with the epoch as counter, and each
batch's augmentation has its own counter (see augment.counter_rng). So a run
resumed at `start_batch` sees exactly the batches it would have seen, and the
number of workers changes only the speed.

Threads, not processes: the per-image work is one whole-window numpy ufunc
that releases the GIL. Measured at 256 -> 224, a batch costs about 440 us of
CPU per image, of which at most 32 us is Python holding the GIL (the cost with
a 1-pixel crop, gather included), so threads can overlap over 90% of the work.
Processes would have to send every float32 batch (77 MB at 128 x 224 x 224)
back through a pipe, a copy about as costly as making it, and can be orphaned.

Within a batch, images come in cache order (sorted rows): the shuffle decides
which images share a batch, and sorted reads are kinder to a memmap on disk.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from netdsl.data.augment import AUGMENT_STREAM, AugmentSpec, RowView, augment_batch, counter_rng, crop_batch
from netdsl.data.prepare import PreparedData

SHUFFLE_STREAM = 2
THREADS_SETTING = "NETDSL_LOADER_THREADS"


def default_workers() -> int:
    """Loader threads when none are asked for: the setting, else one per usable core.

    Batches are independent functions of (seed, epoch, batch), so the count
    changes only the speed, never a batch."""
    setting = os.environ.get(THREADS_SETTING, "").strip()
    if setting:
        if not setting.isdigit():
            raise ValueError(f"{THREADS_SETTING} must be a non-negative integer, got {setting!r}")
        return int(setting)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1

Batch = tuple[np.ndarray, np.ndarray]  # float32 images (N x 3 x c x c, or 10 x N x ... for ten-crop), int64 labels


class BatchLoader:
    """Iterate one epoch of (images, labels) batches of a prepared split.

    shuffle and drop_last default to True for "train" and False otherwise.
    workers=0 makes every batch in the calling thread, None one thread per core
    (NETDSL_LOADER_THREADS overrides); prefetch is how many
    batches may be in flight ahead of the consumer. len() is the number of
    batches this loader yields (from start_batch on); batches_per_epoch counts
    them all.
    """

    def __init__(
        self,
        prepared: PreparedData,
        split: str,
        batch: int,
        spec: AugmentSpec,
        seed: int = 0,
        epoch: int = 0,
        start_batch: int = 0,
        shuffle: bool | None = None,
        drop_last: bool | None = None,
        workers: int | None = None,
        prefetch: int = 3,
        shard=None,
        crops: bool = False,
    ):
        """`shard(n)` -> slice: the part of each batch of n this process makes (one rank of
        data-parallel training); its images are augmented as they are in the whole batch.
        `crops`: batches are augment.Crops (uint8 crops, windows, lighting shifts) for a
        backend that finishes the augmentation on its device."""
        if batch < 1:
            raise ValueError(f"batch size must be positive, got {batch}")
        workers = default_workers() if workers is None else workers
        if workers < 0 or prefetch < 1:
            raise ValueError(f"need workers >= 0 and prefetch >= 1, got {workers} and {prefetch}")
        self.images, self.labels = prepared.split(split)
        self.prepared, self.spec, self.batch = prepared, spec, batch
        self.seed, self.epoch, self.start_batch = seed, epoch, start_batch
        self.workers, self.prefetch = workers, prefetch
        self.shard, self.crops = shard, crops
        count = len(self.labels)
        drop_last = split == "train" if drop_last is None else drop_last
        self.batches_per_epoch = count // batch if drop_last else math.ceil(count / batch)
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError(f"start_batch {start_batch} is outside the epoch's {self.batches_per_epoch} batches")
        shuffle = split == "train" if shuffle is None else shuffle
        self.order = counter_rng(seed, SHUFFLE_STREAM, epoch, 0).permutation(count) if shuffle else np.arange(count)
        self._active: Iterator[Batch] | None = None

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start_batch

    def rows(self, index: int) -> np.ndarray:
        """Cache rows of batch `index`, sorted."""
        return np.sort(self.order[index * self.batch : (index + 1) * self.batch])

    def make_batch(self, index: int) -> Batch:
        rows = self.rows(index)
        part = self.shard(len(rows)) if self.shard else slice(0, len(rows))
        rng = counter_rng(self.seed, AUGMENT_STREAM, self.epoch, index)
        data = self.prepared
        if self.crops:
            batch = crop_batch(RowView(self.images, rows[part]), self.spec, rng, data.eigval, data.eigvec,
                               within=(part.start, len(rows)))
            return batch, self.labels[rows[part]]
        images = augment_batch(RowView(self.images, rows[part]), self.spec, rng, data.mean, data.eigval,
                               data.eigvec, within=(part.start, len(rows)))
        return images, self.labels[rows[part]]

    def __iter__(self) -> Iterator[Batch]:
        self.close()
        self._active = self._serial() if self.workers == 0 else self._threaded()
        return self._active

    def close(self) -> None:
        """Stop the running iteration and its threads (also done on exhaustion)."""
        if self._active is not None:
            self._active.close()
            self._active = None

    def __enter__(self) -> BatchLoader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _serial(self) -> Iterator[Batch]:
        for index in range(self.start_batch, self.batches_per_epoch):
            yield self.make_batch(index)

    def _threaded(self) -> Iterator[Batch]:
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="netdsl-loader")
        pending: deque[Future[Batch]] = deque()
        upcoming = iter(range(self.start_batch, self.batches_per_epoch))
        try:
            for index in upcoming:
                pending.append(pool.submit(self.make_batch, index))
                if len(pending) >= max(self.prefetch, self.workers):
                    break
            while pending:
                batch = pending.popleft().result()
                next_index = next(upcoming, None)
                if next_index is not None:
                    pending.append(pool.submit(self.make_batch, next_index))
                yield batch
        finally:
            # Reached on exhaustion, close(), or garbage collection of an abandoned loop.
            pool.shutdown(wait=True, cancel_futures=True)
