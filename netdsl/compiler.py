"""The front half as one call: file -> parsed -> graph -> passes."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import networkx as nx

from . import passes
from .graph import build
from .parse import parse_file, parse_text
from .train.requirements import check_losses


def compile_graph(path: str | Path | None = None, *, text: str | None = None, file: str = "<string>",
                  overrides: dict[str, str] | None = None,
                  after: Callable[[str, nx.DiGraph], None] | None = None,
                  training: bool = False) -> nx.DiGraph:
    """Parse a .net file (or `text`) and run the passes; raises NetDslError on bad input.

    `training` adds the backward and update nodes of one training step (which
    `netdsl.passes.plan_step` lowers into the plan a backend runs) to a network with a
    loss; one without stays the forward graph (netdsl.train.requirements.require_loss)."""
    program = parse_file(path) if text is None else parse_text(text, file)
    g = build(program, overrides)
    if after is not None:
        after("build", g)
    return passes.run(g, after, training, check=check_losses)


class Network:
    """A checked network with its training-step graph; makes executors."""

    def __init__(self, graph: nx.DiGraph):
        self.graph = graph

    @property
    def name(self) -> str:
        return self.graph.graph["network"]

    @property
    def train(self):
        return self.graph.graph["train"]

    def executor(self, backend: str = "reference", batch: int | None = None, seed: int | None = None, **options):
        from .runtime.select import make_executor
        return make_executor(self, backend, batch or self.train.batch,
                             self.train.seed if seed is None else seed, **options)


def load(path: str | Path, overrides: dict[str, str] | None = None) -> Network:
    """Parse, check and build the training step of a .net file."""
    return Network(compile_graph(path, overrides=overrides, training=True))
