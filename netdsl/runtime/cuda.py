"""The cuda backend: the plan's generated CUDA, loaded with PyCUDA.

`devices` maps logical devices onto physical ones: gpu<i> runs on
devices[i % len(devices)], so `devices=[0, 1]` puts the paper's two towers on
two GPUs and `devices=[0]` puts both on one. The three roles (planned.py):

    allocator   one cuMemAlloc per physical device, of the arena the plan gives it;
                a tensor is the arena's address plus its planned offset
    compiler    PyCUDA's SourceModule (which caches cubins by source hash), once per GPU
    program     a stream per logical device; each launch waits for the events the
                schedule lists and records one where another stream waits on it;
                Copy steps are device-to-device copies on the sender's stream

The schedule pass decides every wait and event; this file derives none.

Parameters and momentum live on the GPU. The host arrays of `ex.params` are
uploaded when they change (`set_params`, `load`) and downloaded only when
read after an update (`params` and `velocity` are refreshed lazily), so a
training step moves no weights across PCIe.

This module imports PyCUDA lazily: without it, importing netdsl.runtime.cuda
raises ImportError, which is how `--backend auto` knows to look elsewhere.
"""
from __future__ import annotations

import numpy as np
import pycuda.driver as drv  # noqa: F401  (ImportError here means: no cuda backend)

from ..paths import cache_dir
from ..step import Copy, TensorRef
from .planned import PlannedExecutor

_NUMPY = {"float": np.float32, "int": np.int32, "int64_t": np.int64, "uint32_t": np.uint32, "uint64_t": np.uint64}


class _Place:
    """A physical GPU: its primary context, pushed while in use."""

    def __init__(self, ordinal: int):
        self.context = drv.Device(ordinal).retain_primary_context()

    def __enter__(self):
        self.context.push()
        return self

    def __exit__(self, *exc):
        drv.Context.pop()


class Executor(PlannedExecutor):
    backend = "cuda"
    target = "cuda"

    def __init__(self, graph, batch: int, seed: int = 0, dtype=np.float32, guard: bool = True,
                 devices: list[int] | None = None, keep_values: bool = False):
        drv.init()
        self.devices = list(devices or [0])
        self.places = {str(d): _Place(d) for d in sorted(set(self.devices))}
        self._stale = False
        placement = lambda logical: str(self.devices[int(logical[3:]) % len(self.devices)])  # "gpu<i>"
        super().__init__(graph, batch, seed, dtype, guard, placement, keep_values)

    # ---- compiler: one module per physical GPU -----------------------------------------
    def compile(self, source: str) -> dict:
        from pycuda.compiler import SourceModule
        modules = {}
        for name, place in self.places.items():
            with place:
                modules[name] = SourceModule(source, no_extern_c=True, cache_dir=str(cache_dir("cubins")))
        return modules

    # ---- allocator -----------------------------------------------------------------------
    def allocate(self, device: str, nbytes: int):
        with self.places[device]:
            return drv.mem_alloc(max(nbytes, 256))

    def _address(self, ref: TensorRef) -> int:
        arena = self.plan.arena_of(ref)
        return int(self.arenas[arena.device]) + arena.offsets[ref]

    def _place(self, ref: TensorRef) -> _Place:
        return self.places[self.plan.placement[self.plan.tensors[ref].device]]

    def upload(self, ref: TensorRef, array: np.ndarray) -> None:
        info = self.plan.tensors[ref]
        with self._place(ref):
            drv.memcpy_htod(self._address(ref), np.ascontiguousarray(array, info.dtype).reshape(-1))

    def download(self, ref: TensorRef) -> np.ndarray:
        info = self.plan.tensors[ref]
        out = np.empty(info.size, info.dtype)
        with self._place(ref):
            drv.Context.synchronize()
            drv.memcpy_dtoh(out, self._address(ref))
        return out

    # ---- program ---------------------------------------------------------------------------
    def make_cell(self, ctype: str):
        return np.zeros(1, _NUMPY[ctype])

    def set_cell(self, cell, value) -> None:
        cell[0] = value

    def prepare(self, index, step, sync):
        """A closure that issues the step on its stream, with the schedule's waits and event."""
        stream_device = step.src_device if isinstance(step, Copy) else step.device
        stream = self._stream(stream_device)
        place = self.places[self.plan.placement[stream_device]]
        waits = sync.waits if sync else ()
        event = None
        if sync and sync.record:
            with place:
                event = drv.Event()
        if isinstance(step, Copy):
            nbytes = self.plan.tensors[step.src].nbytes
            dst, src = self._address(step.dst), self._address(step.src)

            def issue():
                drv.memcpy_dtod_async(dst, src, nbytes, stream)
        else:
            function = self.module[self.plan.placement[step.device]].get_function(step.kernel.name)
            values = [np.uintp(self._address(v)) if isinstance(v, TensorRef) else v
                      for v in self.arguments(step)]
            types = [None if a.pointer else _NUMPY[a.ctype] for a in step.kernel.args]
            grid, block = step.kernel.launch.grid, step.kernel.launch.block

            def issue():
                args = [v if isinstance(v, np.uintp) else (v[0] if isinstance(v, np.ndarray) else t(v))
                        for v, t in zip(values, types)]
                function(*args, grid=grid, block=block, stream=stream)

        def launch():
            with place:
                for j in waits:
                    recorded = self._events.get(j)
                    if recorded is not None:  # not recorded: its step was not part of this run
                        stream.wait_for_event(recorded)
                issue()
                if event is not None:
                    event.record(stream)
                    self._events[index] = event
        return launch

    def _stream(self, logical: str):
        streams = self.__dict__.setdefault("_streams", {})
        if logical not in streams:
            with self.places[self.plan.placement[logical]]:
                streams[logical] = drv.Stream()
        return streams[logical]

    def run(self, launches) -> None:
        self._events = {}
        for launch in launches:
            launch()
        self.synchronize()

    def synchronize(self) -> None:
        for place in self.places.values():
            with place:
                drv.Context.synchronize()

    # ---- weights: on the GPU, fetched when the host reads them -----------------------------
    def _updated(self) -> None:
        self._stale = True

    def _fetch(self) -> None:
        if self._stale:
            self._stale = False
            for table, role in ((self._params, "param"), (self._velocity, "momentum")):
                for name, array in table.items():
                    layer, pname = name.rsplit(".", 1)
                    array.reshape(-1)[...] = self.download(TensorRef(layer, role, pname))

    @property
    def params(self):
        self._fetch()
        return self._params

    @params.setter
    def params(self, value):
        self._params = value

    @property
    def velocity(self):
        self._fetch()
        return self._velocity

    @velocity.setter
    def velocity(self, value):
        self._velocity = value

    def _params_changed(self) -> None:
        """Upload the host weights and momentum (after set_params or load)."""
        if not hasattr(self, "plan"):
            return  # during construction; _bind_persistent uploads them
        for table, role in ((self._params, "param"), (self._velocity, "momentum")):
            for name, array in table.items():
                layer, pname = name.rsplit(".", 1)
                self.upload(TensorRef(layer, role, pname), array)
