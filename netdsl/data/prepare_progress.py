"""What a prepare build has finished, saved so that a killed prepare resumes.

At ImageNet scale prepare decodes for minutes to hours; a kill (SIGKILL, a
lost session, a full disk) must cost only the work since the last save. Per
split, the build folder holds `<split>.progress.npz`: which chunks of the
split are decoded, which of their images failed, the exact moment sums of the
decoded training images, and whether the split is finished (failed rows
dropped, labels written). It is replaced atomically (written beside, then
renamed), and only ever names chunks whose workers have returned, so every
chunk it calls done is in the split's image file: the file is a shared
memory map, whose pages the kernel writes back even when every process
writing it is killed. A machine crash can lose those pages; prepare's
fingerprint check does not cover that, and a cache built through one should
be rebuilt.

The moment sums are exact integers, so a resumed build's mean and PCA equal an
uninterrupted one's bit for bit, whatever order the chunks finished in.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from netdsl.data.moments import _Moments

# Seconds between saves: a save rewrites the moment sums (1.5 MB at 256 px),
# so saving after every chunk would write more than the images themselves.
SAVE_EVERY = 2.0


class SplitProgress:
    """The finished chunks of one split of one build, and their results so far."""

    def __init__(self, path: Path, chunks: int, chunk: int, size: int, with_moments: bool):
        self.path, self.chunk = path, chunk
        self.done = np.zeros(chunks, bool)
        self.failed: list[int] = []
        self.moments = _Moments.zeros(size) if with_moments else None
        self.finished = False
        self._saved_at = time.monotonic()

    @classmethod
    def open(cls, folder: Path, split: str, items: int, chunk: int, size: int, with_moments: bool,
             images_path: Path) -> SplitProgress:
        """The saved progress of `split`, or a fresh one when there is none that fits.

        Saved progress counts only with its image file present: without it the
        chunks it calls done would have nowhere to be."""
        chunks = -(-items // chunk)
        progress = cls(folder / f"{split}.progress.npz", chunks, chunk, size, with_moments)
        if not (progress.path.is_file() and images_path.is_file()):
            return progress
        with np.load(progress.path) as saved:
            if int(saved["chunk"]) != chunk or saved["done"].shape != (chunks,):
                return progress  # written by a netdsl with another chunk size: start the split again
            progress.done = saved["done"].copy()
            progress.failed = saved["failed"].tolist()
            progress.finished = bool(saved["finished"])
            if with_moments:
                progress.moments = _Moments(int(saved["images"]), saved["pixel_sum"].copy(),
                                            saved["channel_outer"].copy())
        return progress

    def decoded_images(self, items: int) -> int:
        """Images (read or failed) in the chunks already done, for the progress bar."""
        done = np.flatnonzero(self.done)
        return int(sum(min(self.chunk, items - c * self.chunk) for c in done))

    def record(self, index: int, failed: list[int], moments: _Moments | None) -> None:
        self.done[index] = True
        self.failed += failed
        if self.moments is not None:
            self.moments = self.moments + moments

    def save_if_due(self) -> None:
        if time.monotonic() - self._saved_at >= SAVE_EVERY:
            self.save()

    def save(self) -> None:
        moments = self.moments or _Moments.zeros(1)
        partial = self.path.with_name(self.path.name + ".partial.npz")
        np.savez(partial, chunk=self.chunk, done=self.done, failed=np.array(sorted(self.failed), np.int64),
                 finished=self.finished, images=moments.images, pixel_sum=moments.pixel_sum,
                 channel_outer=moments.channel_outer)
        os.replace(partial, self.path)
        self._saved_at = time.monotonic()
