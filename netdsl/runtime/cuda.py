"""The cuda backend: the plan's generated CUDA, loaded with PyCUDA.

`devices` maps logical devices onto physical ones: gpu<i> runs on
devices[i % len(devices)], so `devices=[0, 1]` puts the paper's two towers on
two GPUs and `devices=[0]` puts both on one. The three roles (planned.py):

    allocator   one cuMemAlloc per physical device, of the arena the plan gives it;
                a tensor is the arena's address plus its planned offset
    compiler    PyCUDA's SourceModule (which caches cubins by source hash), once per GPU
    program     a stream per logical device; each launch waits for the events the
                schedule lists and records one where another stream waits on it;
                Copy steps are device-to-device copies on the sender's stream.
                Kernels are prepared once (their argument format) and launched
                with prepared_async_call; a pass pushes each context once

The schedule pass decides every wait and event within a phase; between phases
the streams join on the device (`join`), and a training step waits for the
device once, at its end (device_step.py: the guard and clipping run on the GPU).

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
from .device_step import DeviceStep
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


class Executor(DeviceStep, PlannedExecutor):
    backend = "cuda"
    target = "cuda"

    def __init__(self, graph, batch: int, seed: int = 0, dtype=np.float32, guard: bool = True,
                 devices: list[int] | None = None, keep_values: bool = False):
        drv.init()
        self.devices = list(devices or [0])
        self.places = {str(d): _Place(d) for d in sorted(set(self.devices))}
        self._stale = False
        self._events, self._joins, self._staging = {}, {}, {}
        placement = lambda logical: str(self.devices[int(logical[3:]) % len(self.devices)])  # "gpu<i>"
        super().__init__(graph, batch, seed, dtype, guard, placement, keep_values)
        from .cuda_watch import Watch
        self.watch = Watch(self)
        self._pinned: dict[TensorRef, np.ndarray] = {}

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
        return self.download_many([ref])[0]

    def download_many(self, refs) -> list[np.ndarray]:
        """Copies after everything issued so far, waiting once per device involved."""
        self.join()
        outs, streams = [], {}
        for ref in refs:
            info = self.plan.tensors[ref]
            outs.append(np.empty(info.size, info.dtype))
            stream = self._main_stream(ref)
            with self._place(ref):
                drv.memcpy_dtoh_async(outs[-1], self._address(ref), stream)
            streams[self.plan.placement[info.device]] = stream
        for device, stream in streams.items():
            with self.places[device]:
                stream.synchronize()
        return outs

    def _main_stream(self, ref: TensorRef):
        return self.device_stream(self.plan.placement[self.plan.tensors[ref].device])

    def device_stream(self, physical: str):
        """The stream of the first logical device placed on `physical`: after a join it has
        waited for every stream, so work queued on it sees the whole step so far."""
        return self._stream(min(d for d, p in self.plan.placement.items() if p == physical))

    def gate_of(self, physical: str) -> TensorRef:
        return TensorRef("gate", "status", physical)

    def read_later(self, ref: TensorRef) -> np.ndarray:
        """A pinned array the tensor is copied into after what was issued so far (call after a
        join); its contents are valid once the step's final read has waited."""
        info = self.plan.tensors[ref]
        if ref not in self._pinned:
            with self._place(ref):
                self._pinned[ref] = drv.pagelocked_empty(info.size, info.dtype)
        with self._place(ref):
            drv.memcpy_dtoh_async(self._pinned[ref], self._address(ref), self._main_stream(ref))
        return self._pinned[ref]

    def upload_input(self, ref: TensorRef, array: np.ndarray) -> None:
        """A batch goes through a pinned staging buffer, asynchronously; the previous pass's
        final read has waited for the device, so the buffer is free to refill."""
        info = self.plan.tensors[ref]
        staging = self._staging.get(ref)
        if staging is None:
            with self._place(ref):
                staging = self._staging[ref] = drv.pagelocked_empty(info.size, info.dtype)
        staging[...] = np.asarray(array, info.dtype).reshape(-1)
        with self._place(ref):
            drv.memcpy_htod_async(self._address(ref), staging, self._main_stream(ref))
        self.join()

    # ---- program ---------------------------------------------------------------------------
    def make_cell(self, ctype: str):
        return np.zeros(1, _NUMPY[ctype])

    def set_cell(self, cell, value) -> None:
        cell[0] = value

    def prepare(self, index, step, sync):
        """(place, issue) for one step: issue() puts it on its stream, after the schedule's
        waits, recording its event; `run` pushes the place's context once for many."""
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
            # prepare() fixes the argument format once; a launch only packs the values
            function.prepare([np.uintp if a.pointer else _NUMPY[a.ctype] for a in step.kernel.args])
            values = [int(self._address(v)) if isinstance(v, TensorRef) else v for v in self.arguments(step)]
            cells = [(i, v) for i, v in enumerate(values) if isinstance(v, np.ndarray)]
            grid, block = step.kernel.launch.grid, step.kernel.launch.block

            def issue():
                for i, cell in cells:  # a cell's value as set for this pass
                    values[i] = cell[0]
                function.prepared_async_call(grid, block, stream, *values)

        def launch():
            for j in waits:
                recorded = self._events.get(j)
                if recorded is not None:  # not recorded: its step was not part of this pass
                    stream.wait_for_event(recorded)
            issue()
            if event is not None:
                event.record(stream)
                self._events[index] = event
        return place, launch

    def _stream(self, logical: str):
        streams = self.__dict__.setdefault("_streams", {})
        if logical not in streams:
            with self.places[self.plan.placement[logical]]:
                streams[logical] = drv.Stream()
                self._joins[logical] = drv.Event()
        return streams[logical]

    def run(self, launches) -> None:
        """Issues the launches; nothing waits for them here (see `join` and `read_back`)."""
        current = None
        try:
            for place, launch in launches:
                if place is not current:
                    if current is not None:
                        current.__exit__()
                    current = place.__enter__()
                launch()
        finally:
            if current is not None:
                current.__exit__()

    def join(self) -> None:
        """Every stream waits, on the device, for what every other stream has issued so far:
        the phases follow each other with no host synchronisation (the schedule orders
        streams within a phase only). The step events before it are then redundant."""
        streams = self.__dict__.get("_streams", {})
        for logical, stream in streams.items():
            with self.places[self.plan.placement[logical]]:
                self._joins[logical].record(stream)
        for logical, stream in streams.items():
            with self.places[self.plan.placement[logical]]:
                for other in streams:
                    if other != logical:
                        stream.wait_for_event(self._joins[other])
        self._events = {}

    def synchronize(self) -> None:
        for place in self.places.values():
            with place:
                drv.Context.synchronize()
        self._events = {}

    # ---- weights: on the GPU, fetched when the host reads them -----------------------------
    def _updated(self) -> None:
        self._stale = True

    def _fetch(self) -> None:
        if self._stale:
            self._stale = False
            arrays, refs = [], []
            for table, role in ((self._params, "param"), (self._velocity, "momentum")):
                for name, array in table.items():
                    layer, pname = name.rsplit(".", 1)
                    arrays.append(array)
                    refs.append(TensorRef(layer, role, pname))
            for array, value in zip(arrays, self.download_many(refs)):
                array.reshape(-1)[...] = value

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
        """Upload the host weights and momentum (after set_params or load); a forward-only
        plan (validation's twin, train/inference.py) has no momentum to upload."""
        if not hasattr(self, "plan"):
            return  # during construction; _bind_persistent uploads them
        for table, role in ((self._params, "param"), (self._velocity, "momentum")):
            for name, array in table.items():
                layer, pname = name.rsplit(".", 1)
                ref = TensorRef(layer, role, pname)
                if ref in self.plan.tensors:
                    self.upload(ref, array)
