"""Fuse epilogues: mark elementwise layers that can run inside the kernel of
the layer that produces their input, so one launch computes, say, a
convolution (bias included), its activation and a dropout while the values
are still in registers.

Walking the forward layers in topological order, an elementwise layer (trait
"elementwise") joins the group of its one input's producer when
  - the producer is a layer on the same device, and is not a transfer (a copy
    between devices has no kernel to extend, and a group never spans devices)
    nor a loss;
  - the producer's output has no other forward reader: a second reader needs
    the value before the elementwise step, which a fused kernel never stores.
A producer that has itself been absorbed passes the layer on to the head of
its group, so `fc -> relu -> dropout` becomes one group headed by the fc.

The pass only annotates; the numbers do not change and an executor may ignore
it. Absorbed nodes get `fused_into = <head>`; the head gets `epilogue`, a list
of {node, kind, args} in order (a random layer keeps its own node name, which
keys its random stream), and `fused_writes`, the nodes whose outputs the fused
kernel must still write to memory: the group's last node, and any member whose
output a backward kernel reads (a ReLU's backward reads its own output, so
in `relu -> dropout` the ReLU's output is stored as well as the dropout's).
Which buffers a backward reads comes from the kind's kernels
(`KernelSource.kept_for_backward`), not from knowing the kind.

Needs: placed devices and shapes; backward nodes are ignored if present.
"""
from __future__ import annotations

import networkx as nx

from ..codegen import render_layer
from ..layers import REGISTRY
from .infer_shapes import ordered_inputs, topological

# Traits of producers whose kernels cannot take an epilogue.
NOT_A_HOST = frozenset({"transfer", "loss"})


def _forward_readers(g: nx.DiGraph, node: str) -> list[str]:
    return [v for v in g.successors(node) if g.nodes[v]["role"] == "layer"]


def _backward_reads(g: nx.DiGraph, node: str) -> set[str]:
    """Buffer names (x0, y, ...) the node's backward kernels read from its forward side."""
    d = g.nodes[node]
    shapes = [tuple(g.nodes[u]["shape"]) for u in ordered_inputs(g, node)]
    line = d["pos"].line if d.get("pos") else 0
    return set(render_layer(d["kind"], node, line, d["args"], shapes, tuple(d["shape"]), 1, "c").kept_for_backward)


def _can_host(g: nx.DiGraph, producer: str, consumer: str) -> bool:
    p = g.nodes[producer]
    return (p["role"] == "layer"
            and not (REGISTRY[p["kind"]].traits & NOT_A_HOST)
            and p["device"] == g.nodes[consumer]["device"]
            and _forward_readers(g, producer) == [consumer])


def fuse_epilogues(g: nx.DiGraph) -> nx.DiGraph:
    groups: dict[str, list[str]] = {}  # head -> members after it, in order
    for node in topological(g):
        d = g.nodes[node]
        if d["role"] != "layer" or "elementwise" not in REGISTRY[d["kind"]].traits:
            continue
        inputs = ordered_inputs(g, node)
        if len(inputs) != 1 or not _can_host(g, inputs[0], node):
            continue
        head = g.nodes[inputs[0]].get("fused_into", inputs[0])
        d["fused_into"] = head
        groups.setdefault(head, []).append(node)
    reads: dict[str, set[str]] = {}

    def backward_reads(node: str) -> set[str]:
        if node not in reads:
            reads[node] = _backward_reads(g, node)
        return reads[node]

    for head, members in groups.items():
        chain = [head] + members
        # A member is stored if its own backward reads its output, or the next one's reads its input.
        stored = [node for node, after in zip(chain, chain[1:])
                  if "y" in backward_reads(node) or "x0" in backward_reads(after)]
        g.nodes[head]["epilogue"] = [{"node": m, "kind": g.nodes[m]["kind"], "args": dict(g.nodes[m]["args"])}
                                     for m in members]
        g.nodes[head]["fused_writes"] = stored + [chain[-1]]
    return g


def fusion_groups(g: nx.DiGraph) -> dict[str, list[str]]:
    """head -> [head, absorbed...] for every group with an epilogue."""
    return {n: [n] + [e["node"] for e in d["epilogue"]] for n, d in g.nodes(data=True) if d.get("epilogue")}
