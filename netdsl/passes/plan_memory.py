"""Plan memory: one static arena per device for every buffer of a training
step at the batch size `g.graph["batch"]` (the train block's if unset), with
a byte offset for each buffer, so an executor allocates once per device and
never again.

Buffers are those of the generated kernels (each forward layer rendered for
CUDA at the batch size) and the graph's gradient sums, named as the runtime
names its tensors: value:X (output of X), grad:X (gradient of X's output),
grad:X<-B (the part backward node B sends where X fans out), seed:loss,
pgrad:X.P (parameter gradient), saved:X/NAME (kept by X's forward for its
backward) and scratch:N/NAME (temporary within step N). Parameters and their
momentum live for the whole run and are reported, not planned. Gradients of
network inputs are not planned: nobody reads them, and executors drop the
kernels that only feed them.

Liveness follows the step's order, the topological order of the forward,
backward, gradient-sum and update nodes (the schedule pass issues each
device's launches in this order). A buffer is live from the first step that
touches it to the last, so a forward activation that a backward kernel reads
stays alive until that backward step: which buffers a backward reads comes
from the kind's kernels, not from knowing the kind (a convolution's backward
reads its input, not its output, so the output dies once the activation has
read it). Two buffers written on different devices' streams need care: a
transfer's copy is issued by the device that sends it, so its destination,
and a network input loaded before the step, are live from step 0 and never
share bytes with anything the receiving device touched earlier in the step.
Between steps every device's stream is assumed to have finished (the loss is
read, the next batch loaded).

Offsets: greedy by size (largest first), each buffer placed in the smallest
gap between already placed buffers whose lifetimes overlap its own (best
fit), else above them; sizes rounded up to 256 bytes. Reported per device:
the arena (the planned peak), the sum of all buffers (what allocating each
once would take) and the largest total live at one step (a lower bound).
Result in g.graph["memory"].

Needs: backward and update nodes (training passes); shapes and devices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx

from ..codegen import render_layer
from ..codegen.plan import Buffer
from .build_backward import loss_node
from .infer_shapes import ordered_inputs, topological

ALIGN = 256  # bytes: cudaMalloc's alignment, and whole 128-byte lines for every access
PLAN_TARGET = "cuda"  # the arenas are device memory; buffer sizes are the CUDA kernels'
ITEM_BYTES = {"float32": 4, "int32": 4}


def aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGN) * ALIGN


@dataclass
class Lifetime:
    name: str
    device: str
    nbytes: int  # aligned
    first: int   # index into the step order
    last: int
    offset: int = -1

    def overlaps(self, other: "Lifetime") -> bool:
        return self.first <= other.last and other.first <= self.last


def step_order(g: nx.DiGraph) -> list[str]:
    """Every node a training step runs, in the order it runs them."""
    return [n for n in topological(g) if g.nodes[n]["role"] != "input"]


def is_copy(g: nx.DiGraph, node: str) -> bool:
    """Does this node move a tensor between devices (a transfer placed across devices, or its
    backward)? A transfer within one device runs its kernels like any layer."""
    d = g.nodes[node]
    forward = g.nodes[d["of"]] if d["role"] == "backward" else d
    return d["role"] in ("layer", "backward") and "source_device" in forward


def plan_batch(g: nx.DiGraph) -> int:
    return int(g.graph.get("batch") or g.graph["train"].batch)


class _Touches:
    """Collects, per (device, tensor), the size and the first and last step touching it."""

    def __init__(self):
        self.found: dict[tuple[str, str], Lifetime] = {}

    def add(self, device: str, name: str, nbytes: int, step: int, pinned: bool = False) -> None:
        first = 0 if pinned else step
        size = aligned(nbytes)
        life = self.found.setdefault((device, name), Lifetime(name, device, size, first, step))
        if life.nbytes != size:
            raise ValueError(f"{name} on {device}: {life.nbytes} bytes and {size} bytes")
        life.first, life.last = min(life.first, first), max(life.last, step)


class _StepBuffers:
    def __init__(self, g: nx.DiGraph, batch: int):
        self.g, self.batch = g, batch
        self.loss = loss_node(g)
        self.touches = _Touches()
        self.sources = {}

    def _value_bytes(self, node: str) -> int:
        return self.batch * math.prod(self.g.nodes[node]["shape"]) * 4

    def _source(self, layer: str):
        if layer not in self.sources:
            d = self.g.nodes[layer]
            shapes = [tuple(self.g.nodes[u]["shape"]) for u in ordered_inputs(self.g, layer)]
            line = d["pos"].line if d.get("pos") else 0
            self.sources[layer] = render_layer(d["kind"], layer, line, d["args"], shapes, tuple(d["shape"]),
                                               self.batch, PLAN_TARGET)
        return self.sources[layer]

    def _grad_target(self, source: str, back: str) -> str | None:
        if self.g.nodes[source]["role"] != "layer":
            return None
        return f"grad:{source}<-{back}" if f"{source}:gradsum" in self.g else f"grad:{source}"

    def _tensor(self, layer: str, serving: str, buf: Buffer) -> tuple[str | None, bool]:
        """(tensor name, pinned) a layer's kernel buffer is bound to; None if not planned."""
        inputs = ordered_inputs(self.g, layer)
        role = buf.role
        if role == "input":
            u = inputs[int(buf.name[1:])]
            return f"value:{u}", self.g.nodes[u]["role"] == "input"
        if role == "output":
            return f"value:{layer}", False
        if role == "grad_output":
            return ("seed:loss", True) if layer == self.loss else (f"grad:{layer}", False)
        if role == "grad_input":
            return self._grad_target(inputs[int(buf.name[2:])], serving), False
        if role == "grad_param":
            return f"pgrad:{layer}.{buf.name[1:]}", False
        if role == "saved":
            return f"saved:{layer}/{buf.name}", False
        if role == "scratch":
            return f"scratch:{serving}/{buf.name}", False
        return None, False  # parameters: persistent

    def _kernels(self, layer: str, serving: str, kernels, step: int) -> None:
        device = self.g.nodes[serving]["device"]
        for kernel in kernels:
            for buf in kernel.buffers:
                name, pinned = self._tensor(layer, serving, buf)
                if name is not None:
                    self.touches.add(device, name, buf.size * ITEM_BYTES[buf.dtype], step, pinned)

    def collect(self, order: list[str]) -> dict[tuple[str, str], Lifetime]:
        g, add = self.g, self.touches.add
        for step, node in enumerate(order):
            d = g.nodes[node]
            if d["role"] == "layer" and is_copy(g, node):
                (u,) = ordered_inputs(g, node)
                add(g.nodes[u]["device"], f"value:{u}", self._value_bytes(u), step, g.nodes[u]["role"] == "input")
                add(d["device"], f"value:{node}", self._value_bytes(u), step, pinned=True)
            elif d["role"] == "layer":
                self._kernels(node, node, self._source(node).forward, step)
            elif d["role"] == "backward" and is_copy(g, node):
                layer = d["of"]
                (u,) = ordered_inputs(g, layer)
                add(g.nodes[layer]["device"], f"grad:{layer}", self._value_bytes(layer), step)
                target = self._grad_target(u, node)
                if target:
                    add(g.nodes[u]["device"], target, self._value_bytes(u), step, pinned=True)
            elif d["role"] == "backward":
                self._kernels(d["of"], node, self._source(d["of"]).backward, step)
            elif d["role"] == "gradsum":
                of, size = d["of"], self._value_bytes(d["of"])
                for part in g.predecessors(node):
                    add(d["device"], f"grad:{of}<-{part}", size, step)
                add(d["device"], f"grad:{of}", size, step)
            elif d["role"] == "update":
                for pname, shape in g.nodes[d["of"]].get("params", {}).items():
                    add(d["device"], f"pgrad:{d['of']}.{pname}", math.prod(shape) * 4, step)
        return self.touches.found


