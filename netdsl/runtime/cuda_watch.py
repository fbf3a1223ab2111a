"""The guard's, gradient clipping's and gradient flow's reductions on the GPU
(templates/watch.j2).

Per physical device: a table of the watched tensors' addresses and sizes for
each group, uploaded once; a workspace of double partials (one per block) and
four totals (slot 0: the forward pass's watched tensors, slot 1: the parameter
gradients, slots 2 and 3: the top-1 and top-5 errors' counts); and four pinned
doubles the totals are copied into, so the host reads 32 bytes per device per
step instead of every weight, gradient and score.

    loss     the main loss and every weight (after a forward pass with labels)
    scores   the scores and every weight (after a forward pass without)
    grads    every parameter gradient (after backward)

A sum of squares in double is finite exactly when every element is (see
watch.j2), so the same totals serve the guard and the clipping norm.

Per-layer gradient flow (train/gradient_flow.py; only when the executor's
`measure_norms` is set, as the trainer sets it): after the update, two more
launches per device that holds parameters (netdsl_watch_flow, then
netdsl_watch_flow_total) put each of its parameter tensors' three sums of
squares (the gradient as applied, the momentum buffer, the updated weight)
right after the four totals, and the step's one copy grows by 24 bytes per
parameter tensor (LeNet's 10 tensors: 240 bytes; the two-GPU AlexNet's 30:
384 bytes from gpu0's 16, 336 from gpu1's 14). Still one copy and one wait per
device. The kernel reads each parameter's gradient, momentum and weight once,
12 bytes per parameter: less than the update itself moves (12 bytes read, 8
written). Each tensor gets blocks in proportion to its size (FLOW_ELEMENTS per
block, one to WATCH_BLOCKS): a bias costs one block, a matrix of a million
elements or more gets 256.
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
           "gate": [np.uintp, np.uintp, np.float64, np.int32], "errors": [np.uintp, np.uintp, np.int32, np.int32, np.uintp],
           "flow": [np.uintp, np.int32, np.uintp, np.uintp], "flow_total": [np.uintp, np.int32, np.uintp, np.uintp]}
TOTALS = 4
# Elements per block of the flow kernel: 16 per thread of a 256-thread block.
FLOW_ELEMENTS = 4096


def flow_table(addresses: list[list[int]], sizes: list[int]) -> tuple[np.ndarray, int]:
    """watch.j2's flow table (int64) and its grid: the gradients', momenta's and weights'
    addresses, the sizes, each tensor's first block (and the grid size), each block's tensor."""
    per_tensor = [min(WATCH_BLOCKS, -(-size // FLOW_ELEMENTS)) for size in sizes]
    first = np.concatenate([[0], np.cumsum(per_tensor, dtype=np.int64)])
    owner = np.repeat(np.arange(len(sizes)), per_tensor)
    table = np.concatenate([*addresses, sizes, first, owner]).astype(np.int64)
    return table, int(first[-1])


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
        self.flow: dict[str, tuple[object, list[str], int]] = {}  # device -> (table, tensor names, blocks)
        # optimizer.step_norms' order: the parameters that have a gradient (read now: later,
        # ex.params would fetch every weight from the device)
        self.flow_order = [name for name in ex.params if name in ex.plan.param_grads]
        for device, place in ex.places.items():
            with place:
                self.flow[device] = self._flow_table(device)
                names, blocks = self.flow[device][1:]
                # partials, the totals (the four, then three per parameter tensor), the flow's partials
                words = WATCH_BLOCKS + TOTALS + 3 * len(names) + 3 * blocks
                self.workspace[device] = drv.mem_alloc(words * 8)
                drv.memcpy_htod(self.workspace[device], np.zeros(words))  # totals not yet written read 0
                self.totals[device] = drv.pagelocked_empty(TOTALS + 3 * len(names), np.float64)
                self.tables[device] = {name: self._table(device, refs) for name, refs in groups.items()}
                module = ex.module[device]
                self.kernels[device] = {name: module.get_function(f"netdsl_watch_{name}").prepare(types)
                                        for name, types in KERNELS.items()}

    def _table(self, device: str, refs: list[TensorRef]):
        mine = [ref for ref in refs if self._on(device, ref)]
        table = np.array([self.ex._address(r) for r in mine] + [self.ex.plan.tensors[r].size for r in mine], np.uint64)
        memory = drv.mem_alloc(max(table.nbytes, 16))
        drv.memcpy_htod(memory, table)
        return memory, len(mine)

    def _flow_table(self, device: str):
        """The flow kernel's table of this device's parameter tensors (watch.j2)."""
        ex = self.ex
        names = [name for name in self.flow_order if self._on(device, ex.plan.param_grads[name])]
        split = [name.rsplit(".", 1) for name in names]
        refs = [[ex.plan.param_grads[name] for name in names]] + [
            [TensorRef(layer, role, pname) for layer, pname in split] for role in ("momentum", "param")]
        table, blocks = flow_table([[ex._address(r) for r in group] for group in refs],
                                   [ex.plan.tensors[ref].size for ref in refs[0]])
        memory = drv.mem_alloc(max(table.nbytes, 16))
        drv.memcpy_htod(memory, table)
        return memory, names, blocks

    def _on(self, device: str, ref: TensorRef) -> bool:
        return self.ex.plan.placement[self.ex.plan.tensors[ref].device] == device

    def measure_flow(self) -> None:
        """Each parameter tensor's three sums of squares (gradient as applied, momentum, weight)
        into the totals after the four, on each device's main stream, after the update."""
        ex = self.ex
        for device, place in ex.places.items():
            table, names, blocks = self.flow[device]
            if not names:
                continue
            kernels, stream = self.kernels[device], ex.device_stream(device)
            totals = int(self.workspace[device]) + 8 * WATCH_BLOCKS
            partials = totals + 8 * (TOTALS + 3 * len(names))
            with place:
                kernels["flow"].prepared_async_call((blocks, 1, 1), (WATCH_THREADS, 1, 1), stream, int(table),
                                                    len(names), ex._address(ex.gate_of(device)), partials)
                kernels["flow_total"].prepared_async_call((1, 1, 1), (WATCH_THREADS, 1, 1), stream, int(table),
                                                          len(names), partials, totals)

    def norms(self) -> dict[str, tuple[float, float, float]]:
        """{param: (||gradient||, ||update||, ||weight||)} from the totals the last
        `settle(flow=True)` read, in the order of optimizer.step_norms."""
        found = {}
        for device, (_, names, _) in self.flow.items():
            sums = self.totals[device][TOTALS:TOTALS + 3 * len(names)].reshape(-1, 3)
            found |= {name: tuple(math.sqrt(s) for s in row) for name, row in zip(names, sums.tolist())}
        return {name: found[name] for name in self.flow_order}

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

    def errors_on_device(self) -> bool:
        """softmax_loss's metrics, with the scores and the labels on one device."""
        ex = self.ex
        where = {ex.plan.placement[ex.plan.tensors[ref].device]
                 for ref in (ex.plan.values[ex.scores_node], ex.plan.inputs[ex.label_input])}
        return ex.g.nodes[ex.loss].kind == "softmax_loss" and len(where) == 1

    def errors(self) -> str:
        """totals[2], totals[3]: how many rows the top-1 and top-5 answers get wrong."""
        ex = self.ex
        scores, labels = ex.plan.values[ex.scores_node], ex.plan.inputs[ex.label_input]
        device = ex.plan.placement[ex.plan.tensors[scores].device]
        totals = int(self.workspace[device]) + 8 * WATCH_BLOCKS
        with ex.places[device]:
            self.kernels[device]["errors"].prepared_async_call(
                (1, 1, 1), (WATCH_THREADS, 1, 1), ex.device_stream(device), ex._address(scores),
                ex._address(labels), ex.batch, ex.g.nodes[ex.scores_node].shape[0], totals)
        return device

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
        totals = sum(self.settle().values())
        norm = math.sqrt(totals[1])
        finite = not guard or (math.isfinite(totals[0]) and math.isfinite(totals[1]))
        self.closed = not finite
        for device in ex.places:
            ex.upload(ex.gate_of(device), np.array([clip / norm if clip > 0 and norm > clip else 1.0,
                                                    1.0 if finite else 0.0], np.float32))

    def settle(self, flow: bool = False) -> dict[str, np.ndarray]:
        """Waits for each device once (its main stream, which joined every other) and returns
        each device's four totals; with `flow`, the same copy brings the flow's sums (`norms`)."""
        ex = self.ex
        for device, place in ex.places.items():
            totals = self.totals[device] if flow else self.totals[device][:TOTALS]
            with place:
                drv.memcpy_dtoh_async(totals, int(self.workspace[device]) + 8 * WATCH_BLOCKS, ex.device_stream(device))
        for device, place in ex.places.items():
            with place:
                ex.device_stream(device).synchronize()
        return {device: totals[:TOTALS].copy() for device, totals in self.totals.items()}
