"""The CUDA executor: the step's generated CUDA, loaded with PyCUDA.

The same program as the cpu backend (`program.build_program`, target
"cuda"), run on GPUs. `devices` maps logical devices onto physical ones:
gpu<i> runs on devices[i % len(devices)], so `devices=[0, 1]` puts the
paper's two towers on two GPUs and `devices=[0]` puts both on one. Each
physical device gets its primary context, its own copy of the module and one
allocation per tensor, made once; each logical device gets a stream. A step
that reads a tensor another stream wrote waits on an event recorded after
that write, so the towers run concurrently and meet only at the transfers,
which are device-to-device copies (across GPUs through unified addressing).

Parameters and momentum live on the GPU; the host arrays of `ex.params` are
uploaded when they change (`set_params`, `load`) and refreshed after every
step, so the base class's save/load and the trainer see current weights.

This module imports PyCUDA lazily: without it, importing netdsl.runtime.cuda
raises ImportError, which is how `--backend auto` knows to look elsewhere.
"""
from __future__ import annotations

import numpy as np
import pycuda.driver as drv  # noqa: F401  (ImportError here means: no cuda backend)

from .. import rng
from ..layers import REGISTRY
from . import base
from .program import Copy, build_program

_CODES = {"float": "f", "int": "i", "int64_t": "q", "uint32_t": "I", "uint64_t": "Q"}
_NUMPY = {"float": np.float32, "int": np.int32, "int64_t": np.int64, "uint32_t": np.uint32, "uint64_t": np.uint64}


class _Place:
    """A physical GPU: its context and its copy of the module."""

    def __init__(self, ordinal: int, source: str):
        from pycuda.compiler import SourceModule
        self.context = drv.Device(ordinal).retain_primary_context()
        self.context.push()
        try:
            self.module = SourceModule(source, no_extern_c=True)
        finally:
            drv.Context.pop()

    def __enter__(self):
        self.context.push()
        return self

    def __exit__(self, *exc):
        drv.Context.pop()


