"""The executor every compiled backend shares: it runs a Plan.

`netdsl.passes.plan_step` lowers the training graph into the step IR, and
what it returns is exactly what runs: one arena per physical device of the
size `netdsl compile` prints, every tensor at its planned offset, the calls
in order, and (on backends with streams) the schedule's waits and events.
This class binds arguments, loads inputs, runs the guard and the optimiser
and keeps parameters and checkpoints (through base.Executor); a backend
supplies three roles and nothing else:

    allocator   allocate(device, nbytes) -> arena; view(ref) (host memory only, else None);
                upload(ref, array); download(ref) -> array; fill(ref, value)
    compiler    compile(source text) -> loaded module, cached by source hash
    program     prepare(index, step, sync) -> a launch; run(launches); synchronize()

A kernel's run-time scalars (dropout's `step` and `train`, each parameter's
momentum, lr and decay) are cells the backend makes (`make_cell`) and the
executor sets before a pass (`set_cell`), so a prepared launch never changes.

The guard watches, each step, the weights with the scores or loss after
forward and the weight gradients after backward. Only when one of them is
not finite does it find the first layer that went bad: it runs the pass
again call by call, checking each output and gradient right after the call
that completes it (the memory plan reuses bytes, so a later look would see
another tensor). Dropout masks are keyed by the step counter, so the rerun
computes the same numbers. Host-memory backends check on the host, where it
costs no copy; the cuda backend checks on the device and comes here only for
the rerun (device_step.py).

Batch sizes: kernels are specialised for the construction batch. A smaller
batch in `forward`/`evaluate` is padded with zero images and the scores cut
back; rows never mix, and dropout masks do not depend on the batch size.
"""
from __future__ import annotations

import time

import numpy as np

from .. import rng
from ..layers import REGISTRY
from ..step import Call, Copy, Plan, TensorRef
from . import base
from .optimizer import step_norms


