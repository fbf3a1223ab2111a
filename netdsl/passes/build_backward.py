"""Build backward: add to the forward graph the nodes that compute gradients.

Walking the forward layers in reverse topological order, every layer that
lies on a path to the loss gets a `<layer>:backward` node. It reads the
layer itself (for its saved activations) and the gradient of the layer's
output: straight from its one consumer's backward node, or from a
`<layer>:gradsum` node that adds the gradients of several consumers (a
tensor that fans out). A transfer's backward is a transfer the other way:
it runs on the source device, so the cross-device traffic of the backward
pass mirrors the forward one.

Edges from a backward node to the next carry `slot`: which input of the
consumer the gradient belongs to.
Needs: placed devices; one loss layer, or several with one main (`loss_weights`).
"""
from __future__ import annotations

import networkx as nx

from ..graph_ops import loss_node, loss_weights, topological  # noqa: F401 -- loss_node: re-exported


def build_backward(g: nx.DiGraph) -> nx.DiGraph:
    losses = loss_weights(g)
    needed = set(losses).union(*(nx.ancestors(g, loss) for loss in losses))
    forward = [n for n in topological(g) if g.nodes[n]["role"] == "layer" and n in needed]
    order = max(d["order"] for _, d in g.nodes(data=True)) + 1
    for layer in reversed(forward):
        node = g.nodes[layer]
        back = f"{layer}:backward"
        device = node.get("source_device", node["device"])
        g.add_node(back, role="backward", of=layer, kind=node["kind"], device=device, shape=node["shape"],
                   order=order, stmt=node["stmt"], pos=node.get("pos"))
        order += 1
        g.add_edge(layer, back, slot=None)
        consumers = [(v, e["slot"]) for _, v, e in g.out_edges(layer, data=True)
                     if g.nodes[v]["role"] == "layer" and v in needed]
        if len(consumers) > 1:
            total = f"{layer}:gradsum"
            g.add_node(total, role="gradsum", of=layer, kind="gradsum", device=node["device"], shape=node["shape"],
                       order=order - 0.5, stmt=node["stmt"], pos=node.get("pos"))
            for v, slot in consumers:
                g.add_edge(f"{v}:backward", total, slot=slot)
            g.add_edge(total, back, slot=0)
        elif consumers:
            v, slot = consumers[0]
            g.add_edge(f"{v}:backward", back, slot=slot)
    return g
