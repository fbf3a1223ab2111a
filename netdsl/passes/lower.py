"""Lower: the checked training graph into the step IR (netdsl.step) at a batch
size, for a target and a placement of logical devices on physical ones.

The only pass that renders kernels. A kernel body depends on what it computes
(the kind, its arguments, the input and output shapes, the batch, the target),
never on which layer runs it, so each distinct body is rendered once and
named after what it computes: AlexNet's two towers share every kernel. The
dropout key of a call comes from its layer (`Call.layer`) at run time, so no
node name ever becomes a C identifier.

A network without a loss has no training graph: its step is the forward
pass alone, and its final tensors are what the host reads.

Every node of the graph becomes steps, in topological order:

    layer      its forward kernels; a transfer is a Copy between physical devices,
               or an alias (the reader reads the producer's tensor) within one; an
               activation its producer's epilogue applies (epilogues.py) is an alias too
    backward   its backward kernels, reading the layer's inputs and output and the
               gradient of its output; writing the gradient of each input, or the
               part of it this consumer sends where the input fans out
    gradsum    the parts added (templates/gradsum.j2)
    update     SGD of each parameter (templates/update.j2), reading its physical device's
               gate (TensorRef("gate", "status", device): the clipping scale and whether
               the guard lets the update run), which starts as 1, 1 (the fill)

For the cuda target the module also carries the guard's and clipping's device
reductions (templates/watch.j2), which the runtime launches between phases.

A kernel's buffers bind to TensorRefs by role: inputs and output to values,
their gradients to grads, parameters to param / param_grad, saved and scratch
buffers to the layer's own. Network inputs live on the device of their first
reader; a reader on another physical device gets a copy made before it.
"""
from __future__ import annotations

import math
from typing import Callable

import networkx as nx

from ..codegen import TARGETS, Kernel, KernelSource, epilogue_activation, render_layer
from ..codegen.training import render_gradsum, render_update, render_watch
from ..graph_ops import is_transfer, loss_weights, output_nodes, ordered_inputs, topological
from ..nodes import Role
from ..step import Call, Copy, Plan, TensorInfo, TensorRef
from .epilogues import activation_epilogues


def lower(g: nx.DiGraph, batch: int, target: str,
          placement: Callable[[str], str] = lambda device: device, precision: str = "fp32",
          fuse: bool = True) -> Plan:
    """`fuse=False` keeps every layer's output apart: no activation runs in a product's epilogue."""
    return _Lowering(g, batch, target, placement, precision, fuse).plan()


