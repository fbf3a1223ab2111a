"""Where netdsl keeps what it can rebuild: $NETDSL_CACHE, else
$XDG_CACHE_HOME/netdsl, else ~/.cache/netdsl."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = os.environ.get("NETDSL_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "netdsl"
    path = Path(root).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
