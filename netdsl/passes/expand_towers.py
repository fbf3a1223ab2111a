"""Expand towers: every statement inside `tower on gpu0, gpu1 { ... }` becomes
one copy per device, named `<name>@<device>`, with the chain edges between
copies of the same tower. Nodes outside towers are left as they are.

Needs: the graph as graph.build() makes it. Gives: each layer node has
`device` set when its tower fixed it, and the tensors table maps each tower
statement to its per-device output nodes.
"""
from __future__ import annotations

import dataclasses

import networkx as nx


def expand_towers(g: nx.DiGraph) -> nx.DiGraph:
    templates = [n for n, d in g.nodes(data=True) if d.tower]
    for name in templates:
        template = g.nodes[name]
        for index, device in enumerate(template.tower):
            copy = dataclasses.replace(template, device=device, order=dataclasses.replace(template.order, copy=index))
            g.add_node(f"{name}@{device}", **dict(copy))
    for name in templates:
        for _, succ, edge in g.out_edges(name, data=True):
            for device in g.nodes[name].tower:
                g.add_edge(f"{name}@{device}", f"{succ}@{device}", **edge)
    g.remove_nodes_from(templates)
    for entry in g.graph["tensors"].values():
        if entry["tower"]:
            last = entry["nodes"][None]
            entry["nodes"] = {device: f"{last}@{device}" for device in entry["tower"]}
    return g
