"""The cuda backend's plan, run on the CPU: the generated CUDA of the whole
training step under the thread emulator (tests/codegen/cuda_emulator.py),
with host arenas at the planned offsets.

Everything the cuda backend does except PyCUDA's calls is the shared
executor's (planned.py), so this runs the same lowering, memory plan and
schedule. The streams are not run in program order: each pass issues the
steps of the highest-numbered logical device first, as far as the
schedule's waits allow, then the next one, so a missing wait (a read before
another stream's write lands, or bytes reused while another stream still
reads them) shows up as a wrong number.
"""
from __future__ import annotations

import numpy as np
from cuda_emulator import Emulator, poisoned

from netdsl.runtime.planned import PlannedExecutor
from netdsl.passes.schedule import stream_of
from netdsl.step import Copy, TensorRef


class EmulatedCudaExecutor(PlannedExecutor):
    backend = "emulated-cuda"
    target = "cuda"

    def __init__(self, graph, batch, seed=0, folder=None, keep_values=False, devices=("gpu0", "gpu1")):
        self.folder = folder
        physical = {f"gpu{i}": str(d) for i, d in enumerate(devices)}
        super().__init__(graph, batch, seed, placement=lambda logical: physical.get(logical, logical),
                         keep_values=keep_values)
        self.issued: list[int] = []  # step indices in the order they ran, for the tests

    def compile(self, source):
        return Emulator(source, self.folder)

    def allocate(self, device, nbytes):
        return poisoned(max(nbytes, 256))

    def view(self, ref: TensorRef):
        info, arena = self.plan.tensors[ref], self.plan.arena_of(ref)
        offset = arena.offsets[ref]
        return self.arenas[arena.device][offset:offset + info.nbytes].view(info.dtype)

    def upload(self, ref, array):
        self.view(ref)[...] = np.asarray(array).reshape(-1)

    def download(self, ref):
        return self.view(ref).copy()

    def make_cell(self, ctype):
        return [0]

    def set_cell(self, cell, value):
        cell[0] = value

    def prepare(self, index, step, sync):
        if isinstance(step, Copy):
            dst, src = self.view(step.dst), self.view(step.src)
            issue = lambda: np.copyto(dst, src)
        else:
            values = self.arguments(step)
            buffers = {a.buffer.name: self.view(v) for a, v in zip(step.kernel.args, values) if isinstance(v, TensorRef)}

            def issue():
                scalars = {a.scalar: (v[0] if isinstance(v, list) else v)
                           for a, v in zip(step.kernel.args, values) if a.scalar is not None}
                self.module.launch(step.kernel, buffers, scalars)
        return index, stream_of(step), (sync.waits if sync else ()), issue

    def run(self, launches):
        """Each stream in turn, last device first, as far as its waits allow."""
        queues: dict[str, list] = {}
        for launch in launches:
            queues.setdefault(launch[1], []).append(launch)
        present = {launch[0] for launch in launches}
        done: set[int] = set()
        while any(queues.values()):
            progressed = False
            for stream in sorted(queues, reverse=True):
                queue = queues[stream]
                while queue and all(j in done or j not in present for j in queue[0][2]):
                    index, _, _, issue = queue.pop(0)
                    issue()
                    done.add(index)
                    self.issued.append(index)
                    progressed = True
            if not progressed:
                raise RuntimeError("the schedule deadlocks: every stream waits for another")
