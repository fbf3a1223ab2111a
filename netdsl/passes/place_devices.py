"""Place devices and insert transfers.

Every layer gets a logical device: its tower's, the one its statement names
with `on gpuN`, or else its first input's (gpu0 when that is a network input,
which every device can read). Then every edge whose ends sit on different
devices becomes producer -> transfer -> consumer, one transfer node per
(producer, destination device) shared by all consumers there. Such an edge
must have been marked in the file (`all x`, or an explicit `transfer(x)`);
an unmarked one is an error that says how to mark it.

Needs: shapes (a transfer's size in bytes is its tensor's).
"""
from __future__ import annotations

import networkx as nx

from ..blocks import note_uses
from ..errors import NetDslError
from ..layers import REGISTRY
from ..graph_ops import topological, value_bytes
from ..nodes import Part, Role


def _device(g: nx.DiGraph, name: str) -> str:
    node = g.nodes[name]
    if node.device:
        return node.device
    if node.placed:
        return node.placed
    first = min(g.in_edges(name, data=True), key=lambda e: e[2]["slot"])[0]
    device = g.nodes[first].device
    return "gpu0" if device == "host" else device


def place_devices(g: nx.DiGraph) -> nx.DiGraph:
    for name in topological(g):
        if g.nodes[name].is_layer:
            g.nodes[name].device = _device(g, name)
    for u, v, edge in list(g.edges(data=True)):
        producer, consumer = g.nodes[u], g.nodes[v]
        src, dst = producer.device, consumer.device
        if src in ("host", dst):
            continue
        if "transfer" in REGISTRY[consumer.kind].traits:
            consumer.source_device = src
            consumer.bytes = value_bytes(g, u)
            continue
        if not edge.get("marked"):
            stmt = producer.stmt
            raise note_uses(NetDslError(
                f"`{consumer.stmt}` on {dst} reads `{stmt}` on {src} without a cross-device link",
                consumer.pos, f"place it with `on {src}`, or move the data explicitly: "
                f"`{stmt}_{dst} = transfer({stmt}) on {dst}`"), consumer.uses)
        t = f"{u}->{dst}"
        if t not in g:
            g.add_node(t, role=Role.LAYER, kind="transfer", stmt=consumer.stmt, device=dst, source_device=src,
                       shape=producer.shape, pos=consumer.pos, order=producer.order.beside(Part.AFTER), head=True,
                       bytes=value_bytes(g, u))
            g.add_edge(u, t, slot=0, marked=True)
        g.remove_edge(u, v)
        g.add_edge(t, v, **edge)
    return g
