"""Schedule: the launch list of one training step for each device's stream,
forward, backward and update, with the points where streams meet.

Every node of the step is issued once, on one device's stream, in the step
order (the topological order the memory plan's lifetimes assume). A
computing node runs on its own device. A transfer between devices is a copy
issued by the device that holds its input, so it follows that input's
producer in stream order with no wait: the sender's stream for a forward
transfer, and for the backward of one (which sends the gradient back) the
stream of the device the forward copy landed on. An entry whose result a node
on another stream needs records an event (named after its node), and that
stream waits on the event just before the first entry that needs it. Each
network input is loaded onto every device that reads it before the step.

Entries of g.graph["schedule"][device], in issue order:
    {"op": "load", "node"}                                   a network input, before the step
    {"op": "launch", "node", "kind", "phase", "step"}        the node's kernels ("fused_into" if
                                                             its launch is part of another's)
    {"op": "copy", "node", "phase", "step", "to", "bytes"}   a peer copy from this device
    {"op": "wait", "event", "from"}                          wait for the event of node `event`,
                                                             recorded on the stream of `from`
A launch or copy has "record": its node's name, when another stream waits on it.
"step" indexes g.graph["memory"]["steps"] (the same order, given by step_order).

Needs: backward and update nodes; the fusion annotations are copied if present.
"""
from __future__ import annotations

import math

import networkx as nx

from .place_devices import BYTES_PER_VALUE
from .plan_memory import is_copy, plan_batch, step_order

PHASES = {"layer": "forward", "backward": "backward", "gradsum": "backward", "update": "update"}


def issuing_device(g: nx.DiGraph, node: str) -> str:
    """The device whose stream issues the node: where its input lives, for a copy."""
    d = g.nodes[node]
    if not is_copy(g, node):
        return d["device"]
    return d["source_device"] if d["role"] == "layer" else g.nodes[d["of"]]["device"]


def _copy_bytes(g: nx.DiGraph, node: str, batch: int) -> int:
    d = g.nodes[node]
    forward = g.nodes[d["of"]] if d["role"] == "backward" else d
    return batch * math.prod(forward["shape"]) * BYTES_PER_VALUE


def schedule(g: nx.DiGraph) -> nx.DiGraph:
    batch = plan_batch(g)
    order = step_order(g)
    issuer = {n: issuing_device(g, n) for n in order}
    position = {n: i for i, n in enumerate(order)}
    waits: dict[str, list[str]] = {n: [] for n in order}
    recorded: set[str] = set()
    for node in order:
        for u in sorted((u for u in g.predecessors(node) if u in position), key=position.__getitem__):
            if issuer[u] != issuer[node]:
                waits[node].append(u)
                recorded.add(u)
    streams: dict[str, list[dict]] = {device: [] for device in sorted(set(issuer.values()))}
    for name, d in sorted(g.nodes(data=True), key=lambda item: item[1]["order"]):
        if d["role"] == "input":
            for device in sorted({issuer[v] for v in g.successors(name)}):
                streams[device].append({"op": "load", "node": name})
    waited: dict[str, set[str]] = {device: set() for device in streams}
    for step, node in enumerate(order):
        d, device = g.nodes[node], issuer[node]
        for event in waits[node]:
            if event not in waited[device]:
                waited[device].add(event)
                streams[device].append({"op": "wait", "event": event, "from": issuer[event]})
        entry = {"op": "launch", "node": node, "kind": d["kind"], "phase": PHASES[d["role"]], "step": step}
        if is_copy(g, node):
            entry = {"op": "copy", "node": node, "phase": entry["phase"], "step": step, "to": d["device"],
                     "bytes": _copy_bytes(g, node, batch)}
        elif d.get("fused_into"):
            entry["fused_into"] = d["fused_into"]
        if node in recorded:
            entry["record"] = node
        streams[device].append(entry)
    g.graph["schedule"] = streams
    return g
