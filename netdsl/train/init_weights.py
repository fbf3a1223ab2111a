"""`netdsl train FILE --init CKPT`: start a new run from another run's (or an
import's) weights, matched by name.

A parameter is loaded when CKPT holds `param/NAME` with the network's shape
(NAME is the layer path `netdsl info` prints, then `.weight`/`.bias`/...);
running state (`state/NAME`, batch norm's statistics) likewise. Everything
else keeps the file's own seeded initialisation and is named in the summary:
fine-tuning for another class count re-initialises the classifier and says
so. Momentum, the step counter, the epoch and the learning-rate schedule are
not read: the run starts at epoch 1, as a fresh run does (`--resume` is the
command that continues a run).

Loading goes through the executor interface every backend implements
(`set_params`, `_set_state`), so the cpu and cuda backends upload the same
arrays the reference backend uses.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import NetDslError
from .checkpoints import DAMAGE, _reason


@dataclass
class InitMatch:
    """What `--init` takes from a checkpoint and what it leaves to the file's init."""
    params: dict = field(default_factory=dict)  # name -> array, loaded
    state: dict = field(default_factory=dict)
    reshaped: list = field(default_factory=list)  # (name, shape in CKPT, shape here)
    missing: list = field(default_factory=list)  # in the network, not in CKPT
    unused: list = field(default_factory=list)  # in CKPT, not in the network
    total: int = 0  # the network's parameter tensors


def read_arrays(path: str | Path) -> tuple[dict, dict]:
    """(parameters, running state) of a netdsl checkpoint by name; one-line errors for a
    file that is missing, not a zip of arrays, or holds no parameters."""
    path = Path(path)
    if not path.is_file():
        raise NetDslError(f"--init: checkpoint {path} {'is not a regular file' if path.exists() else 'does not exist'}")
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":  # np.load would take anything else for a pickle or an .npy
                raise NetDslError(f"--init: {path} is not a netdsl checkpoint (not an .npz archive)",
                                  hint="give a run's checkpoint.npz or best.npz, or the .npz `netdsl import` writes")
        with np.load(path, allow_pickle=False) as data:
            params = {k[6:]: data[k] for k in data.files if k.startswith("param/")}
            state = {k[6:]: data[k] for k in data.files if k.startswith("state/")}
    except DAMAGE + (zipfile.LargeZipFile,) as exc:
        raise NetDslError(f"--init: {path} is damaged or not a netdsl checkpoint ({_reason(exc)})") from None
    if not params:
        raise NetDslError(f"--init: {path} is not a netdsl checkpoint: it holds no `param/` entries",
                          hint="give a run's checkpoint.npz or best.npz, or the .npz `netdsl import` writes")
    return params, state


def match(param_shapes: dict, state_shapes: dict, params: dict, state: dict) -> InitMatch:
    """Shapes (name -> tuple) of the network against a checkpoint's arrays."""
    m = InitMatch(total=len(param_shapes))
    for table, stored, loaded in ((param_shapes, params, m.params), (state_shapes, state, m.state)):
        for name, here in table.items():
            here = tuple(here)
            if name not in stored:
                m.missing.append(name)
            elif stored[name].shape != here:
                m.reshaped.append((name, stored[name].shape, here))
            else:
                loaded[name] = stored[name]
        m.unused += [name for name in stored if name not in table]
    return m


def _shape(shape) -> str:
    return "x".join(map(str, shape)) or "scalar"


def summary(m: InitMatch, path: Path) -> str:
    """One line per kind of outcome, every name listed."""
    lines = [f"init: {len(m.params)} of {m.total} parameter tensors loaded from {path}"
             + (f", and {len(m.state)} running-state tensors" if m.state else "")]
    kept = [f"{name} ({_shape(there)} in CKPT, {_shape(here)} here)" for name, there, here in m.reshaped]
    kept += [f"{name} (not in CKPT)" for name in m.missing]
    if kept:
        lines.append("init: initialised from the file: " + ", ".join(kept))
    if m.unused:
        lines.append("init: in CKPT but not in this network (ignored): " + ", ".join(m.unused))
    return "\n".join(lines)


def check_init(path: str | Path, param_shapes: dict) -> tuple[dict, dict]:
    """The checkpoint's (parameters, state), refused when not one parameter of the network
    (name -> shape) is there with its shape: probably the wrong file."""
    params, state = read_arrays(path)
    _refuse_no_match(match(param_shapes, {}, params, {}), path, params, param_shapes)
    return params, state


def _refuse_no_match(m: InitMatch, path, params: dict, param_shapes: dict) -> None:
    if m.total and not m.params:
        raise NetDslError(f"--init: no parameter of this network is in {path} with its name and shape "
                          f"({len(params)} tensors there, e.g. `{next(iter(params))}`; here e.g. "
                          f"`{next(iter(param_shapes))}`): probably the checkpoint of another network",
                          hint="names are the layer paths `netdsl info FILE` prints, then .weight or .bias")


def apply_init(ex, path: str | Path, arrays: tuple[dict, dict] | None = None) -> str:
    """Load the matching tensors of `path` (or of `arrays`, read from it by check_init)
    into executor `ex`; the summary to print. Momentum stays zero and the step counter
    at 0, whatever CKPT holds."""
    path = Path(path)
    params, state = arrays or read_arrays(path)
    shapes = {k: v.shape for k, v in ex.params.items()}
    m = match(shapes, {k: v.shape for k, v in ex.state.items()}, params, state)
    _refuse_no_match(m, path, params, shapes)
    ex.set_params(m.params)  # uploads on backends holding their own copy (velocity, still zero, with it)
    if m.state:
        ex._set_state(m.state)
    return summary(m, path)
