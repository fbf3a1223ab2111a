"""Infer shapes: in topological order, ask each layer kind for its output
shape (C x H x W, or a vector), parameter shapes and multiply-adds per image.
A kind's ShapeError (a kernel larger than its input, channels that do not
match) gets the layer's source position here.

Needs: resolved kinds, arguments and input edges.
"""
from __future__ import annotations

import networkx as nx

from ..errors import NetDslError
from ..layers import REGISTRY, ShapeError


def ordered_inputs(g: nx.DiGraph, name: str) -> list[str]:
    return [u for u, _ in sorted(g.in_edges(name), key=lambda e: g.edges[e]["slot"])]


def topological(g: nx.DiGraph) -> list[str]:
    """Topological order with ties broken by file order: the order users read."""
    return list(nx.lexicographical_topological_sort(g, key=lambda n: g.nodes[n]["order"]))


def infer_shapes(g: nx.DiGraph) -> nx.DiGraph:
    for name in topological(g):
        node = g.nodes[name]
        if node["role"] != "layer":
            continue
        layer = REGISTRY[node["kind"]]
        in_shapes = [tuple(g.nodes[u]["shape"]) for u in ordered_inputs(g, name)]
        for u in ordered_inputs(g, name):
            if g.nodes[u].get("label") and not layer.n_inputs == 2:
                raise NetDslError(f"`{u}` is a label input; only a loss layer can read it", node["pos"])
        try:
            node["shape"] = tuple(layer.output_shape(node["args"], in_shapes))
        except ShapeError as exc:
            raise NetDslError(f"{node['kind']} `{name}`: {exc.message}", node["pos"], exc.hint) from None
        node["params"] = {k: tuple(v) for k, v in layer.param_shapes(node["args"], in_shapes).items()}
        node["macs"] = int(layer.macs(node["args"], in_shapes, node["shape"]))
    return g
