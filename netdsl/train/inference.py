"""A forward-only twin of a training executor, for validation and `netdsl test`.

The training executor's plan holds every backward buffer and its forward keeps
what backward will read. Built from the forward graph alone (the input and
layer nodes of the training graph: what `compile_graph(training=False)`
gives), a compiled backend lowers only the forward calls, so its arena is
smaller and nothing is written for a backward pass that never comes. The
twin shares nothing with the training executor: its weights and running
state (batchnorm's statistics) are copied in before each use (a quarter of a
gigabyte for AlexNet, milliseconds). The numpy reference runs forward only
already and is used as it is.
"""
from __future__ import annotations

import networkx as nx

from ..graph_ops import forward_nodes

def forward_graph(graph: nx.DiGraph) -> nx.DiGraph:
    """The forward part of a training-step graph (its graph attributes kept)."""
    return graph.subgraph(forward_nodes(graph)).copy()


class InferenceView:
    """`executor()` gives an executor whose forward(images, train=False) matches the
    training executor's, with the training executor's current weights."""

    def __init__(self, trainer_executor):
        self.source = trainer_executor
        self._twin = None

    def executor(self):
        ex = self.source
        if not hasattr(ex, "plan"):  # the reference interpreter: forward is already forward-only
            return ex
        if self._twin is None:
            options = {"devices": ex.devices} if getattr(ex, "devices", None) else {}
            self._twin = type(ex)(forward_graph(ex.g), ex.batch, ex.seed, guard=ex.guard, **options)
        self._twin.set_params(ex.params)
        self._twin._set_state(ex._state_arrays())  # batchnorm's running statistics normalise at test
        self._twin.steps = ex.steps
        return self._twin


def inference_executor(ex):
    """A forward-only executor with `ex`'s weights (for a one-off evaluation)."""
    return InferenceView(ex).executor()
