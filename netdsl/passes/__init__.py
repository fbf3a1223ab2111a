"""The compiler's passes, in the one place that fixes their order."""
from __future__ import annotations

from collections.abc import Callable

import networkx as nx

from .add_updates import add_updates
from .build_backward import build_backward
from .expand_towers import expand_towers
from .infer_shapes import infer_shapes
from .place_devices import place_devices
from .resolve_names import resolve_names

Pass = Callable[[nx.DiGraph], nx.DiGraph]

FORWARD_PASSES: list[tuple[str, Pass]] = [
    ("expand_towers", expand_towers),
    ("resolve_names", resolve_names),
    ("infer_shapes", infer_shapes),
    ("place_devices", place_devices),
]

# Turn the checked forward graph into one training step.
TRAINING_PASSES: list[tuple[str, Pass]] = [
    ("build_backward", build_backward),
    ("add_updates", add_updates),
]


def pass_names() -> list[str]:
    return [name for name, _ in FORWARD_PASSES + TRAINING_PASSES]


def run(g: nx.DiGraph, after: Callable[[str, nx.DiGraph], None] | None = None,
        training: bool = False) -> nx.DiGraph:
    """Run every pass in order; `after(name, graph)` sees the graph after each."""
    for name, fn in FORWARD_PASSES + (TRAINING_PASSES if training else []):
        g = fn(g)
        if after is not None:
            after(name, g)
    return g
