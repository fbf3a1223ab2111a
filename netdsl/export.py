"""The checked graph as JSON (for tools) and as a Graphviz drawing (for people):
one cluster per device, cross-device edges drawn bold red with their bytes."""
from __future__ import annotations

import json
import math
from collections import defaultdict

import networkx as nx

from .layers import Init
from .graph_ops import ordered_inputs, topological
from .report import shape_text
from .values import CallValue


def _plain(value):
    if isinstance(value, (Init, CallValue)):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def graph_json(g: nx.DiGraph) -> str:
    nodes = []
    for name in topological(g):
        d = g.nodes[name]
        nodes.append({
            "name": name, "role": d.role.value, "kind": d.kind, "device": d.device, "shape": list(d.shape),
            "inputs": ordered_inputs(g, name),
            "args": {k: _plain(v) for k, v in d.args.items()},
            "params": {k: list(v) for k, v in d.params.items()},
            "macs": d.macs, "source": str(d.pos) if d.pos else None,
            **({"bytes": d.bytes, "from": d.source_device} if d.source_device is not None else {}),
        })
    train = {k: _plain(v) if not isinstance(v, tuple) else [str(x) for x in v]
             for k, v in vars(g.graph["train"]).items()} if "train" in g.graph else {}
    return json.dumps({"network": g.graph["network"], "file": g.graph["file"], "nodes": nodes, "train": train},
                      indent=2)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def graph_dot(g: nx.DiGraph) -> str:
    lines = [f"digraph {_quote(g.graph['network'])} {{", "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fillcolor="#f4f4f4", fontname="Helvetica", fontsize=10];']
    by_device = defaultdict(list)
    for name in topological(g):
        by_device[g.nodes[name].device].append(name)
    for index, (device, names) in enumerate(by_device.items()):
        lines.append(f"  subgraph cluster_{index} {{")
        lines.append(f"    label={_quote(device)}; style=dashed; color=gray;")
        for name in names:
            d = g.nodes[name]
            params = sum(math.prod(s) for s in d.params.values())
            label = f"{name}\\n{d.kind}  {shape_text(d.shape)}" + (f"\\n{params:,} params" if params else "")
            extra = ', fillcolor="#ffe0e0"' if d.source_device is not None else ""
            lines.append(f"    {_quote(name)} [label={_quote(label)}{extra}];")
        lines.append("  }")
    for u, v in g.edges():
        du, dv = g.nodes[u], g.nodes[v]
        if dv.source_device is not None and du.device != dv.device:
            label = _quote(f"{dv.bytes:,} B/img")
            lines.append(f"  {_quote(u)} -> {_quote(v)} [color=red, penwidth=2, label={label}];")
        else:
            lines.append(f"  {_quote(u)} -> {_quote(v)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
