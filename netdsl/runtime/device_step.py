"""A training step whose host work is issuing launches and one read at the end.

For a backend whose memory is not the host's (cuda): a mixin placed before
PlannedExecutor. A step issues, in order and without waiting:

    inputs        staged and copied asynchronously
    forward       then a copy of the losses into pinned memory, the top-1/top-5 error
                  counts (watch.j2; the scores themselves only where asked for), and
                  the guard's sum of squares of the loss and every weight (slot 0)
    backward      then the sum of squares of every parameter gradient (slot 1)
    gate          the update's gradient scale (clipping) and whether to update at all
    update        the SGD kernels, which read the gate
    flow          with `measure_norms` (the trainer's per-layer gradient flow): each
                  parameter tensor's three sums of squares, after the update (watch.j2)
    read          the totals (four doubles, and three per parameter tensor with the flow),
                  into pinned memory, in one copy; one wait per device

with a `join` between phases (streams wait for each other on the device). The
host then looks at the two totals: only when one is not finite does the guard's
slow path run (planned.py's `_find_first_bad`, which reruns the pass call by
call and names the first bad layer); the gate kept the weights and momentum as
they were, so the step raises as it would have before updating. No weight or
gradient crosses to the host; `gradients()` reads the gradients after the wait.
With the flow measured, `last_norms` is then what optimizer.step_norms gives
the host backends: {param: (||gradient as applied||, ||momentum||, ||weight||)}.

The backend supplies `join()`, `read_later(ref)` (an array filled once the
step's read has waited) and `watch` (cuda_watch.Watch: `reduce`, `gate`,
`settle`). `keep_values` executors (tests reading every layer) keep the host path.

`step_crops(crops, labels, upcoming)` is `step` for a batch the host left as
uint8 crops (augment.Crops, after `feed_crops` set up the mean and the kernel
once): the inputs stage is then cuda_feed.Feed's augmentation kernel, and the
rest of the step is the same; `upcoming`, the next batch, is uploaded once the
step is issued, before its final read, so its transfer overlaps the step. `takes_crops` tells the trainer to send them.
"""
from __future__ import annotations

import math

import numpy as np

from ..data.augment import Crops
from ..layers import REGISTRY
from . import base


class DeviceStep:
    takes_crops = True
    feed = None

    def feed_crops(self, mean: np.ndarray | None, scale: float, size: int, lighting: bool) -> None:
        """Training batches as uint8 crops from now on: mean image (None: not subtracted)
        of the `size`-pixel prepared images, input scale, whether batches carry lighting."""
        from .cuda_feed import Feed
        self.feed = Feed(self, mean, scale, size, lighting)

    def step_crops(self, crops: Crops, labels, upcoming: Crops | None = None) -> dict:
        """`upcoming`: the next step's batch, uploaded while this step runs."""
        labels = self._labels(labels)
        self._upcoming = upcoming
        try:
            _, values, metrics = self._pass(crops, labels, True, backward=True, update=True)
        finally:
            self._upcoming = None
        self.steps += 1
        self._updated()
        return {"loss": float(self.total_loss(values)), **metrics}

    def _load_inputs(self, images, labels) -> int:
        if not isinstance(images, Crops):
            return super()._load_inputs(images, labels)
        if self.feed is None:
            raise RuntimeError("call feed_crops() before stepping on uint8 crops")
        n = self.feed.load(images)
        self._load_labels(labels, n)
        return n

    def _forward(self, images, labels, train):
        if self.keep_values:
            return super()._forward(images, labels, train)
        scores, values, _ = self._pass(images, labels, train, scores=True)
        return scores, values, None

    def _gradients(self, images, labels, train, with_metrics=False):
        if self.keep_values:
            return super()._gradients(images, labels, train, with_metrics)
        _, values, metrics = self._pass(images, labels, train, backward=True)
        names = list(self.plan.param_grads)
        arrays = self.download_many([self.plan.param_grads[name] for name in names])
        grads = {name: array.reshape(self.params[name].shape) for name, array in zip(names, arrays)}
        loss = self.total_loss(values)
        return (loss, grads, metrics) if with_metrics else (loss, grads)

    def step(self, images, labels) -> dict:
        if self.keep_values:
            return super().step(images, labels)
        images, labels = self._images(images), self._labels(labels)
        _, values, metrics = self._pass(images, labels, True, backward=True, update=True)
        self.steps += 1
        self._updated()
        return {"loss": float(self.total_loss(values)), **metrics}

    def _pass(self, images, labels, train: bool, backward: bool = False, update: bool = False,
              scores: bool = False):
        """(scores when asked for, else None; the losses by node; the metrics with labels)."""
        n = self._load_inputs(images, labels)
        with_loss = labels is not None and self.label_input is not None
        self._run(self.launches["forward"] if with_loss else self.inference, train)
        self.join()
        # the scores and losses die with the forward pass (the memory plan reuses their bytes)
        counted = with_loss and not scores and self.watch.errors_on_device()
        wanted = ([] if counted else [self.scores_node]) + (list(self.losses) if with_loss else [])
        later = {node: self.read_later(self.plan.values[node]) for node in wanted}
        counts = self.watch.errors() if counted else None
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
        flow = update and self.measure_norms
        if flow:
            self.watch.measure_flow()
        if getattr(self, "_upcoming", None) is not None:  # everything is issued: the next batch's turn
            self.feed.send_ahead(self._upcoming)
        per_device = self.watch.settle(flow)
        totals = sum(per_device.values())
        if self.guard:
            bad = "forward" if not math.isfinite(totals[0]) else (
                "backward" if backward and not math.isfinite(totals[1]) else None)
            if bad:
                self._name_the_bad_layer(bad, images, labels if with_loss else None, train, later)
        if clipping:
            self.grad_norm = math.sqrt(totals[1])
        if flow:
            self.last_norms = self.watch.norms()
        if self.scores_node in later:
            shape = (self.batch,) + tuple(self.g.nodes[self.scores_node].shape)
            scores = later.pop(self.scores_node).reshape(shape)[:n].copy()
        else:
            scores = None
        values, metrics = {}, None
        if with_loss:
            values = {self.label_input: labels} | {node: a.reshape(()).copy() for node, a in later.items()}
            if counted:  # whole counts over the batch: the same division as numpy's mean of booleans
                metrics = {"top1_error": float(per_device[counts][2]) / n, "top5_error": float(per_device[counts][3]) / n}
            else:
                metrics = REGISTRY[self.g.nodes[self.loss].kind].metrics(scores, labels)
        return scores, values, metrics

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
