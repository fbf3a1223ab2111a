"""The front half as one call: file -> parsed -> graph -> passes."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import networkx as nx

from . import passes
from .graph import build
from .parse import parse_file, parse_text


def compile_graph(path: str | Path | None = None, *, text: str | None = None, file: str = "<string>",
                  overrides: dict[str, str] | None = None,
                  after: Callable[[str, nx.DiGraph], None] | None = None) -> nx.DiGraph:
    """Parse a .net file (or `text`) and run every pass; raises NetDslError on bad input."""
    program = parse_file(path) if text is None else parse_text(text, file)
    g = build(program, overrides)
    if after is not None:
        after("build", g)
    return passes.run(g, after)
