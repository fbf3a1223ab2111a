"""Build backward: add to the forward graph the nodes that compute gradients.

Walking the forward layers in reverse topological order, every layer that
lies on a path to the loss gets a `<layer>:backward` node. It reads the
layer itself (for its saved activations) and the gradient of the layer's
output: straight from its one consumer's backward node, or from a
`<layer>:gradsum` node that adds the gradients of several consumers (a
tensor that fans out). A transfer's backward is a transfer the other way:
it runs on the source device, so the cross-device traffic of the backward
pass mirrors the forward one.

The backward nodes are ordered by that walk (`Phase.BACKWARD`); a gradsum
shares the place of the backward it feeds, just before it.

Edges from a backward node to the next carry `slot`: which input of the
consumer the gradient belongs to.
Needs: placed devices; one loss layer, or several with one main (`loss_weights`).
"""
from __future__ import annotations

import networkx as nx

from ..graph_ops import layers, loss_node, loss_weights  # noqa: F401 -- loss_node: re-exported
from ..nodes import Order, Part, Phase, Role


def build_backward(g: nx.DiGraph) -> nx.DiGraph:
    losses = loss_weights(g)
    needed = set(losses).union(*(nx.ancestors(g, loss) for loss in losses))
    forward = [n for n in layers(g) if n in needed]
    for index, layer in enumerate(reversed(forward)):
        node = g.nodes[layer]
        back = f"{layer}:backward"
        order = Order(Phase.BACKWARD, index)
        g.add_node(back, role=Role.BACKWARD, of=layer, kind=node.kind, device=node.source_device or node.device,
                   shape=node.shape, order=order, stmt=node.stmt, pos=node.pos)
        g.add_edge(layer, back, slot=None)
        consumers = [(v, e["slot"]) for _, v, e in g.out_edges(layer, data=True)
                     if g.nodes[v].is_layer and v in needed]
        if len(consumers) > 1:
            total = f"{layer}:gradsum"
            g.add_node(total, role=Role.GRADSUM, of=layer, kind="gradsum", device=node.device, shape=node.shape,
                       order=order.beside(Part.BEFORE), stmt=node.stmt, pos=node.pos)
            for v, slot in consumers:
                g.add_edge(f"{v}:backward", total, slot=slot)
            g.add_edge(total, back, slot=0)
        elif consumers:
            v, slot = consumers[0]
            g.add_edge(f"{v}:backward", back, slot=slot)
    return g