class PlannedExecutor(base.Executor):
    target = ""

    def __init__(self, graph, batch: int, seed: int = 0, dtype=np.float32, guard: bool = True,
                 placement=lambda device: "host", keep_values: bool = False):
        """`keep_values` gives every tensor its own bytes, so each layer's output can be read
        after a pass (tests compare them with the reference's)."""
        super().__init__(graph, batch, seed, dtype, guard)
        if self.dtype != np.float32:
            raise ValueError(f"the {self.backend} backend computes in float32")
        from ..passes import plan_step
        self.keep_values = keep_values
        self.plan: Plan = plan_step(graph, batch, self.target, placement, reuse=not keep_values, fuse=not keep_values)
        self.module = self.compile(self.module_text())
        self.arenas = {device: self.allocate(device, arena.nbytes) for device, arena in self.plan.arenas.items()}
        self._bind_persistent()
        self.cells = {"step": self.make_cell("uint64_t"), "train": self.make_cell("int"),
                      "image_offset": self.make_cell("uint64_t")}
        self.on_gradients_ready = None  # data parallelism: called as (layer, param_grad refs) in backward
        self.rates: dict[str, dict[str, object]] = {}  # parameter -> its SGD cells
        steps = self.plan.steps
        prepared = [self.prepare(i, step, self.plan.sync.get(i)) for i, step in enumerate(steps)]
        self.launches = {phase: [prepared[i] for i in self.plan.phase_range(phase)]
                         for phase in ("forward", "backward", "update")}
        # forward without labels (prediction) leaves out the loss layers
        self.inference = [launch for step, launch in zip(self.plan.forward, self.launches["forward"])
                          if step.node not in self.losses]
        self.watched_weights = [(*_layer_and(name, "the {}"), TensorRef(layer, "param", pname))
                                for name in self.params for layer, pname in [_split(name)]]
        self.watched_grads = [(*_layer_and(name, "the gradient of {}"), ref)
                              for name, ref in self.plan.param_grads.items()]

    def module_text(self) -> str:
        from ..codegen import render_module
        return render_module(self.plan.modules, self.target)

    # ---- binding -----------------------------------------------------------------
    def _bind_persistent(self) -> None:
        """Parameters and momentum live in the arena; on host memory the base class's
        arrays become views of it, so nothing is ever synced."""
        for ref, info in self.plan.tensors.items():
            if info.fill is not None:
                self.fill(ref, info.fill)
        for table, role in ((self.params, "param"), (self.velocity, "momentum"), (self.state, "state")):
            for name, array in table.items():
                layer, pname = name.rsplit(".", 1)
                ref = TensorRef(layer, role, pname)
                if ref not in self.plan.tensors:
                    continue
                view = self.view(ref)
                if view is not None:
                    view[...] = array.reshape(-1)
                    table[name] = view.reshape(array.shape)
                else:
                    self.upload(ref, array)

    def _state_ref(self, name: str) -> TensorRef:
        layer, sname = name.rsplit(".", 1)
        return TensorRef(layer, "state", sname)

    def _state_arrays(self) -> dict:
        """Host memory: the state arrays are arena views already; device memory: read back."""
        return {name: array if self.view(self._state_ref(name)) is not None
                else self.download(self._state_ref(name)).reshape(array.shape)
                for name, array in self.state.items() if self._state_ref(name) in self.plan.tensors}

    def _set_state(self, mapping) -> None:
        super()._set_state(mapping)
        for name in mapping:
            ref = self._state_ref(name)
            if ref in self.plan.tensors and self.view(ref) is None:
                self.upload(ref, self.state[name])

    def arguments(self, call: Call) -> list:
        """Per kernel argument: a TensorRef, a constant, or a cell of a run-time scalar."""
        values = []
        for arg, ref in zip(call.kernel.args, call.args):
            if ref is not None:
                values.append(ref)
            elif arg.scalar is None:
                values.append(arg.value)
            elif arg.scalar in ("key0", "key1"):
                values.append(int(rng.stream_key(self.seed, call.layer)[arg.scalar == "key1"]))
            elif arg.scalar in self.cells:
                values.append(self.cells[arg.scalar])
            else:  # momentum, lr, decay of the parameter this update writes
                param = next(r for r in call.args if r and r.role == "param").param_name
                values.append(self.rates.setdefault(param, {}).setdefault(arg.scalar, self.make_cell(arg.ctype)))
        return values

    # ---- running -----------------------------------------------------------------
    def _run(self, launches, train: bool) -> None:
        self.set_cell(self.cells["step"], self.steps)
        self.set_cell(self.cells["train"], int(train))
        self.set_cell(self.cells["image_offset"], self.image_offset)
        self.run(launches)

    def _run_backward(self, train: bool) -> None:
        """With `on_gradients_ready` set, backward runs in segments, each ending at the last
        step that writes a layer's parameter gradients, and the callback gets (layer, refs)
        there: a data-parallel rank starts summing them while the rest of backward runs."""
        if self.on_gradients_ready is None:
            return self._run(self.launches["backward"], train)
        self._run([], train)
        start = 0
        for end, layer, refs in self.gradient_segments():
            self.run(self.launches["backward"][start:end])
            self.on_gradients_ready(layer, refs)
            start = end
        self.run(self.launches["backward"][start:])

    def gradient_segments(self) -> list[tuple[int, str, list[TensorRef]]]:
        """(end, layer, refs) in backward order: after backward step end - 1 the layer's
        parameter gradients are final."""
        last = {}
        for i, step in enumerate(self.plan.backward):
            for ref in step.writes:
                if ref.role == "param_grad" and ref in self.plan.param_grads.values():
                    last[ref] = i + 1
        layers: dict[str, list] = {}
        for ref in self.plan.param_grads.values():
            layers.setdefault(ref.node, []).append(ref)
        return sorted((max(last.get(r, 0) for r in refs), layer, refs) for layer, refs in layers.items())

    def _finite(self, ref: TensorRef) -> bool:
        value = self.read(ref)
        # a sum is NaN or infinite when any element is, in one pass with no temporary
        return bool(np.isfinite(np.add.reduce(value, axis=None)) or np.isfinite(value).all())

    def read(self, ref: TensorRef) -> np.ndarray:
        view = self.view(ref)
        return view if view is not None else self.download(ref)

    def _watched(self, phase: str, labels) -> list[tuple[str, str, TensorRef]]:
        """(node, what, tensor) the guard checks after `phase`."""
        if phase == "forward":
            final = self.loss if labels is not None else self.scores_node
            return [(final, "the output", self.plan.values[final]), *self.watched_weights]
        return self.watched_grads

    def _guard(self, phase: str, images, labels, train: bool) -> None:
        if not self.guard:
            return
        bad = [(node, what) for node, what, ref in self._watched(phase, labels) if not self._finite(ref)]
        if bad:
            self._find_first_bad(phase, images, labels, train)
            raise base.NonFiniteError(*bad[0], self.steps)

    def _find_first_bad(self, phase: str, images, labels, train: bool) -> None:
        """Runs the passes up to `phase` again call by call; raises at the first layer whose
        output (or, in backward, gradient) is not finite once its last writer has run.
        The rerun trains too (its dropout masks must be the step's), so the layers' running
        statistics (batch norm's) are put back as the first run left them: one update a step."""
        state = {name: np.array(value) for name, value in self._state_arrays().items()}
        try:
            self._rerun_checking(phase, images, labels, train)
        finally:
            self._set_state(state)

    def _rerun_checking(self, phase: str, images, labels, train: bool) -> None:
        self._load_inputs(images, labels)
        checks = {ref: (node, "the output") for node, ref in self.plan.values.items()
                  if self.g.nodes[node].is_layer and (labels is not None or node not in self.losses)}
        grads = {ref: (layer, what) for layer, ref, what in self.plan.grad_checks}
        phases = [("forward", checks)] + ([("backward", grads)] if phase == "backward" else [])
        self.set_cell(self.cells["step"], self.steps)
        self.set_cell(self.cells["train"], int(train))
        self.set_cell(self.cells["image_offset"], self.image_offset)
        for name, wanted in phases:
            steps = getattr(self.plan, name)
            last_writer = {ref: i for i, step in enumerate(steps) for ref in step.writes if ref in wanted}
            done = {i: [r for r, j in last_writer.items() if j == i] for i in set(last_writer.values())}
            for i, (step, launch) in enumerate(zip(steps, self.launches[name])):
                if name == "forward" and labels is None and step.node in self.losses:
                    continue
                self.run([launch])
                for ref in done.get(i, ()):
                    if not self._finite(ref):
                        raise base.NonFiniteError(*wanted[ref], self.steps)

    def _load_inputs(self, images, labels) -> int:
        n = len(images)
        if n > self.batch or (labels is not None and n != self.batch):
            raise ValueError(f"the {self.backend} executor runs batches of {self.batch} "
                             f"(smaller ones for forward only), got {n}")
        if n == self.batch:  # a full batch goes as it is: the upload is its only copy
            padded = images
        else:
            padded = np.zeros((self.batch,) + images.shape[1:], np.float32)
            padded[:n] = images
        self.upload_input(self.plan.inputs[self.image_input], padded)
        self._load_labels(labels, n)
        return n

    def _load_labels(self, labels, n: int) -> None:
        if labels is not None:
            classes = self.g.nodes[self.label_input].shape[0]
            if len(labels) != n or labels.min() < 0 or labels.max() >= classes:
                raise ValueError(f"labels must be {n} class indices in [0, {classes})")
            self.upload_input(self.plan.inputs[self.label_input], np.ascontiguousarray(labels, np.int32))

    def _value(self, node: str) -> np.ndarray:
        return self.read(self.plan.values[node]).reshape((self.batch,) + tuple(self.g.nodes[node].shape))

    def _forward(self, images, labels, train):
        n = self._load_inputs(images, labels)
        with_loss = labels is not None and self.label_input is not None
        self._run(self.launches["forward"] if with_loss else self.inference, train)
        self._guard("forward", images, labels if with_loss else None, train)
        values = {}
        if self.keep_values:
            values = {node: self._value(node).copy() for node in self.plan.values
                      if node not in self.losses and node != self.label_input}
        if with_loss:
            values[self.label_input] = labels
            values |= {n: self.read(self.plan.values[n]).reshape(()).copy() for n in self.losses}
        return self._value(self.scores_node)[:n].copy(), values, None

    def _gradients(self, images, labels, train, with_metrics=False):
        scores, values, _ = self._forward(images, labels, train)
        self._run_backward(train)
        self._guard("backward", images, labels, train)
        grads = {name: self.read(ref).reshape(self.params[name].shape) for name, ref in self.plan.param_grads.items()}
        loss = self.total_loss(values)
        if not with_metrics:
            return loss, grads
        return loss, grads, REGISTRY[self.g.nodes[self.loss].kind].metrics(scores, labels)

    def gradients(self, images, labels, train: bool = True):
        loss, grads = super().gradients(images, labels, train)
        return loss, {name: np.array(grad) for name, grad in grads.items()}

    def step(self, images, labels) -> dict:
        """The SGD update runs as generated kernels: same rule, same float32 operations."""
        loss, _, metrics = self._gradients(self._images(images), self._labels(labels), True, with_metrics=True)
        self._clip_gradients()
        self._set_rates()
        self._run(self.launches["update"], True)
        self.steps += 1
        self._updated()
        if self.measure_norms:  # the gradient buffers still hold what the update read
            grads = {name: self.read(ref) for name, ref in self.plan.param_grads.items()}
            self.last_norms = step_norms(grads, self.params, self.velocity)
        return {"loss": float(loss), **metrics}

    def _clip_gradients(self) -> None:
        """Scales the gradient buffers the update kernels read, in place, when their global
        norm exceeds `clip` (base.Executor.step does the same to the reference's arrays)."""
        if not self.clip:
            return
        refs = list(self.plan.param_grads.values())
        grads = [self.read(ref) for ref in refs]
        scale = self._clip_scale(grads)
        if scale == 1.0:
            return
        for ref, grad in zip(refs, grads):
            if self.view(ref) is not None:
                grad *= np.float32(scale)
            else:
                self.upload(ref, grad * np.float32(scale))

    def _set_rates(self) -> None:
        for name, cells in self.rates.items():
            lr_mult, decay_mult = self.multipliers[name]
            lr = self.lr * lr_mult  # as base.step hands them to optimizer.sgd_update
            self.set_cell(cells["momentum"], self.momentum)
            self.set_cell(cells["lr"], lr)
            self.set_cell(cells["decay"], self.weight_decay * decay_mult * lr)

    def timed_step(self, images, labels) -> list[tuple[object, str, float]]:
        """One training step with every launch timed on its own: (plan step, phase, seconds)."""
        self._load_inputs(self._images(images), self._labels(labels))
        self._set_rates()
        timings = []
        for phase in ("forward", "backward", "update"):
            self.set_cell(self.cells["step"], self.steps)
            self.set_cell(self.cells["train"], 1)
            self.set_cell(self.cells["image_offset"], self.image_offset)
            for step, launch in zip(getattr(self.plan, phase), self.launches[phase]):
                started = time.perf_counter()
                self.run([launch])
                self.synchronize()
                timings.append((step, phase, time.perf_counter() - started))
        self.steps += 1
        self._updated()
        return timings

    # ---- the backend's roles ---------------------------------------------------------
    def _updated(self) -> None:
        """After an update: a backend whose weights are not host memory marks its copy stale."""

    def compile(self, source: str):
        raise NotImplementedError

    def allocate(self, device: str, nbytes: int):
        raise NotImplementedError

    def view(self, ref: TensorRef) -> np.ndarray | None:
        return None

    def upload(self, ref: TensorRef, array: np.ndarray) -> None:
        raise NotImplementedError

    def download(self, ref: TensorRef) -> np.ndarray:
        raise NotImplementedError

    def upload_input(self, ref: TensorRef, array: np.ndarray) -> None:
        """A batch's images or labels, before a pass (a device backend may stage them)."""
        self.upload(ref, array)

    def fill(self, ref: TensorRef, value: float) -> None:
        info = self.plan.tensors[ref]
        self.upload(ref, np.full(info.size, value, info.dtype))

    def make_cell(self, ctype: str):
        raise NotImplementedError

    def set_cell(self, cell, value) -> None:
        raise NotImplementedError

    def prepare(self, index: int, step: Call | Copy, sync):
        raise NotImplementedError

    def run(self, launches) -> None:
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait until every launch issued so far has finished."""


def _split(param: str) -> tuple[str, str]:
    layer, name = param.rsplit(".", 1)
    return layer, name


def _layer_and(param: str, what: str) -> tuple[str, str]:
    """("f5.fc", what naming "weight") for the parameter "f5.fc.weight"."""
    layer, name = _split(param)
    return layer, what.format(name)
