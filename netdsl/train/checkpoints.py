"""Checking a checkpoint before an executor loads it.

`checkpoint.npz` and `best.npz` are zip archives of arrays (see the run
directory layout in trainer.py). A file that is truncated, empty, random,
bit-flipped (zip CRC), missing an entry or written by another network must
give one clear message instead of a traceback from numpy or zipfile, and it
must be noticed before anything in the run directory is rewritten. Every
array is read once here, which costs one extra read of the file (about a
second for AlexNet's 488 MB) and is what catches a flipped bit.
"""
from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import NetDslError

# What numpy and zipfile raise for a file that is not an intact .npz.
DAMAGE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, UnicodeDecodeError)
META = ("meta/steps", "meta/lr")


def expected_shapes(graph) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of a compiled network, in file order (the executors' `params` names)."""
    order = sorted(graph, key=lambda n: graph.nodes[n].order)
    return {f"{n}.{k}": tuple(v) for n in order if graph.nodes[n].is_layer for k, v in graph.nodes[n].params.items()}


def check_checkpoint(path: str | Path, params: Mapping, training: bool = False) -> dict:
    """Raise a NetDslError unless `path` holds every parameter of `params` (name -> array
    or shape) with its shape; with `training`, also the momentum and run state a resume
    needs. Returns the run state (`extra/state`) when there is one, else {}."""
    path = Path(path)
    if not path.is_file():
        what = "does not exist" if not path.exists() else "is not a regular file"
        raise NetDslError(f"checkpoint {path} {what}")
    shapes = {k: tuple(getattr(v, "shape", v)) for k, v in params.items()}
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
            wanted = [f"param/{k}" for k in shapes] + list(META)  # an executor's load reads META too
            if training:
                wanted += [f"velocity/{k}" for k in shapes] + ["extra/state"]
            missing = [k for k in wanted if k not in files]
            if missing:
                raise NetDslError(f"checkpoint {path} lacks `{missing[0]}`"
                                  + (f" and {len(missing) - 1} more entries" if len(missing) > 1 else ""),
                                  hint=_foreign_hint(files, shapes))
            for name, shape in shapes.items():
                found = data[f"param/{name}"].shape
                if found != shape:
                    raise NetDslError(f"checkpoint {path} is from another network: `{name}` is "
                                      f"{'x'.join(map(str, found))} there and {'x'.join(map(str, shape))} here")
                if training and data[f"velocity/{name}"].shape != shape:
                    raise NetDslError(f"checkpoint {path} is damaged: the momentum of `{name}` has the wrong shape")
            extra = [k for k in files if k.startswith("param/") and k[6:] not in shapes]
            if extra:
                raise NetDslError(f"checkpoint {path} is from another network: it holds `{sorted(extra)[0][6:]}`, "
                                  "which this network has not")
            for key in files - {f"param/{k}" for k in shapes}:
                data[key]  # reading checks the zip CRC of every entry
            state = json.loads(str(data["extra/state"])) if "extra/state" in files else {}
    except NetDslError:
        raise
    except DAMAGE as exc:
        raise NetDslError(f"checkpoint {path} is damaged or not a netdsl checkpoint ({_reason(exc)})") from None
    if training and not _state_ok(state):
        raise NetDslError(f"checkpoint {path} is damaged: its run state is incomplete")
    return state


def _state_ok(state) -> bool:
    return isinstance(state, dict) and all(k in state for k in ("epoch", "next_batch", "sums", "best", "schedule"))


def _reason(exc: Exception) -> str:
    text = str(exc).split("\n")[0][:120]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _foreign_hint(files: set[str], shapes: dict) -> str | None:
    names = {k[6:] for k in files if k.startswith("param/")}
    if names and not names & set(shapes):
        return "none of its parameter names are this network's: it belongs to another network"
    return None


def usable(path: Path, params: Mapping, training: bool = False) -> dict | None:
    """The run state of `path` if it passes check_checkpoint, else None."""
    try:
        return check_checkpoint(path, params, training)
    except NetDslError:
        return None


def fallback_hint(bad: Path, params: Mapping, training: bool = False) -> str | None:
    """Point at the run directory's best.npz when it is intact and is not the bad file itself."""
    best = bad.parent / "best.npz"
    if best.resolve() == bad.resolve():
        return None
    state = usable(best, params, training)
    if state is None:
        return None
    epoch = f" (after epoch {state['epoch']})" if "epoch" in state else ""
    if training:
        return (f"{best}{epoch} is intact: `cp {best} {bad}` and resume again to continue from it "
                "(the damaged file is left as it is)")
    return f"{best}{epoch} is intact and can be used instead"
