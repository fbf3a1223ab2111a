"""Add updates: one `<layer>:update` node per layer with parameters, after its
backward node, applying the optimiser of the `train` block (the paper's SGD
with momentum and weight decay) with the layer's per-parameter multipliers.

Needs: backward nodes.
"""
from __future__ import annotations

import networkx as nx

from ..nodes import Part, Role


def add_updates(g: nx.DiGraph) -> nx.DiGraph:
    backs = [n for n, d in g.nodes(data=True) if d.role is Role.BACKWARD and g.nodes[d.of].params]
    for back in backs:
        layer = g.nodes[back].of
        node = g.nodes[layer]
        g.add_node(f"{layer}:update", role=Role.UPDATE, of=layer, kind="update", device=node.device, shape=(),
                   order=g.nodes[back].order.beside(Part.AFTER), stmt=node.stmt, pos=node.pos)
        g.add_edge(back, f"{layer}:update", slot=None)
    return g
