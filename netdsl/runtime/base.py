"""What every executor shares: parameters in graph order, their seeded
initialisation, the optimiser state, the learning rate, save and load.

An executor runs one network's training step graph at a fixed batch size.
Backends differ only in how they run forward and backward (`_forward`,
`_gradients`); the API below is the same for all of them:

    ex.params                       name -> array, PyTorch layouts, graph order
    ex.set_params(mapping)
    ex.forward(images, train=False) -> scores (the loss layer's first input; without
                                    a loss, the network's final tensor)
    ex.gradients(images, labels, train=True) -> (loss, {name: gradient})
    ex.step(images, labels) -> {"loss", "top1_error", "top5_error"}
    ex.save(path) / ex.load(path)   weights, momentum, step counter and lr (.npz)
"""
from __future__ import annotations

import math
import os
import tempfile
from collections import OrderedDict
from pathlib import Path

import networkx as nx
import numpy as np

from .. import rng
from ..layers import REGISTRY
from ..graph_ops import forward_nodes, image_input, label_input, loss_node, loss_weights, ordered_inputs, output_node
from .optimizer import clip_scale, global_norm, sgd_update, step_norms


class NonFiniteError(RuntimeError):
    """Raised by the guard when a layer's output or gradient stops being finite."""

    def __init__(self, node: str, what: str, step: int):
        super().__init__(f"step {step}: {what} of `{node}` became NaN or Inf")
        self.node, self.what, self.step = node, what, step


def initial_value(init, shape, seed: int, stream: str, dtype) -> np.ndarray:
    """A parameter's starting value, drawn from the counter-based generator."""
    n = math.prod(shape)
    key = rng.stream_key(seed, stream)
    if init.name == "gauss":
        values = rng.normal(key, 0, n) * init.value
    elif init.name == "uniform":
        values = (rng.uniform(key, 0, n) * 2 - 1) * init.value
    else:
        values = np.full(n, init.value)
    return values.astype(dtype).reshape(shape)


