"""The reference executor: a numpy interpreter of the training-step graph.

It runs each forward layer's numpy `forward` in topological order, then
walks the backward nodes the build-backward pass added, in their order,
summing gradients where the graph says so. It is the oracle every generated
kernel is checked against, so it favours plainness over speed except in
the kinds' own forward/backward (im2col + BLAS).
"""
from __future__ import annotations

import numpy as np

from ..layers import REGISTRY
from ..layers.base import Context
from ..graph_ops import ordered_inputs, topological
from ..nodes import Role
from .base import Executor


class ReferenceExecutor(Executor):
    backend = "reference"

    def __init__(self, graph, batch, seed=0, dtype=np.float32, guard=True, precision="fp32"):
        """`precision`: the matrix products' operands rounded as in tf32 or bf16 (netdsl/precision.py),
        the oracle of a backend computing in that precision; fp32 (the default) leaves them."""
        super().__init__(graph, batch, seed, dtype, guard)
        self.precision = precision
        self.inputs = {n: ordered_inputs(graph, n) for n in self.order}
        self.backward_order = [n for n in topological(graph) if graph.nodes[n].role in (Role.BACKWARD, Role.GRADSUM)]

    def _context(self, node: str, train: bool) -> Context:
        state = {k[len(node) + 1:]: v for k, v in self.state.items() if k.rsplit(".", 1)[0] == node}
        return Context(train=train, seed=self.seed, step=self.steps, stream=node, image_offset=self.image_offset,
                       state=state or None, precision=self.precision)

    def _layer_params(self, node: str) -> dict:
        return {p: self.params[f"{node}.{p}"] for p in self.g.nodes[node].params}

    def _forward(self, images, labels, train):
        values, caches = {self.image_input: images}, {}
        if self.label_input is not None and labels is not None:
            values[self.label_input] = labels
        for node in self.order:
            d = self.g.nodes[node]
            if not d.is_layer or (node in self.losses and labels is None):
                continue
            layer = REGISTRY[d.kind]
            xs = [values[u] for u in self.inputs[node]]
            values[node], caches[node] = layer.forward(d.args, self._layer_params(node), xs,
                                                       self._context(node, train))
            self._check(node, values[node], "the output")
        return values[self.scores_node], values, caches

    def _gradients(self, images, labels, train, with_metrics=False):
        scores, values, caches = self._forward(images, labels, train)
        grads, out_grad = {}, {}
        for node in self.backward_order:
            d = self.g.nodes[node]
            if d.role is Role.GRADSUM:
                parts = [out_grad.pop((u, d.of)) for u in self.g.predecessors(node)]
                out_grad[(node, d.of)] = sum(parts[1:], parts[0])
                continue
            layer_name = d.of
            ld = self.g.nodes[layer_name]
            layer = REGISTRY[ld.kind]
            upstream = [u for u in self.g.predecessors(node) if u != layer_name]
            if layer_name in self.losses:  # the total's gradient: each loss's weight
                dy = np.asarray(self.losses[layer_name], self.dtype)
            else:
                dy = out_grad.pop((upstream[0], layer_name))
            ctx = self._context(layer_name, train)
            ctx.input_grads = tuple(self.g.nodes[u].is_layer for u in self.inputs[layer_name])
            dxs, dparams = layer.backward(ld.args, self._layer_params(layer_name), caches.pop(layer_name), dy, ctx)
            for pname, grad in dparams.items():
                grads[f"{layer_name}.{pname}"] = grad
                self._check(layer_name, grad, f"the gradient of {pname}")
            for source, dx in zip(self.inputs[layer_name], dxs):
                if dx is not None and self.g.nodes[source].is_layer:
                    self._check(layer_name, dx, "the input gradient")
                    out_grad[(node, source)] = dx
        loss = self.total_loss(values)
        grads = {k: grads[k] for k in self.params}  # graph order
        if not with_metrics:
            return loss, grads
        metrics = REGISTRY[self.g.nodes[self.loss].kind].metrics(scores, labels)
        return loss, grads, metrics

    def input_gradient(self, images, score_grad) -> np.ndarray:
        """d(sum(score_grad * scores)) / d(images) at test time (no dropout), through the
        graph's backward nodes. A one-hot `score_grad` gives a class score's gradient with
        respect to the pixels: the saliency map of Simonyan et al. (2013)."""
        images = self._images(images)
        _, values, caches = self._forward(images, None, False)
        out_grad, image_grad = {}, np.zeros_like(images)
        for node in self.backward_order:
            d = self.g.nodes[node]
            if d.role is Role.GRADSUM:
                parts = [out_grad.pop((u, d.of)) for u in self.g.predecessors(node)]
                out_grad[(node, d.of)] = sum(parts[1:], parts[0])
                continue
            layer_name = d.of
            if layer_name == self.loss:  # start from the given score gradient, not the loss's
                out_grad[(node, self.scores_node)] = np.asarray(score_grad, self.dtype)
                continue
            if layer_name in self.losses:  # a side loss adds nothing to the main scores' gradient
                side = self.inputs[layer_name][0]
                out_grad[(node, side)] = np.zeros_like(values[side])
                continue
            ld = self.g.nodes[layer_name]
            upstream = [u for u in self.g.predecessors(node) if u != layer_name]
            ctx = self._context(layer_name, False)
            ctx.input_grads = tuple(self.g.nodes[u].is_layer or u == self.image_input
                                    for u in self.inputs[layer_name])
            dxs, _ = REGISTRY[ld.kind].backward(ld.args, self._layer_params(layer_name), caches.pop(layer_name),
                                                   out_grad.pop((upstream[0], layer_name)), ctx)
            for source, dx in zip(self.inputs[layer_name], dxs):
                if dx is None:
                    continue
                if source == self.image_input:  # every tower's first layer reads the image: sum them
                    image_grad += dx
                elif self.g.nodes[source].is_layer:
                    out_grad[(node, source)] = dx
        return image_grad
