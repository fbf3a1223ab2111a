"""The compiler's passes, in the one place that fixes their order."""
from __future__ import annotations

from collections.abc import Callable

import networkx as nx

from .add_updates import add_updates
from .build_backward import build_backward
from .expand_towers import expand_towers
from .fuse import fuse_epilogues
from .infer_shapes import infer_shapes
from .place_devices import place_devices
from .plan_memory import plan_memory
from .resolve_names import resolve_names
from .schedule import schedule

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

# Plan the training step for running it: launch groups, arenas at the batch
# size g.graph["batch"] (the train block's if unset), per-device launch lists.
PLAN_PASSES: list[tuple[str, Pass]] = [
    ("fuse_epilogues", fuse_epilogues),
    ("plan_memory", plan_memory),
    ("schedule", schedule),
]


def pass_names() -> list[str]:
    return [name for name, _ in FORWARD_PASSES + TRAINING_PASSES + PLAN_PASSES]


def run(g: nx.DiGraph, after: Callable[[str, nx.DiGraph], None] | None = None,
        training: bool = False, plan: bool = False,
        check: Callable[[nx.DiGraph], None] | None = None) -> nx.DiGraph:
    """Run every pass in order; `after(name, graph)` sees the graph after each.
    `plan` implies `training`: the plan is of a training step. `check(graph)`
    runs once after the forward passes, before any training pass needs it."""
    chosen = FORWARD_PASSES + (TRAINING_PASSES if training or plan else []) + (PLAN_PASSES if plan else [])
    for i, (name, fn) in enumerate(chosen):
        g = fn(g)
        if after is not None:
            after(name, g)
        if check is not None and i == len(FORWARD_PASSES) - 1:
            check(g)
    return g
