"""Images inside the per-class tar files of the ILSVRC-2012 download.

ILSVRC2012_img_train.tar unpacks into one uncompressed tar per class
(train/n01440764.tar holding that class's JPEGs flat). Unpacking those 1,000
tars would double 140 GB on disk for files read once, by `prepare`; so each
image is read where it lies: the tar's headers are listed once per scan, and a
member is then a byte range of the tar file (an uncompressed tar stores a
member's bytes contiguously), read with one seek and no tarfile at decode time.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


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
