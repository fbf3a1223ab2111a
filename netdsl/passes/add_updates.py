"""Add updates: one `<layer>:update` node per layer with parameters, after its
backward node, applying the optimiser of the `train` block (the paper's SGD
with momentum and weight decay) with the layer's per-parameter multipliers.

Needs: backward nodes.
"""
from __future__ import annotations

import networkx as nx


def add_updates(g: nx.DiGraph) -> nx.DiGraph:
    backs = [n for n, d in g.nodes(data=True) if d["role"] == "backward" and g.nodes[d["of"]].get("params")]
    for back in backs:
        layer = g.nodes[back]["of"]
        node = g.nodes[layer]
        update = f"{layer}:update"
        g.add_node(update, role="update", of=layer, kind="update", device=node["device"], shape=(),
                   order=g.nodes[back]["order"] + 0.25, stmt=node["stmt"], pos=node.get("pos"))
        g.add_edge(back, update, slot=None)
    return g
