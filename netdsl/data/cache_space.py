"""How big a prepared cache will be, said before decoding starts and checked against free disk.

At ImageNet scale the cache is large (1.28 M images at 256 px: 252 GB), so a
build that would fill the disk must stop before it decodes anything, not hours
later in the middle of a write."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# Labels (8 bytes each), the mean image in float32, the metadata: small beside
# the pixels, but counted so that a nearly full disk is still refused.
PER_IMAGE_EXTRA = 8
FIXED_EXTRA = 1 << 20


def cache_bytes(images: int, size: int) -> int:
    """Bytes a cache of `images` uint8 size x size x 3 images takes on disk."""
    return images * (size * size * 3 + PER_IMAGE_EXTRA) + size * size * 3 * 4 + FIXED_EXTRA


def human(nbytes: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def bytes_on_disk(folder: Path) -> int:
    """Disk blocks taken by the files in `folder` (a resumed build's finished part: its
    image files are sparse, so their length says nothing)."""
    if not folder.is_dir():
        return 0
    return sum(path.stat().st_blocks * 512 for path in folder.iterdir() if path.is_file())


def check_space(where: Path, images: int, size: int, announce: bool, built: Path | None = None) -> int:
    """Raise ValueError (one line) if the cache will not fit on `where`'s disk; returns its size.

    `built`: a resumed build folder, whose blocks already count toward the cache.
    `announce` prints the size and the free space to stderr first."""
    total, free = cache_bytes(images, size), shutil.disk_usage(where).free
    done = min(bytes_on_disk(built), total) if built else 0
    need = total - done
    if announce:
        resumed = f", {human(done)} of it already written" if done else ""
        print(f"prepare: {images:,} images at {size} px need a {human(total)} cache in {where}{resumed} "
              f"({human(free)} free)", file=sys.stderr)
    if need > free:
        raise ValueError(f"the cache needs {human(need)}{' more' if done else ''} but {where} has only {human(free)} free; "
                         f"free that much space first")
    return need
