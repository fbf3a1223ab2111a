"""From a run directory or a checkpoint file to its network, config and
weights. A run directory means its best.npz (the weights worth looking at),
else its latest checkpoint.npz."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import NetDslError
from ..train.launch import checkpoint_network


def checkpoint_file(run_or_checkpoint: str | Path) -> Path:
    path = Path(run_or_checkpoint)
    if path.is_dir():
        for name in ("best.npz", "checkpoint.npz"):
            if (path / name).exists():
                return path / name
        raise NetDslError(f"{path} holds no checkpoint (best.npz or checkpoint.npz)",
                          hint="train into it first, or name a .npz file")
    if not path.exists():
        raise NetDslError(f"no checkpoint at {path}")
    return path


def stored_params(checkpoint: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(checkpoint) as data:
            return {k[len("param/"):]: data[k] for k in data.files if k.startswith("param/")}
    except (OSError, ValueError) as exc:
        raise NetDslError(f"cannot read checkpoint {checkpoint}: {exc}") from None


def open_checkpoint(run_or_checkpoint: str | Path):
    """(network, run config, checkpoint path, weights by parameter name)."""
    path = checkpoint_file(run_or_checkpoint)
    net, config = checkpoint_network(str(path))
    return net, config, path, stored_params(path)


def open_executor(run_or_checkpoint: str | Path, backend: str = "reference", batch: int = 1, **options):
    """(network, run config, executor holding the checkpoint's weights)."""
    path = checkpoint_file(run_or_checkpoint)
    net, config = checkpoint_network(str(path))
    ex = net.executor(backend=backend, batch=batch, **options)
    ex.load(path)
    return net, config, ex