def assign_offsets(buffers: list[Lifetime]) -> int:
    """Set each buffer's offset (greedy by size, best fit); returns the arena's size."""
    placed: list[Lifetime] = []
    for buf in sorted(buffers, key=lambda b: (-b.nbytes, b.first, b.name)):
        busy = sorted((p for p in placed if p.overlaps(buf)), key=lambda p: p.offset)
        best, best_gap, top = None, None, 0
        for other in busy:
            gap = other.offset - top
            if gap >= buf.nbytes and (best_gap is None or gap < best_gap):
                best, best_gap = top, gap
            top = max(top, other.offset + other.nbytes)
        buf.offset = top if best is None else best
        placed.append(buf)
    return max((b.offset + b.nbytes for b in buffers), default=0)


def live_peak(buffers: list[Lifetime], steps: int) -> int:
    """The most bytes live at one step: no arena can be smaller."""
    return max((sum(b.nbytes for b in buffers if b.first <= s <= b.last) for s in range(steps)), default=0)


def plan_memory(g: nx.DiGraph) -> nx.DiGraph:
    batch = plan_batch(g)
    order = step_order(g)
    lifetimes = _StepBuffers(g, batch).collect(order)
    devices: dict[str, dict] = {}
    for device in sorted({dev for dev, _ in lifetimes}):
        buffers = [life for (dev, _), life in lifetimes.items() if dev == device]
        arena = assign_offsets(buffers)
        params = sum(math.prod(s) * 4 for n, d in g.nodes(data=True)
                     if d["role"] == "layer" and d["device"] == device for s in d.get("params", {}).values())
        devices[device] = {
            "arena_bytes": arena,
            "sum_bytes": sum(b.nbytes for b in buffers),
            "live_peak_bytes": live_peak(buffers, len(order)),
            "persistent_bytes": 2 * params,  # parameters and their momentum
            "buffers": [{"name": b.name, "offset": b.offset, "bytes": b.nbytes, "first": b.first, "last": b.last}
                        for b in sorted(buffers, key=lambda b: (b.first, b.name))],
        }
    g.graph["memory"] = {"batch": batch, "target": PLAN_TARGET, "alignment": ALIGN, "steps": order,
                         "devices": devices}
    return g
