"""A training step whose host work is issuing launches and one read at the end.

For a backend whose memory is not the host's (cuda): a mixin placed before
PlannedExecutor. A step issues, in order and without waiting:

    inputs        staged and copied asynchronously
    forward       then a copy of the scores and losses into pinned memory, and the
                  guard's sum of squares of the loss and every weight (slot 0)
    backward      then the sum of squares of every parameter gradient (slot 1)
    gate          the update's gradient scale (clipping) and whether to update at all
    update        the SGD kernels, which read the gate
    read          the totals, into pinned memory; one wait per device

with a `join` between phases (streams wait for each other on the device). The
host then looks at the two totals: only when one is not finite does the guard's
slow path run (planned.py's `_find_first_bad`, which reruns the pass call by
call and names the first bad layer); the gate kept the weights and momentum as
they were, so the step raises as it would have before updating. No weight or
gradient crosses to the host; `gradients()` reads the gradients after the wait.

The backend supplies `join()`, `read_later(ref)` (an array filled once the
step's read has waited) and `watch` (cuda_watch.Watch: `reduce`, `gate`,
`settle`). `keep_values` executors (tests reading every layer) keep the host path.
"""
from __future__ import annotations

import math

import numpy as np

from ..layers import REGISTRY
from . import base


class DeviceStep:
    def _forward(self, images, labels, train):
        if self.keep_values:
            return super()._forward(images, labels, train)
        scores, values = self._pass(images, labels, train)
        return scores, values, None

    def _gradients(self, images, labels, train, with_metrics=False):
        if self.keep_values:
            return super()._gradients(images, labels, train, with_metrics)
        scores, values = self._pass(images, labels, train, backward=True)
        names = list(self.plan.param_grads)
        arrays = self.download_many([self.plan.param_grads[name] for name in names])
        grads = {name: array.reshape(self.params[name].shape) for name, array in zip(names, arrays)}
        loss = self.total_loss(values)
        if not with_metrics:
            return loss, grads
        return loss, grads, REGISTRY[self.g.nodes[self.loss].kind].metrics(scores, labels)

    def step(self, images, labels) -> dict:
        if self.keep_values:
            return super().step(images, labels)
        images, labels = self._images(images), self._labels(labels)
        scores, values = self._pass(images, labels, True, backward=True, update=True)
        metrics = REGISTRY[self.g.nodes[self.loss].kind].metrics(scores, labels)
        self.steps += 1
        self._updated()
        return {"loss": float(self.total_loss(values)), **metrics}

    def _pass(self, images, labels, train: bool, backward: bool = False, update: bool = False):
        n = self._load_inputs(images, labels)
        with_loss = labels is not None and self.label_input is not None
        self._run(self.launches["forward"] if with_loss else self.inference, train)
        self.join()
        # the scores and losses die with the forward pass (the memory plan reuses their bytes)
        later = {node: self.read_later(self.plan.values[node])
                 for node in [self.scores_node, *(self.losses if with_loss else ())]}
        if self.guard:
            self.watch.reduce("loss" if with_loss else "scores", 0)
        self.join()
        clipping = update and self.clip > 0
        if backward:
            self._run_backward(train)
            self.join()
            if self.guard or clipping:
                self.watch.reduce("grads", 1)
        if update:  # the gate is written every step: a stopped step may have left it shut
            self.watch.gate(self.clip if clipping else 0.0, self.guard)
            self.join()
            self._set_rates()
            self._run(self.launches["update"], True)
            self.join()
        totals = self.watch.settle()
        if self.guard:
            bad = "forward" if not math.isfinite(totals[0]) else (
                "backward" if backward and not math.isfinite(totals[1]) else None)
            if bad:
                self._name_the_bad_layer(bad, images, labels if with_loss else None, train, later)
        if clipping:
            self.grad_norm = math.sqrt(totals[1])
        scores = later.pop(self.scores_node).reshape((self.batch,) + tuple(self.g.nodes[self.scores_node].shape))
        values = {}
        if with_loss:
            values = {self.label_input: labels} | {node: a.reshape(()).copy() for node, a in later.items()}
        return scores[:n].copy(), values

    def _name_the_bad_layer(self, phase: str, images, labels, train: bool, later: dict) -> None:
        """The slow path, as the host guard's: the watched tensors that are not finite (the
        weights and gradients are as the pass left them, the gate having kept the update
        from running; the output is the copy read after forward), then the rerun call by
        call, which raises at the first bad layer; else the first of those tensors."""
        watched = self._watched(phase, labels)
        bad = [(node, what) for node, what, ref in watched
               if not (np.isfinite(later[node]).all() if what == "the output" else self._finite(ref))]
        self._find_first_bad(phase, images, labels, train)
        raise base.NonFiniteError(*(bad or [watched[0][:2]])[0], self.steps)
