"""Build folders of the prepared cache: who owns one, resuming one, removing the rest.

A build is made beside its target and renamed into place whole. It is named by
the fingerprint of the dataset it decodes, so a prepare killed part-way is
resumed by the next prepare of the same files (netdsl/data/prepare_progress.py
says what it had finished); builds of other fingerprints are removed once
their writer is gone. The owner file says which process on which host is
writing a build.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

OWNER = ".owner"  # "host pid" of the process building a cache folder


def _owner() -> str:
    return f"{socket.gethostname()} {os.getpid()}\n"


def _alive(owner: str) -> bool:
    host, _, pid = owner.strip().partition(" ")
    if host != socket.gethostname():
        return True  # another machine's build, on a shared disk: never ours to remove
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def build_folder(target: Path, fingerprint: str) -> Path:
    """Where the cache `target` of the dataset with `fingerprint` is built."""
    return target.with_name(f".{target.name}.building-{fingerprint[:16]}")


def claim(building: Path) -> bool:
    """Make this process the owner of `building`; True when it holds an earlier run's work.

    A build whose owner still runs is another prepare of the same files: ValueError."""
    try:
        owner = (building / OWNER).read_text()
    except OSError:
        owner = ""
    if owner and owner != _owner() and _alive(owner):
        host, _, pid = owner.strip().partition(" ")
        raise ValueError(f"another prepare (process {pid} on {host}) is building this cache in {building}; "
                         f"wait for it to finish, or stop it and run prepare again to resume its work")
    resumed = building.is_dir()
    building.mkdir(exist_ok=True)
    (building / OWNER).write_text(_owner())
    return resumed


def remove_abandoned(target: Path, keep: Path) -> None:
    """Delete build and stale folders of `target` left by killed runs (a build holds a
    whole decoded split: hundreds of GB at ImageNet scale), except `keep`, the
    build this run resumes. A build whose owner is still running is left alone."""
    for path in target.parent.glob(f".{target.name}.*-*"):
        kind = path.name[len(target.name) + 2:].split("-", 1)[0]
        if kind not in ("building", "stale") or not path.is_dir() or path == keep:
            continue
        if kind == "building":
            try:
                owner = (path / OWNER).read_text()
            except OSError:
                owner = ""  # killed before it wrote its owner, or made by an older netdsl
            if owner and _alive(owner):
                continue
        shutil.rmtree(path, ignore_errors=True)
