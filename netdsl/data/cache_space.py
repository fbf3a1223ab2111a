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


def check_space(where: Path, images: int, size: int, announce: bool) -> int:
    """Raise ValueError (one line) if the cache will not fit on `where`'s disk; returns its size.

    `announce` prints the size and the free space to stderr first."""
    need, free = cache_bytes(images, size), shutil.disk_usage(where).free
    if announce:
        print(f"prepare: {images:,} images at {size} px need a {human(need)} cache in {where} "
              f"({human(free)} free)", file=sys.stderr)
    if need > free:
        raise ValueError(f"the cache needs {human(need)} but {where} has only {human(free)} free; "
                         f"free that much space first")
    return need
