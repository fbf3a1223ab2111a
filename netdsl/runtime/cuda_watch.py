"""The guard's and gradient clipping's reductions on the GPU (templates/watch.j2).

Per physical device: a table of the watched tensors' addresses and sizes for
each group, uploaded once; a workspace of double partials (one per block) and
two totals (slot 0: the forward pass's watched tensors, slot 1: the parameter
gradients); and a pinned pair of doubles the totals are copied into, so the
host reads 16 bytes per device per step instead of every weight and gradient.

    loss     the main loss and every weight (after a forward pass with labels)
    scores   the scores and every weight (after a forward pass without)
    grads    every parameter gradient (after backward)

A sum of squares in double is finite exactly when every element is (see
watch.j2), so the same totals serve the guard and the clipping norm.
"""
from __future__ import annotations

import math

import numpy as np
import pycuda.driver as drv

from ..codegen.training import WATCH_THREADS
from ..step import TensorRef

# Partials per reduction: about two blocks per SM of an H100/H200 (132 SMs); the
# grid-stride loop makes any count correct.
WATCH_BLOCKS = 256
# each kernel's argument types (templates/watch.j2), for Function.prepare
KERNELS = {"sumsq": [np.uintp, np.uintp, np.int32, np.uintp], "total": [np.uintp, np.int32, np.uintp, np.int32],
           "gate": [np.uintp, np.uintp, np.float64, np.int32]}


class Watch:
    def __init__(self, ex):
        self.ex = ex
        self.closed = False  # several devices: the gate the host last uploaded is shut
        weights = [ref for _, _, ref in ex.watched_weights]
        groups = {"loss": [ex.plan.values[ex.loss]] + weights if ex.loss in ex.plan.values else [],
                  "scores": [ex.plan.values[ex.scores_node]] + weights,
                  "grads": [ref for _, _, ref in ex.watched_grads]}
        self.tables: dict[str, dict[str, tuple[object, int]]] = {}  # device -> group -> (table, count)
        self.workspace, self.totals, self.kernels = {}, {}, {}
        for device, place in ex.places.items():
            with place:
                self.workspace[device] = drv.mem_alloc((WATCH_BLOCKS + 2) * 8)
                self.totals[device] = drv.pagelocked_empty(2, np.float64)
                self.tables[device] = {name: self._table(device, refs) for name, refs in groups.items()}
                module = ex.module[device]
                self.kernels[device] = {name: module.get_function(f"netdsl_watch_{name}").prepare(types)
                                        for name, types in KERNELS.items()}

    def _table(self, device: str, refs: list[TensorRef]):
        mine = [ref for ref in refs if self.ex.plan.placement[self.ex.plan.tensors[ref].device] == device]
        table = np.array([self.ex._address(r) for r in mine] + [self.ex.plan.tensors[r].size for r in mine], np.uint64)
        memory = drv.mem_alloc(max(table.nbytes, 16))
        drv.memcpy_htod(memory, table)
        return memory, len(mine)

    def reduce(self, group: str, slot: int) -> None:
        """totals[slot] = the sum of squares of the group's tensors, on each device's main stream."""
        for device, place in self.ex.places.items():
            table, count = self.tables[device][group]
            kernels, stream = self.kernels[device], self.ex.device_stream(device)
            partials = int(self.workspace[device])
            with place:
                kernels["sumsq"].prepared_async_call((WATCH_BLOCKS, 1, 1), (WATCH_THREADS, 1, 1), stream,
                                                     int(table), int(table) + 8 * count, count, partials)
                kernels["total"].prepared_async_call((1, 1, 1), (1, 1, 1), stream,
                                                     partials, WATCH_BLOCKS, partials + 8 * WATCH_BLOCKS, slot)

    def gate(self, clip: float, guard: bool) -> None:
        """The update's gate from the totals: on the device where there is one device; with
        several, their totals meet on the host (one read each) and the gate is uploaded."""
        ex = self.ex
        if len(ex.places) == 1:
            (device, place), = ex.places.items()
            partials = int(self.workspace[device])
            with place:
                self.kernels[device]["gate"].prepared_async_call(
                    (1, 1, 1), (1, 1, 1), ex.device_stream(device), partials + 8 * WATCH_BLOCKS,
                    ex._address(ex.gate_of(device)), float(clip), int(guard))
            return
        if not guard and not clip:
            if self.closed:  # a step the guard stopped left it shut
                for device in ex.places:
                    ex.upload(ex.gate_of(device), np.ones(2, np.float32))
            self.closed = False
            return
        totals = self.settle()
        norm = math.sqrt(totals[1])
        finite = not guard or (math.isfinite(totals[0]) and math.isfinite(totals[1]))
        self.closed = not finite
        for device in ex.places:
            ex.upload(ex.gate_of(device), np.array([clip / norm if clip > 0 and norm > clip else 1.0,
                                                    1.0 if finite else 0.0], np.float32))

    def settle(self) -> np.ndarray:
        """Waits for each device once (its main stream, which joined every other) and returns
        the totals added over the devices."""
        ex = self.ex
        for device, place in ex.places.items():
            with place:
                drv.memcpy_dtoh_async(self.totals[device], int(self.workspace[device]) + 8 * WATCH_BLOCKS,
                                      ex.device_stream(device))
        for device, place in ex.places.items():
            with place:
                ex.device_stream(device).synchronize()
        return sum(self.totals.values())