class Executor:
    backend = "base"

    def __init__(self, graph: nx.DiGraph, batch: int, seed: int = 0, dtype=np.float32, guard: bool = True):
        self.g, self.batch, self.seed, self.dtype, self.guard = graph, batch, seed, np.dtype(dtype), guard
        self.train_spec = graph.graph["train"]
        opt = self.train_spec.optimizer.kwargs
        self.lr, self.momentum, self.weight_decay = opt["lr"], opt["momentum"], opt["weight_decay"]
        self.clip = getattr(self.train_spec, "clip", 0.0)  # global gradient-norm limit, 0: off
        self.grad_norm = None  # the last step's global gradient norm (measured when clipping)
        self.steps = 0  # completed updates; the dropout counter
        # Per-parameter (||gradient||, ||update||, ||weight||) of the last step, when asked for
        # (train/gradient_flow.py); the cuda backend reduces them on the device (cuda_watch.py).
        self.measure_norms, self.last_norms = False, None
        self.image_offset = 0  # first image of this batch in the global one (a data-parallel rank's shard)
        self.order = forward_nodes(graph)
        self.loss = loss_node(graph)  # the main loss: its scores give the metrics and the prediction
        self.losses = loss_weights(graph)  # every loss and its weight in the `loss` value
        # what forward returns: the main loss's scores, or (no loss: an inference graph) its final tensor
        self.scores_node = output_node(graph)
        self.image_input = image_input(graph)
        self.label_input = label_input(graph)
        self.params: OrderedDict[str, np.ndarray] = OrderedDict()
        self.multipliers: dict[str, tuple[float, float]] = {}
        for node in self.order:
            d = graph.nodes[node]
            layer = REGISTRY.get(d.kind)
            for pname, shape in d.params.items():
                name = f"{node}.{pname}"
                self.params[name] = initial_value(layer.param_init(d.args, pname), shape, seed, name, self.dtype)
                self.multipliers[name] = layer.multipliers(d.args, pname)
        self.velocity = OrderedDict((k, np.zeros_like(v)) for k, v in self.params.items())
        # Running state a training forward updates (batchnorm's statistics): `layer.name` -> array.
        self.state: OrderedDict[str, np.ndarray] = OrderedDict()
        for node in self.order:
            d = graph.nodes[node]
            layer = REGISTRY.get(d.kind)
            if layer is None:
                continue
            in_shapes = [tuple(graph.nodes[u].shape) for u in ordered_inputs(graph, node)]
            for sname, shape in layer.state_shapes(d.args, in_shapes).items():
                self.state[f"{node}.{sname}"] = np.full(shape, layer.state_init(d.args, sname), self.dtype)

    # ---- the API -------------------------------------------------------
    def set_params(self, mapping) -> None:
        for name, value in mapping.items():
            if name not in self.params:
                raise KeyError(f"unknown parameter {name!r}")
            if tuple(np.shape(value)) != self.params[name].shape:
                raise ValueError(f"{name}: shape {np.shape(value)} != {self.params[name].shape}")
            self.params[name][...] = value
        self._params_changed()

    def forward(self, images: np.ndarray, train: bool = False) -> np.ndarray:
        return self._forward(self._images(images), None, train)[0]

    def gradients(self, images, labels, train: bool = True):
        return self._gradients(self._images(images), self._labels(labels), train)

    def step(self, images, labels) -> dict:
        loss, grads, metrics = self._gradients(self._images(images), self._labels(labels), True, with_metrics=True)
        scale = self._clip_scale(grads.values())
        applied = {}
        for name, grad in grads.items():
            lr_mult, decay_mult = self.multipliers[name]
            if scale != 1.0:
                grad = grad * self.dtype.type(scale)
            applied[name] = grad
            sgd_update(self.params[name], self.velocity[name], grad, self.lr * lr_mult, self.momentum,
                       self.weight_decay * decay_mult)
        if self.measure_norms:
            self.last_norms = step_norms(applied, self.params, self.velocity)
        self.steps += 1
        self._params_changed()
        return {"loss": float(loss), **metrics}

    def evaluate(self, images, labels) -> dict:
        """Loss and errors without dropout or updates."""
        scores = self.forward(images, train=False)
        labels = self._labels(labels)
        layer = REGISTRY[self.g.nodes[self.loss].kind]
        loss, _ = layer.forward({}, {}, [scores, labels], None)
        return {"loss": float(loss), **layer.metrics(scores, labels)}

    def total_loss(self, values: dict) -> np.ndarray:
        """The losses times their weights: with one loss (weight 1), that loss's value itself."""
        if len(self.losses) == 1:
            return values[self.loss]
        return np.asarray(sum(float(values[n]) * w for n, w in self.losses.items()), self.dtype)

    def save(self, path, **extra) -> None:
        """Weights, momentum, step counter and learning rate, written atomically."""
        path = Path(path)
        arrays = {f"param/{k}": v for k, v in self.params.items()}
        arrays |= {f"velocity/{k}": v for k, v in self.velocity.items()}
        arrays |= {f"state/{k}": v for k, v in self._state_arrays().items()}
        arrays |= {"meta/steps": np.int64(self.steps), "meta/lr": np.float64(self.lr), "meta/seed": np.int64(self.seed)}
        arrays |= {f"extra/{k}": np.asarray(v) for k, v in extra.items()}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)

    def load(self, path) -> dict:
        """Restore what save() wrote; returns the extra entries."""
        with np.load(path) as data:
            self.set_params({k[6:]: data[k] for k in data.files if k.startswith("param/")})
            for k in data.files:
                if k.startswith("velocity/"):
                    self.velocity[k[9:]][...] = data[k]
            self._set_state({k[6:]: data[k] for k in data.files if k.startswith("state/")})
            self.steps = int(data["meta/steps"])
            self.lr = float(data["meta/lr"])
            self._params_changed()  # the momentum too, for backends that hold their own copy
            return {k[6:]: data[k] for k in data.files if k.startswith("extra/")}

    # ---- for backends --------------------------------------------------
    def _state_arrays(self) -> dict:
        """The running state as host arrays (a backend holding it on a device copies it here)."""
        return dict(self.state)

    def _set_state(self, mapping) -> None:
        for name, value in mapping.items():
            if name not in self.state:
                raise KeyError(f"unknown state {name!r}")
            self.state[name][...] = value

    def _clip_scale(self, grads) -> float:
        """Gradient clipping's factor for this step (1.0: none); sets grad_norm."""
        if not self.clip:
            return 1.0
        self.grad_norm = global_norm(grads)
        return clip_scale(self.grad_norm, self.clip)

    def _images(self, images) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=self.dtype)
        expected = tuple(self.g.nodes[self.image_input].shape)
        if images.shape[1:] != expected:
            raise ValueError(f"images must be N x {'x'.join(map(str, expected))}, got {images.shape}")
        return images

    def _labels(self, labels) -> np.ndarray:
        return np.ascontiguousarray(labels, dtype=np.int64).reshape(-1)

    def _check(self, node: str, value, what: str) -> None:
        if self.guard and not np.isfinite(value).all():
            raise NonFiniteError(node, what, self.steps)

    def _params_changed(self) -> None:
        """Backends holding their own copy of the weights refresh it here."""

    def _forward(self, images, labels, train):
        raise NotImplementedError

    def _gradients(self, images, labels, train, with_metrics=False):
        raise NotImplementedError
