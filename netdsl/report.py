"""What `netdsl info` prints: a per-layer table and the totals that check a
network against its paper (parameters, multiply-adds, memory, cross-GPU bytes)."""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import networkx as nx

from .graph_ops import final_tensors, has_loss, topological
from .graph_ops import BYTES_PER_VALUE
from .receptive import pixels, receptive_fields


def shape_text(shape) -> str:
    return "x".join(str(s) for s in shape)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError


@dataclass
class Summary:
    parameters: int
    macs: int
    activation_bytes: dict[str, int]  # per device, at the batch size
    parameter_bytes: dict[str, int]
    links: list[tuple[str, str, str, int]]  # (consumer statement, from, to, bytes per image)

    @property
    def cross_bytes_per_image(self) -> int:
        return sum(b for *_, b in self.links)


def summarise(g: nx.DiGraph, batch: int) -> Summary:
    activation = defaultdict(int)
    weights = defaultdict(int)
    links = []
    parameters = macs = 0
    for name in topological(g):
        node = g.nodes[name]
        if not node.is_layer:
            continue
        count = sum(math.prod(s) for s in node.params.values())
        parameters += count
        macs += node.macs
        weights[node.device] += count * BYTES_PER_VALUE
        activation[node.device] += math.prod(node.shape) * batch * BYTES_PER_VALUE
        if node.source_device is not None:
            links.append((node.stmt, node.source_device, node.device, node.bytes))
    return Summary(parameters, macs, dict(sorted(activation.items())), dict(sorted(weights.items())), links)


def args_text(args: dict) -> str:
    """A layer's arguments as the file (or --set) left them; the per-parameter
    learning-rate and decay multipliers are left out while they are 1."""
    items = []
    for key, value in args.items():
        if value is None or (key.endswith("_mult") and value == 1):
            continue
        if hasattr(value, "name") and hasattr(value, "value"):  # an init: gauss(0.01)
            value = f"{value.name}({value.value})" if value.value is not None else value.name
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        items.append(f"{key}={value}")
    return " ".join(items)


LAYER_HEADER = ("layer", "kind", "device", "output", "params", "mult-adds", "field", "stride", "act/image", "arguments")
LAYER_RIGHT = {4, 5, 6, 7, 8}


def layer_rows(g: nx.DiGraph) -> list[tuple[str, ...]]:
    fields = receptive_fields(g)
    rows = []
    for name in topological(g):
        node = g.nodes[name]
        if not node.role.forward:
            continue
        params = sum(math.prod(s) for s in node.params.values())
        field = fields.get(name)
        rows.append((name, node.kind, node.device, shape_text(node.shape),
                     f"{params:,}" if params else "", f"{node.macs:,}" if node.macs else "",
                     pixels(field.size) if field else "", pixels(field.stride) if field and len(node.shape) == 3 else "",
                     "" if node.label else human_bytes(math.prod(node.shape) * BYTES_PER_VALUE), args_text(node.args)))
    return rows


def activation_bytes_per_image(g: nx.DiGraph) -> int:
    """Every layer's output for one image: what a forward pass that keeps all of
    them for the backward holds, before the planner reuses any buffer."""
    return sum(math.prod(g.nodes[n].shape) * BYTES_PER_VALUE for n in g if g.nodes[n].is_layer)


def table(header: tuple[str, ...], rows: list[tuple[str, ...]], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    def line(r):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return "\n".join([line(header), line(tuple("-" * w for w in widths))] + [line(r) for r in rows])


def info_text(g: nx.DiGraph, batch: int, memory: str | None = None) -> str:
    """The per-layer table and totals; `memory` is the planned step's memory table
    (netdsl.plan_report), else the per-device sum of activations at `batch`."""
    s = summarise(g, batch)
    out = [f"network {g.graph['network']} ({g.graph['file']})", ""]
    out.append(table(LAYER_HEADER, layer_rows(g), LAYER_RIGHT))
    out += ["", "field, stride: receptive field and effective stride in input pixels (a flat output's field"
            " is its whole input); act/image: the layer's output for one image",
            "", f"parameters            {s.parameters:,}",
            f"multiply-adds/image   {s.macs:,}",
            f"activations/image     {human_bytes(activation_bytes_per_image(g))} (every layer's output, before buffer reuse)"]
    if not has_loss(g):  # an inference graph (an ONNX import's): the step is the forward pass
        outputs = ", ".join(f"`{n}`" for n in final_tensors(g))
        out.append(f"outputs               {outputs} (no loss: the figures are inference's; train and test need one)")
    if memory is not None:
        out += ["", memory]
    for device in s.activation_bytes if memory is None else ():
        out.append(f"memory on {device:<11} {human_bytes(s.activation_bytes[device])} activations at batch {batch}"
                   f", {human_bytes(s.parameter_bytes.get(device, 0))} parameters")
    if s.links:
        out += ["", "cross-device links (bytes per image, each direction of the step):"]
        per_stmt = defaultdict(list)
        for stmt, src, dst, nbytes in s.links:
            per_stmt[stmt].append(f"{src}->{dst} {nbytes:,}")
        for stmt, items in per_stmt.items():
            out.append(f"  {stmt:<8} " + ", ".join(items))
        total = s.cross_bytes_per_image
        if has_loss(g):
            out.append(f"cross-GPU bytes/step  forward {human_bytes(total * batch)}, backward "
                       f"{human_bytes(total * batch)} ({total:,} bytes per image each way) at batch {batch}")
        else:  # no backward pass
            out.append(f"cross-GPU bytes/step  forward {human_bytes(total * batch)} ({total:,} bytes per image) "
                       f"at batch {batch}")
    return "\n".join(out)
