"""Questions every pass and executor asks of the checked graph, answered in
one place: node order, a node's inputs in slot order, the loss layer, the
bytes a value takes."""
from __future__ import annotations

import math

import networkx as nx

from .errors import NetDslError
from .layers import REGISTRY

BYTES_PER_VALUE = 4  # float32 activations


def ordered_inputs(g: nx.DiGraph, name: str) -> list[str]:
    return [u for u, _ in sorted(g.in_edges(name), key=lambda e: g.edges[e]["slot"])]


def topological(g: nx.DiGraph) -> list[str]:
    """Topological order with ties broken by file order: the order users read."""
    return list(nx.lexicographical_topological_sort(g, key=lambda n: g.nodes[n]["order"]))


def loss_node(g: nx.DiGraph) -> str:
    losses = [n for n in g if g.nodes[n]["role"] == "layer" and "loss" in REGISTRY[g.nodes[n]["kind"]].traits]
    if len(losses) != 1:
        found = ", ".join(losses) or "none"
        raise NetDslError(f"training needs exactly one loss layer, found {found}",
                          hint="end the network with `loss = softmax_loss(scores, label)`")
    return losses[0]


def is_transfer(g: nx.DiGraph, node: str) -> bool:
    return "transfer" in REGISTRY[g.nodes[node]["kind"]].traits


def value_bytes(g: nx.DiGraph, node: str) -> int:
    """Bytes of one image's worth of a node's output."""
    return math.prod(g.nodes[node]["shape"]) * BYTES_PER_VALUE
