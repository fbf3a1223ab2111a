"""Build folders of the prepared cache: who owns one, and removing those that killed runs left.

A build is made beside its target and renamed into place whole; its owner file
says which process on which host is writing it, so a later run removes only
builds whose writer is gone.
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


def remove_abandoned(target: Path) -> None:
    """Delete build and stale folders of `target` left by killed runs (a build holds a
    whole decoded split: hundreds of GB at ImageNet scale). A build whose owner is
    still running is left alone."""
    for path in target.parent.glob(f".{target.name}.*-*"):
        kind = path.name[len(target.name) + 2:].split("-", 1)[0]
        if kind not in ("building", "stale") or not path.is_dir():
            continue
        if kind == "building":
            try:
                owner = (path / OWNER).read_text()
            except OSError:
                owner = ""  # killed before it wrote its owner, or made by an older netdsl
            if owner and _alive(owner):
                continue
        shutil.rmtree(path, ignore_errors=True)
