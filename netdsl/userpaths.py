"""Paths named on the command line, checked before anything large is read or
anything is written, so a typo costs a message instead of a traceback, a hang
(reading a FIFO) or a half-made output folder."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import NetDslError


def check_regular_file(path: str | Path, what: str) -> Path:
    """An existing regular file (a FIFO or a device would block the read; a directory cannot be read)."""
    path = Path(path)
    try:
        if path.is_symlink() and not path.exists():
            raise NetDslError(f"{what} {path} is a dangling symbolic link")
        if not path.exists():
            raise NetDslError(f"{what} {path} does not exist")
        if path.is_dir():
            raise NetDslError(f"{what} {path} is a directory, not a file")
        if not path.is_file():
            raise NetDslError(f"{what} {path} is not a regular file (a pipe, socket or device)")
        if not os.access(path, os.R_OK):
            raise NetDslError(f"{what} {path} is not readable (permission denied)")
    except OSError as exc:  # a symlink loop, a name too long
        raise NetDslError(f"cannot use {what} {path}: {exc.strerror or exc}") from None
    return path


def check_data_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise NetDslError(f"data directory {path} {'is not a directory' if path.exists() else 'does not exist'}",
                          hint="--data wants a folder holding train/<class>/* and val/<class>/*")
    return path


def check_out_dir(path: str | Path, run: bool = True) -> Path:
    """A directory that can be created or written; with `run`, one that holds no run yet."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NetDslError(f"{path} exists and is not a directory", hint="choose another output directory")
    if run and (path / "checkpoint.npz").exists():
        raise NetDslError(f"{path} already holds a run", hint=f"continue it with --resume {path}, or choose another --out")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise NetDslError(f"cannot create {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise NetDslError(f"cannot write to {path}: {existing} is not writable")
    return path


def check_out_file(path: str | Path, what: str) -> Path:
    """A file that can be written: not a directory, its folder creatable and writable."""
    path = Path(path)
    if path.is_dir():
        raise NetDslError(f"{what} {path} is a directory", hint="name a file to write")
    check_out_dir(path.parent, run=False)
    return path


def write_failure(exc: OSError) -> NetDslError:
    """An OSError on a named path (a folder turned read-only mid-run, a full disk, a file where a
    folder should be) as one line: the machine's state, not a netdsl bug, so no traceback."""
    where = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
    return NetDslError(f"cannot write or read {where}: {exc.strerror or exc}",
                       hint="check that the folder exists, is writable and has free space")


def write_whole(path: Path, text: str) -> None:
    """Write `text` to `path` so that `path` is the old file or the new one, never half of
    one (a full disk or a kill mid-write): written beside it, then renamed over it."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
