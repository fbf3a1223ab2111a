"""Writing a figure: the one place that picks resolution and closes it."""
from __future__ import annotations

from pathlib import Path

from ..train.plots import pyplot

DPI = 100


def save(fig, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)
    return str(path)
