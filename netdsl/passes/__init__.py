"""The compiler's passes, in the one place that fixes their order."""
from __future__ import annotations

from collections.abc import Callable

import networkx as nx

from ..graph_ops import has_loss
from ..step import Plan

from .add_updates import add_updates
from .build_backward import build_backward
from .expand_towers import expand_towers
from .infer_shapes import infer_shapes
from .lower import lower
from .place_devices import place_devices
from .plan_memory import plan_memory
from .prune import prune
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

# The back half: the training graph lowered into the step IR (netdsl.step),
# then passes over that Plan. What they return is what a backend runs.
PLAN_PASSES: list[tuple[str, Callable[[Plan], Plan]]] = [
    ("prune", prune),
    ("plan_memory", plan_memory),
    ("schedule", schedule),
]


def pass_names() -> list[str]:
    return [name for name, _ in FORWARD_PASSES + TRAINING_PASSES] + ["lower"] + [n for n, _ in PLAN_PASSES]


def plan_step(g: nx.DiGraph, batch: int, target: str, placement: Callable[[str], str] = lambda device: device,
              reuse: bool = True, after: Callable[[str, Plan], None] | None = None,
              precision: str | None = None, fuse: bool = True) -> Plan:
    """The training step of a training graph at `batch` for `target` ("c" or "cuda"), with
    logical devices placed by `placement` and matrix products in `precision`; `reuse=False`
    gives every tensor its own bytes, `fuse=False` keeps every layer's output (no activation in
    a product's epilogue). `precision` defaults to the train block's, resolved for the target
    (netdsl/precision.py)."""
    from .. import precision as precisions
    precision = precisions.resolve(precision or precisions.requested(g), target)
    plan = lower(g, batch, target, placement, precision, fuse)
    if after is not None:
        after("lower", plan)
    for name, fn in PLAN_PASSES:
        plan = fn(plan, reuse=reuse) if fn is plan_memory else fn(plan)
        if after is not None:
            after(name, plan)
    return plan


def run(g: nx.DiGraph, after: Callable[[str, nx.DiGraph], None] | None = None,
        training: bool = False,
        check: Callable[[nx.DiGraph], None] | None = None) -> nx.DiGraph:
    """Run every pass in order; `after(name, graph)` sees the graph after each.
    `check(graph)` runs once after the forward passes, before any training pass needs it.
    A network without a loss is an inference graph: it gets no training passes, and its
    step (plan_step) is the forward pass alone."""
    for name, fn in FORWARD_PASSES:
        g = fn(g)
        if after is not None:
            after(name, g)
    if check is not None:
        check(g)
    if not (training and has_loss(g)):
        return g
    for name, fn in TRAINING_PASSES:
        g = fn(g)
        if after is not None:
            after(name, g)
    return g