class _Lowering:
    def __init__(self, g, batch, target, placement, precision, fuse):
        self.g, self.batch, self.target, self.placement = g, batch, target, placement
        self.precision = precision  # of every matrix product (precision.py decides it)
        # layer -> the activation its product's epilogue applies, and back (epilogues.py)
        fuse = fuse and TARGETS[target].product_epilogue(precision)
        self.epilogues = activation_epilogues(g, placement, self._fusable) if fuse else {}
        self.fused_into = {act: layer for layer, act in self.epilogues.items()}
        self.bodies: dict[tuple, KernelSource] = {}  # what a body computes -> its rendering
        self.stems: set[str] = set()
        self.layer_source: dict[str, KernelSource] = {}
        self.alias: dict[TensorRef, TensorRef] = {}
        self.forward, self.backward, self.update = [], [], []
        self.grad_checks: list[tuple[str, TensorRef, str]] = []
        self.input_home: dict[str, str] = {}
        self.losses = loss_weights(g)  # each loss's seed (its output gradient) is its weight

    # ---- kernels, each body once ---------------------------------------------
    def _body(self, key: tuple, stem: str, render: Callable[[str], KernelSource]) -> KernelSource:
        if key not in self.bodies:
            name, n = stem, 2
            while name in self.stems:  # same shapes, other arguments: a different body
                name, n = f"{stem}_{n}", n + 1
            self.stems.add(name)
            self.bodies[key] = render(name)
        return self.bodies[key]

    def _layer_body(self, node: str) -> KernelSource:
        d = self.g.nodes[node]
        in_shapes = tuple(tuple(self.g.nodes[u].shape) for u in ordered_inputs(self.g, node))
        out_shape = tuple(d.shape)
        activation = self._fusable(self.epilogues[node]) if node in self.epilogues else None
        key = ("layer", d.kind, repr(sorted(d.args.items())), in_shapes, out_shape, activation)
        kind = f"{d.kind}_{activation.tag}" if activation else d.kind
        stem = f"{kind}_{'_'.join(_shape_tag(s) for s in in_shapes)}_to_{_shape_tag(out_shape)}"
        return self._body(key, stem, lambda name: render_layer(
            d.kind, name, self._line(node), d.args, in_shapes, out_shape, self.batch, self.target,
            self.precision, activation))

    def _fusable(self, node: str):
        """Activation node `node` as a product's epilogue can apply it, or None."""
        d = self.g.nodes[node]
        return epilogue_activation(d.kind, d.args)

    def _line(self, node: str) -> int:
        pos = self.g.nodes[node].pos
        return pos.line if pos else 0

    # ---- tensors -----------------------------------------------------------------
    def resolve(self, ref: TensorRef) -> TensorRef:
        while ref in self.alias:
            ref = self.alias[ref]
        return ref

    def _same_place(self, a: str, b: str) -> bool:
        return self.placement(self.g.nodes[a].device) == self.placement(self.g.nodes[b].device)

    def _grad_target(self, source: str, back: str) -> TensorRef | None:
        """Where backward node `back` writes the gradient of its input `source`."""
        if not self.g.nodes[source].is_layer:
            return None
        if f"{source}:gradsum" in self.g:
            return TensorRef(source, "grad", back)
        return TensorRef(source, "grad")

    def _input(self, node: str, device: str) -> TensorRef:
        """The tensor a layer on `device` reads for `node`; a network input read on another
        physical device than its first reader's gets a copy, made before its first use there."""
        if not self.g.nodes[node].is_input:
            return TensorRef(node, "value")
        home = self.input_home.setdefault(node, device)
        if self.placement(home) == self.placement(device):
            return TensorRef(node, "value")
        copy = TensorRef(node, "value", device)
        if not any(isinstance(s, Copy) and s.dst == copy for s in self.forward):
            self.forward.append(Copy(TensorRef(node, "value"), copy, node, device, home))
        return copy

    def _call(self, kernel: Kernel, layer: str, node: str, device: str, binding: dict) -> Call:
        """Bind each buffer to its tensor; buffers not in `binding` are the layer's own."""
        own = {"param": "param", "grad_param": "param_grad", "saved": "saved", "scratch": "scratch", "state": "state"}
        refs = []
        for arg in kernel.args:
            buf = arg.buffer
            if buf is None:
                refs.append(None)
            elif buf.name in binding:
                refs.append(binding[buf.name])
            else:
                index = buf.name[1:] if buf.role == "grad_param" else buf.name
                refs.append(TensorRef(layer, own[buf.role], index))
        return Call(kernel, tuple(refs), node, layer, device)

    # ---- node by node ----------------------------------------------------------
    def plan(self) -> Plan:
        handlers = {Role.LAYER: self._forward_layer, Role.BACKWARD: self._backward_layer,
                    Role.GRADSUM: self._gradsum, Role.UPDATE: self._update}
        order = topological(self.g)
        for node in order:
            handlers.get(self.g.nodes[node].role, lambda _: None)(node)
        forward = [self._resolved(s) for s in self.forward]
        backward = [self._resolved(s) for s in self.backward]
        update = [self._resolved(s) for s in self.update]
        tensors = self._tensors(forward + backward + update)
        values = {n: self.resolve(TensorRef(n, "value")) for n in order  # a fused layer's output is gone
                  if self.g.nodes[n].role.forward and n not in self.epilogues}
        values = {n: t for n, t in values.items() if t in tensors}
        params = [TensorRef(n, "param_grad", p) for n in order if self.g.nodes[n].is_layer
                  for p in self.g.nodes[n].params]
        # the main loss's scores, or an inference graph's final tensors; and every loss
        host_reads = frozenset(values[n] for n in (*output_nodes(self.g), *self.losses) if n in values)
        devices = {info.device for info in tensors.values()}
        modules = list(self.bodies.values()) + ([render_watch(self.target)] if self.target == "cuda" else [])
        return Plan(
            network=self.g.graph["network"], target=self.target, batch=self.batch,
            modules=modules, tensors=tensors,
            forward=forward, backward=backward, update=update,
            inputs={n: t for n, t in values.items() if self.g.nodes[n].is_input},
            values=values, param_grads={p.param_name: p for p in params if p in tensors},
            grad_checks=[(n, self.resolve(t), w) for n, t, w in self.grad_checks if self.resolve(t) in tensors],
            placement={d: str(self.placement(d)) for d in sorted(devices)}, host_reads=host_reads,
            precision=self.precision)

    def _forward_layer(self, node: str) -> None:
        d = self.g.nodes[node]
        inputs = ordered_inputs(self.g, node)
        out = TensorRef(node, "value")
        if is_transfer(self.g, node):
            src = TensorRef(inputs[0], "value")
            if self._same_place(inputs[0], node):
                self.alias[out] = src
            else:
                self.forward.append(Copy(src, out, node, d.device, self.g.nodes[inputs[0]].device))
            return
        source = self._layer_body(node)
        self.layer_source[node] = source
        if node in self.fused_into:  # its layer's product wrote this output; the backward still runs
            self.alias[out] = TensorRef(self.fused_into[node], "value")
            return
        binding = {f"x{i}": self._input(u, d.device) for i, u in enumerate(inputs)} | {"y": out}
        self.forward += [self._call(k, node, node, d.device, binding) for k in source.forward]

    def _backward_layer(self, back: str) -> None:
        d = self.g.nodes[back]
        layer = d.of
        inputs = ordered_inputs(self.g, layer)
        dy = TensorRef(layer, "seed") if layer in self.losses else TensorRef(layer, "grad")
        targets = [self._grad_target(u, back) for u in inputs]
        if is_transfer(self.g, layer):
            if targets[0] is None:
                return
            if self._same_place(inputs[0], layer):
                self.alias[dy] = targets[0]
            else:
                self.backward.append(Copy(dy, targets[0], back, d.device, self.g.nodes[layer].device))
            return
        binding = {"y": TensorRef(layer, "value"), "dy": dy}
        binding |= {f"x{i}": self._input(u, d.device) for i, u in enumerate(inputs)}
        binding |= {f"dx{i}": t or TensorRef(layer, "discard", f"dx{i}") for i, t in enumerate(targets)}
        for kernel in self.layer_source[layer].backward:
            self.backward.append(self._call(kernel, layer, back, d.device, binding))
        for pname in self.g.nodes[layer].params:
            self.grad_checks.append((layer, TensorRef(layer, "param_grad", pname), f"the gradient of {pname}"))
        self.grad_checks += [(layer, t, "the input gradient") for t in targets if t]

    def _gradsum(self, node: str) -> None:
        d = self.g.nodes[node]
        of = d.of
        parts = list(self.g.predecessors(node))  # the reference adds them in this order
        size = self.batch * math.prod(self.g.nodes[of].shape)
        source = self._body(("gradsum", len(parts), size), f"gradsum{len(parts)}_{size}",
                            lambda name: render_gradsum(name, self._line(of), len(parts), size, self.target))
        binding = {f"x{i}": TensorRef(of, "grad", p) for i, p in enumerate(parts)} | {"y": TensorRef(of, "grad")}
        self.backward += [self._call(k, of, node, d.device, binding) for k in source.forward]

    def _update(self, node: str) -> None:
        d = self.g.nodes[node]
        layer = d.of
        for pname, shape in self.g.nodes[layer].params.items():
            size = math.prod(shape)
            source = self._body(("update", pname, size), f"update_{size}",
                                lambda name: render_update(name, self._line(layer), pname, size, self.target))
            binding = {pname: TensorRef(layer, "param", pname), f"v{pname}": TensorRef(layer, "momentum", pname),
                       f"d{pname}": TensorRef(layer, "param_grad", pname),
                       "gate": TensorRef("gate", "status", str(self.placement(d.device)))}
            self.update += [self._call(k, layer, node, d.device, binding) for k in source.forward]

    # ---- after every node ----------------------------------------------------------
    def _resolved(self, step):
        if isinstance(step, Copy):
            return Copy(self.resolve(step.src), self.resolve(step.dst), step.node, step.device, step.src_device)
        return Call(step.kernel, tuple(t and self.resolve(t) for t in step.args), step.node, step.layer, step.device)

    def _tensors(self, steps) -> dict[TensorRef, TensorInfo]:
        found: dict[TensorRef, TensorInfo] = {}

        def add(ref, size, dtype, device):
            fill = self.losses[ref.node] if ref.role == "seed" else 1.0 if ref.role == "status" else None
            info = found.setdefault(ref, TensorInfo(size, dtype, device, fill))
            if (info.size, info.dtype) != (size, dtype):
                raise ValueError(f"{ref}: bound as {size} {dtype} and as {info.size} {info.dtype}")

        for step in steps:
            if isinstance(step, Call):
                for ref, arg in zip(step.args, step.kernel.args):
                    if ref is not None:
                        add(ref, arg.buffer.size, arg.buffer.dtype, step.device)
        for step in steps:  # a copy's size is its source's, which a kernel reads or writes
            if isinstance(step, Copy):
                add(step.dst, found[step.src].size, found[step.src].dtype, step.device)
        return found


def _shape_tag(shape) -> str:
    return "x".join(map(str, shape)) or "1"
