"""A training step as launch lists over named tensors, for any kernel backend.

`build_program(graph, batch, target, placement)` renders every forward
layer's kernels (`netdsl.codegen.render_layer`), a `gradsum.j2` kernel per
gradient sum and an `update.j2` kernel per parameter, then lays the step out
as three ordered lists, forward, backward and update, of:

    Call(kernel, tensors)   run a generated kernel; tensors[i] names what its i-th argument points at
    Copy(src, dst)          move a tensor between physical devices (a transfer)

Every buffer a kernel names is bound to a tensor of the whole step:

    value:X         output of forward node X (network inputs too)
    grad:X          gradient of X's output, as X's backward reads it
    grad:X<-B       the part of it backward node B sends, where X fans out (a gradsum adds them)
    param:P / pgrad:P / velocity:P   parameter P ("node.name", the executor's naming),
                    its gradient and its momentum
    saved:X/name    kept by X's forward for its backward
    scratch:X/name  temporary within one of X's passes: a view into its device's scratch arena,
                    shared by all layers of that device (the largest layer sets the size)
    discard:X/name  a gradient nobody reads (of a network input); kernels that only feed
                    discards are dropped (conv1 never computes the image's gradient)
    seed:loss       dloss/dloss = 1

Transfers between logical devices that `placement` maps onto one physical
device become aliases (the consumer reads the producer's tensor), so on one
host a transfer costs nothing; otherwise they are `Copy` steps. Within a
pass each tensor is written by one step, except scratch, which the layers
of one logical device reuse in turn; so a runtime may give each logical
device a stream and order streams only where a step reads a tensor another
device's step wrote.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import networkx as nx

from ..codegen import Kernel, KernelSource, render_layer, render_module
from ..codegen.training import render_gradsum, render_update
from ..layers import REGISTRY
from ..passes.build_backward import loss_node
from ..passes.infer_shapes import ordered_inputs, topological

SCRATCH_ALIGN = 64  # bytes: each scratch view starts on a cache line (and a float4 boundary)
ITEM_BYTES = {"float32": 4, "int32": 4}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    size: int    # elements
    dtype: str   # "float32" | "int32"
    device: str  # logical device of its first user
    fill: float | None = None    # constant content, written once at allocation
    offset: int | None = None    # scratch: byte offset in the device's arena

    @property
    def role(self) -> str:
        return self.name.split(":", 1)[0]

    @property
    def nbytes(self) -> int:
        return self.size * ITEM_BYTES[self.dtype]


@dataclass(frozen=True)
class Call:
    kernel: Kernel
    tensors: tuple[str | None, ...]  # per kernel argument; None for constants and run-time scalars
    node: str                        # the graph node it serves (a layer, a backward or a gradsum node)
    device: str

    @property
    def writes(self) -> set[str]:
        return {t for t, a in zip(self.tensors, self.kernel.args) if t and a.pointer and not a.const}

    @property
    def reads(self) -> set[str]:
        return {t for t, a in zip(self.tensors, self.kernel.args) if t and a.const}


@dataclass(frozen=True)
class Copy:
    src: str
    dst: str
    node: str
    device: str      # where it lands
    src_device: str

    writes = property(lambda self: {self.dst})
    reads = property(lambda self: {self.src})


@dataclass
class Program:
    target: str
    batch: int
    sources: list[KernelSource]
    tensors: dict[str, TensorSpec]
    forward: list[Call | Copy]
    backward: list[Call | Copy]
    update: list[Call]                 # SGD, one call per parameter: run-time momentum, lr, decay
    inputs: dict[str, str]             # network input node -> tensor the executor fills
    values: dict[str, str]             # forward node -> its output tensor
    param_grads: dict[str, str]        # "node.param" -> its gradient's tensor
    scratch: dict[str, int]            # logical device -> arena bytes
    grad_checks: list[tuple[str, str, str]]  # (layer, tensor, what) as the reference checks them

    def module_text(self) -> str:
        return render_module(self.sources, self.target)


def build_program(graph: nx.DiGraph, batch: int, target: str,
                  placement: Callable[[str], object] = lambda device: device, share_scratch: bool = True) -> Program:
    """The step of `graph` at `batch` for `target`; `placement` maps a logical device to a
    physical one (transfers within one physical device become aliases). With `share_scratch`
    off, each layer keeps its scratch to itself, so what a backward pass would recompute
    exactly as its forward did (a convolution's columns) is still there and is not redone:
    more memory, less work."""
    return _Builder(graph, batch, target, placement, share_scratch).build()


class _Builder:
    def __init__(self, g, batch, target, placement, share_scratch):
        self.g, self.batch, self.target, self.placement = g, batch, target, placement
        self.share_scratch = share_scratch
        self.alias: dict[str, str] = {}
        self.sources: dict[str, KernelSource] = {}
        self.forward, self.backward, self.update = [], [], []
        self.grad_checks: list[tuple[str, str, str]] = []
        self.input_home: dict[str, str] = {}
        self.loss = loss_node(g)

    # ---- naming --------------------------------------------------------
    def resolve(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def _line(self, node: str) -> int:
        return self.g.nodes[node]["pos"].line if self.g.nodes[node].get("pos") else 0

    def _same_place(self, a: str, b: str) -> bool:
        return self.placement(self.g.nodes[a]["device"]) == self.placement(self.g.nodes[b]["device"])

    def _is_transfer(self, node: str) -> bool:
        return "transfer" in REGISTRY[self.g.nodes[node]["kind"]].traits

    def _grad_target(self, source: str, back: str) -> str | None:
        """Where backward node `back` writes the gradient of its input `source`."""
        if self.g.nodes[source]["role"] != "layer":
            return None
        return f"grad:{source}<-{back}" if f"{source}:gradsum" in self.g else f"grad:{source}"

    # ---- the step, node by node ----------------------------------------------
    def build(self) -> Program:
        order = topological(self.g)
        handlers = {"layer": self._forward_layer, "backward": self._backward_layer, "gradsum": self._gradsum,
                    "update": self._update}
        for node in order:
            handlers.get(self.g.nodes[node]["role"], lambda _: None)(node)
        params = [f"{n}.{p}" for n in order if self.g.nodes[n]["role"] == "layer" for p in self.g.nodes[n]["params"]]
        forward = [self._resolved(s) for s in self.forward]
        backward = _prune([self._resolved(s) for s in self.backward], {f"pgrad:{p}" for p in params})
        if not self.share_scratch:
            backward = _drop_recomputed(forward, backward)
        tensors = self._tensors(forward + backward + self.update)
        values = {n: self.resolve(f"value:{n}") for n in order if self.g.nodes[n]["role"] in ("layer", "input")}
        return Program(
            self.target, self.batch, list(self.sources.values()), tensors, forward, backward, self.update,
            {n: t for n, t in values.items() if t in tensors and self.g.nodes[n]["role"] == "input"},
            {n: t for n, t in values.items() if t in tensors},
            {p: f"pgrad:{p}" for p in params if f"pgrad:{p}" in tensors}, self._scratch(tensors),
            [(n, self.resolve(t), w) for n, t, w in self.grad_checks if self.resolve(t) in tensors])

    def _forward_layer(self, node: str) -> None:
        d = self.g.nodes[node]
        inputs = ordered_inputs(self.g, node)
        if self._is_transfer(node):
            if self._same_place(inputs[0], node):
                self.alias[f"value:{node}"] = f"value:{inputs[0]}"
            else:
                self.forward.append(Copy(f"value:{inputs[0]}", f"value:{node}", node, d["device"],
                                         self.g.nodes[inputs[0]]["device"]))
            return
        in_shapes = [tuple(self.g.nodes[u]["shape"]) for u in inputs]
        source = render_layer(d["kind"], node, self._line(node), d["args"], in_shapes, tuple(d["shape"]),
                              self.batch, self.target)
        self.sources[node] = source
        binding = {f"x{i}": self._input(u, d["device"]) for i, u in enumerate(inputs)} | {"y": f"value:{node}"}
        for kernel in source.forward:
            self.forward.append(self._call(kernel, node, node, d["device"], binding))

    def _input(self, node: str, device: str) -> str:
        """The tensor a layer on `device` reads for `node`. A network input lives where its first
        reader is; readers on other physical devices get a copy, made before the first of them."""
        if self.g.nodes[node]["role"] != "input":
            return f"value:{node}"
        home = self.input_home.setdefault(node, device)
        if self.placement(home) == self.placement(device):
            return f"value:{node}"
        copy = f"value:{node}>{device}"
        if not any(isinstance(s, Copy) and s.dst == copy for s in self.forward):
            self.forward.append(Copy(f"value:{node}", copy, node, device, home))
        return copy

    def _backward_layer(self, back: str) -> None:
        d = self.g.nodes[back]
        layer = d["of"]
        inputs = ordered_inputs(self.g, layer)
        dy = "seed:loss" if layer == self.loss else f"grad:{layer}"
        targets = [self._grad_target(u, back) for u in inputs]
        if self._is_transfer(layer):
            if targets[0] is None:
                return
            if self._same_place(inputs[0], layer):
                self.alias[dy] = targets[0]
            else:
                self.backward.append(Copy(dy, targets[0], back, d["device"], self.g.nodes[layer]["device"]))
            return
        binding = {"y": f"value:{layer}", "dy": dy}
        binding |= {f"x{i}": self._input(u, d["device"]) for i, u in enumerate(inputs)}
        binding |= {f"dx{i}": t or f"discard:{layer}/dx{i}" for i, t in enumerate(targets)}
        source = self.sources[layer]
        for kernel in source.backward:
            self.backward.append(self._call(kernel, layer, back, d["device"], binding))
        for pname in self.g.nodes[layer].get("params", {}):
            self.grad_checks.append((layer, f"pgrad:{layer}.{pname}", f"the gradient of {pname}"))
        self.grad_checks += [(layer, t, "the input gradient") for t in targets if t]

    def _gradsum(self, node: str) -> None:
        d = self.g.nodes[node]
        of = d["of"]
        parts = list(self.g.predecessors(node))  # the reference adds them in this order
        size = self.batch * math.prod(self.g.nodes[of]["shape"])
        source = render_gradsum(node, self._line(of), len(parts), size, self.target)
        self.sources[node] = source
        binding = {f"x{i}": f"grad:{of}<-{p}" for i, p in enumerate(parts)} | {"y": f"grad:{of}"}
        for kernel in source.forward:
            self.backward.append(self._call(kernel, node, node, d["device"], binding))

    def _update(self, node: str) -> None:
        d = self.g.nodes[node]
        layer = d["of"]
        for pname, shape in self.g.nodes[layer].get("params", {}).items():
            name = f"{layer}.{pname}"
            source = render_update(node, self._line(layer), pname, math.prod(shape), self.target)
            self.sources[f"{node}/{pname}"] = source
            binding = {pname: f"param:{name}", f"v{pname}": f"velocity:{name}", f"d{pname}": f"pgrad:{name}"}
            self.update += [self._call(kernel, layer, node, d["device"], binding) for kernel in source.forward]

    def _call(self, kernel: Kernel, layer: str, node: str, device: str, binding: dict) -> Call:
        """Bind each buffer argument to its tensor; names not in `binding` are the layer's own."""
        own = {"param": "param:{layer}.{name}", "saved": "saved:{layer}/{name}",
               "scratch": "scratch:{layer}/{name}"}
        names = []
        for arg in kernel.args:
            buf = arg.buffer
            if buf is None:
                names.append(None)
            elif buf.name in binding:
                names.append(binding[buf.name])
            elif buf.role == "grad_param":
                names.append(f"pgrad:{layer}.{buf.name[1:]}")
            else:
                names.append(own[buf.role].format(layer=layer, name=buf.name))
        return Call(kernel, tuple(names), node, device)

    # ---- after both passes -----------------------------------------------
    def _resolved(self, step):
        if isinstance(step, Copy):
            return Copy(self.resolve(step.src), self.resolve(step.dst), step.node, step.device, step.src_device)
        return Call(step.kernel, tuple(t and self.resolve(t) for t in step.tensors), step.node, step.device)

    def _tensors(self, steps) -> dict[str, TensorSpec]:
        found: dict[str, TensorSpec] = {}

        def add(name, size, dtype, device):
            spec = found.setdefault(name, TensorSpec(name, size, dtype, device,
                                                     1.0 if name.startswith("seed:") else None))
            if (spec.size, spec.dtype) != (size, dtype):
                raise ValueError(f"{name}: bound as {size} {dtype} and as {spec.size} {spec.dtype}")

        for step in steps:
            if isinstance(step, Call):
                for name, arg in zip(step.tensors, step.kernel.args):
                    if name:
                        add(name, arg.buffer.size, arg.buffer.dtype, step.device)
        for step in steps:  # a copy's size is its source's, which a kernel reads or writes
            if isinstance(step, Copy):
                add(step.dst, found[step.src].size, found[step.src].dtype, step.device)
        return found

    def _scratch(self, tensors: dict[str, TensorSpec]) -> dict[str, int]:
        """Pack each layer's scratch tensors; a device's arena is its largest layer's pack
        (every layer's packs one after another, without sharing)."""
        arena: dict[str, int] = {}
        used: dict[str, int] = {}  # layer -> bytes packed so far
        for name, spec in sorted(tensors.items()):
            if spec.role != "scratch":
                continue
            layer = name[len("scratch:"):].rsplit("/", 1)[0] if self.share_scratch else "all"
            offset = used.get(layer, 0)
            used[layer] = offset + -(-spec.nbytes // SCRATCH_ALIGN) * SCRATCH_ALIGN
            tensors[name] = TensorSpec(name, spec.size, spec.dtype, spec.device, offset=offset)
            arena[spec.device] = max(arena.get(spec.device, 0), used[layer])
        return arena


def _prune(steps: list, needed: set[str]) -> list:
    """Drop backward steps whose writes nobody reads later and no caller needs (gradients
    of network inputs, and what only they were computed from)."""
    live, kept = set(needed), []
    for step in reversed(steps):
        if step.writes & live:
            kept.append(step)
            live |= step.reads
    return kept[::-1]


def _drop_recomputed(forward: list, backward: list) -> list:
    """Drop backward calls that repeat a forward call (same kernel, same tensors) when nothing
    has written what it reads or writes since: its results are still in place."""
    twins = {(s.kernel, s.tensors): i for i, s in enumerate(forward) if isinstance(s, Call)}
    last_write = {t: i for i, s in enumerate(forward) for t in s.writes}
    kept = []
    for step in backward:
        twin = twins.get((step.kernel, step.tensors)) if isinstance(step, Call) else None
        if twin is not None and all(last_write.get(t, -1) <= twin for t in step.reads | step.writes):
            continue
        kept.append(step)
        last_write |= {t: len(forward) + len(kept) for t in step.writes}
    return kept