class Executor(base.Executor):
    backend = "cuda"

    def __init__(self, graph, batch: int, seed: int = 0, dtype=np.float32, guard: bool = True,
                 devices: list[int] | None = None):
        super().__init__(graph, batch, seed, dtype, guard)
        drv.init()
        devices = list(devices or [0])
        physical = lambda logical: devices[int(logical[3:]) % len(devices)]  # "gpu<i>"
        self.program = build_program(graph, batch, "cuda", physical)
        source = self.program.module_text()
        self.places = {d: _Place(d, source) for d in sorted(set(devices))}
        self.place_of = {t.device: self.places[physical(t.device)] for t in self.program.tensors.values()}
        self.streams = {}
        for logical, place in self.place_of.items():
            with place:
                self.streams[logical] = drv.Stream()
        self.memory = self._allocate(physical)
        self.scalars = {"step": np.uint64(0), "train": np.int32(0)}
        self.rates: dict[str, dict[str, np.float32]] = {}
        self._params_changed()

    # ---- memory ----------------------------------------------------------
    def _allocate(self, physical) -> dict[str, object]:
        memory, arenas = {}, {}
        for logical, size in self.program.scratch.items():
            with self.place_of[logical]:
                arenas[logical] = drv.mem_alloc(max(size, 4))
        for name, spec in self.program.tensors.items():
            with self.place_of[spec.device]:
                if spec.role == "scratch":
                    memory[name] = int(arenas[spec.device]) + spec.offset
                    continue
                memory[name] = drv.mem_alloc(max(spec.nbytes, 4))
                if spec.fill is not None or spec.role not in ("param", "velocity"):
                    drv.memcpy_htod(memory[name], np.full(spec.size, spec.fill or 0, spec.dtype))
        self._arenas = arenas  # keep the scratch allocations alive
        return memory

    def _host(self, name: str) -> np.ndarray | None:
        role, _, key = name.partition(":")
        return {"param": self.params, "velocity": self.velocity}.get(role, {}).get(key)

    def _params_changed(self) -> None:
        """Upload the host weights and momentum (after set_params or load)."""
        for name in self.program.tensors:
            host = self._host(name)
            if host is not None:
                with self.place_of[self.program.tensors[name].device]:
                    drv.memcpy_htod(self.memory[name], np.ascontiguousarray(host))

    def _download(self, name: str, out: np.ndarray | None = None) -> np.ndarray:
        spec = self.program.tensors[name]
        out = np.empty(spec.size, spec.dtype) if out is None else out
        with self.place_of[spec.device]:
            drv.Context.synchronize()
            drv.memcpy_dtoh(out, self.memory[name])
        return out

    # ---- running -----------------------------------------------------------
    def _arguments(self, step) -> list:
        args = []
        for arg, tensor in zip(step.kernel.args, step.tensors):
            if tensor is not None:
                args.append(np.uintp(int(self.memory[tensor])))
            elif arg.scalar is None:
                args.append(_NUMPY[arg.ctype](arg.value))
            elif arg.scalar in ("key0", "key1"):
                args.append(np.uint32(rng.stream_key(self.seed, step.kernel.node)[arg.scalar == "key1"]))
            elif arg.scalar in self.scalars:
                args.append(self.scalars[arg.scalar])
            else:  # the SGD kernel's momentum, lr and decay for its parameter
                param = next(t for t in step.tensors if t and t.startswith("param:")).split(":", 1)[1]
                args.append(self.rates[param][arg.scalar])
        return args

    def _run(self, steps, train: bool) -> None:
        self.scalars["step"], self.scalars["train"] = np.uint64(self.steps), np.int32(train)
        written: dict[str, tuple[str, object]] = {}  # tensor -> (stream, event after its write)
        for step in steps:
            stream = self.streams[step.device]
            place = self.place_of[step.device]
            with place:
                for tensor in step.reads:
                    writer = written.get(tensor)
                    if writer is not None and writer[0] != step.device:
                        stream.wait_for_event(writer[1])
                if isinstance(step, Copy):
                    self._copy(step, stream)
                else:
                    kernel = step.kernel
                    function = place.module.get_function(kernel.name)
                    function(*self._arguments(step), grid=kernel.launch.grid, block=kernel.launch.block,
                             stream=stream)
                event = drv.Event()
                event.record(stream)
            for tensor in step.writes:
                written[tensor] = (step.device, event)
        for place in self.places.values():
            with place:
                drv.Context.synchronize()

    def _copy(self, step: Copy, stream) -> None:
        # With unified addressing a device-to-device copy also crosses GPUs (as a peer
        # copy); PyCUDA's memcpy_peer_async mishandles explicit contexts, so it is avoided.
        nbytes = self.program.tensors[step.src].nbytes
        drv.memcpy_dtod_async(self.memory[step.dst], self.memory[step.src], nbytes, stream)

    def _check_tensor(self, node: str, name: str, what: str) -> None:
        if self.guard:
            self._check(node, self._download(name), what)

    def _load_inputs(self, images, labels) -> int:
        n = len(images)
        if n > self.batch or (labels is not None and n != self.batch):
            raise ValueError(f"the cuda executor runs batches of {self.batch} (smaller ones for forward only)")
        padded = np.zeros((self.batch,) + images.shape[1:], np.float32)
        padded[:n] = images
        tensor = self.program.inputs[self.image_input]
        with self.place_of[self.program.tensors[tensor].device]:
            drv.memcpy_htod(self.memory[tensor], padded)
        if labels is not None:
            tensor = self.program.inputs[self.label_input]
            with self.place_of[self.program.tensors[tensor].device]:
                drv.memcpy_htod(self.memory[tensor], np.ascontiguousarray(labels, np.int32))
        return n

    def _forward(self, images, labels, train):
        n = self._load_inputs(images, labels)
        with_loss = labels is not None and self.label_input is not None
        steps = [s for s in self.program.forward if with_loss or s.node != self.loss]
        self._run(steps, train)
        for node in self.order:
            tensor = self.program.values.get(node)
            if tensor and self.g.nodes[node]["role"] == "layer" and (with_loss or node != self.loss):
                self._check_tensor(node, tensor, "the output")
        shape = (self.batch,) + tuple(self.g.nodes[self.scores_node]["shape"])
        scores = self._download(self.program.values[self.scores_node]).reshape(shape)[:n]
        values = {}
        if with_loss:
            values[self.loss] = self._download(self.program.values[self.loss]).reshape(())
        return scores, values, None

    def _gradients(self, images, labels, train, with_metrics=False):
        scores, values, _ = self._forward(images, labels, train)
        self._run(self.program.backward, train)
        for layer, tensor, what in self.program.grad_checks:
            self._check_tensor(layer, tensor, what)
        grads = {name: self._download(t).reshape(self.params[name].shape) for name, t in self.program.param_grads.items()}
        loss = values[self.loss]
        if not with_metrics:
            return loss, grads
        return loss, grads, REGISTRY[self.g.nodes[self.loss]["kind"]].metrics(scores, labels)

    def step(self, images, labels) -> dict:
        loss, _, metrics = self._gradients(self._images(images), self._labels(labels), True, with_metrics=True)
        for name in self.params:
            lr_mult, decay_mult = self.multipliers[name]
            lr = self.lr * lr_mult
            self.rates[name] = {"momentum": np.float32(self.momentum), "lr": np.float32(lr),
                                "decay": np.float32(self.weight_decay * decay_mult * lr)}
        self._run(self.program.update, True)
        self.steps += 1
        for name in self.params:  # keep the host copies current for save() and ex.params
            self._download(f"param:{name}", self.params[name].reshape(-1))
            self._download(f"velocity:{name}", self.velocity[name].reshape(-1))
        return {"loss": float(loss), **metrics}
