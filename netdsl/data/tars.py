"""Images inside the per-class tar files of the ILSVRC-2012 download.

ILSVRC2012_img_train.tar unpacks into one uncompressed tar per class
(train/n01440764.tar holding that class's JPEGs flat). Unpacking those 1,000
tars would double 140 GB on disk for files read once, by `prepare`; so each
image is read where it lies: a member is a byte range of the tar file (an
uncompressed tar stores a member's bytes contiguously), read with one seek and
no tarfile at decode time.

Listing a tar's headers means a read per member: about 50 ms per class tar
with a warm page cache, a minute for the 1,000 at every start, longer from a
cold disk. So each listing is kept as a small index beside the prepared data
(DIR/.netdsl-cache/tar-index, or the user's netdsl cache when DIR is
read-only), valid while the tar keeps its size, modification time and first and
last 4 KiB (the same check as the preprocessing cache's).
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from netdsl import paths

ENDS = 4096


@dataclass(frozen=True)
class TarMember:
    """One image inside a tar: where its bytes lie in the tar file."""

    tar: Path
    name: str  # the member's name inside the tar
    offset: int
    size: int

    def read_bytes(self) -> bytes:
        with open(self.tar, "rb") as f:
            f.seek(self.offset)
            return f.read(self.size)

    def relative_to(self, root: Path) -> Path:
        """The tar's path under `root`, then the member's name: how it is named to users."""
        return self.tar.relative_to(root) / self.name

    def __str__(self) -> str:
        return f"{self.tar}/{self.name}"


def class_tars(train_dir: Path) -> list[Path]:
    """The train/<class>.tar files, sorted; hidden ones are never classes."""
    return sorted(p for p in train_dir.glob("*.tar") if p.is_file() and not p.name.startswith("."))


def members(tar_path: Path, extensions) -> list[TarMember]:
    """The tar's image members in name order (regular files with an image extension)."""
    try:
        key = _key(tar_path)
    except OSError as exc:
        raise ValueError(f"cannot read the class tar {tar_path}: {exc.strerror or exc}") from None
    index = _index_path(tar_path)
    try:
        stored = json.loads(index.read_text())
        if stored["key"] == key and stored["extensions"] == sorted(extensions):
            return [TarMember(tar_path, name, offset, size) for name, offset, size in stored["members"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no index yet, or a damaged one: list the tar again
    found = _list(tar_path, extensions)
    record = {"key": key, "extensions": sorted(extensions), "members": [[m.name, m.offset, m.size] for m in found]}
    try:
        partial = index.with_name(f".{index.name}.{os.getpid()}")
        partial.write_text(json.dumps(record))
        os.replace(partial, index)  # whole or absent: a reader never sees half an index
    except OSError:
        pass  # an index only saves time; without one the tar is listed each time
    return found


def _list(tar_path: Path, extensions) -> list[TarMember]:
    try:
        # "r:" refuses a compressed tar: its members are not byte ranges of the file.
        with tarfile.open(tar_path, "r:") as tar:
            found = [
                TarMember(tar_path, info.name, info.offset_data, info.size)
                for info in tar.getmembers()
                if info.isreg() and PurePosixPath(info.name).suffix.lower() in extensions
                and not PurePosixPath(info.name).name.startswith(".")
            ]
    except (tarfile.TarError, OSError) as exc:
        raise ValueError(f"cannot read the class tar {tar_path}: {exc} "
                         "(an uncompressed tar of the class's images is expected)") from None
    return sorted(found, key=lambda m: m.name)


def _key(tar_path: Path) -> str:
    """Changes when the tar is rewritten: size, modification time, a hash of both ends."""
    stat = tar_path.stat()
    with open(tar_path, "rb") as f:
        head = f.read(ENDS)
        f.seek(max(stat.st_size - ENDS, 0))
        tail = f.read(ENDS)
    return f"{stat.st_size} {stat.st_mtime_ns} {hashlib.sha256(head + tail).hexdigest()}"


def _index_path(tar_path: Path) -> Path:
    train_dir = tar_path.parent
    beside = train_dir.parent / ".netdsl-cache" / "tar-index"
    try:
        beside.mkdir(parents=True, exist_ok=True)
        if os.access(beside, os.W_OK):
            return beside / f"{tar_path.name}.json"
    except OSError:
        pass
    key = hashlib.sha256(str(train_dir.resolve()).encode()).hexdigest()[:16]
    return paths.cache_dir("tar-index", key) / f"{tar_path.name}.json"
