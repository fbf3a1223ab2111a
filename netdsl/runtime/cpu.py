"""The CPU executor: the step's generated C, built once, run through ctypes.

At construction the whole step is laid out (`program.build_program`, every
logical device on the one host, so transfers are aliases), rendered into one
translation unit, compiled (cached by source hash, `cbuild`) and every tensor
is allocated once: a numpy array per tensor, and scratch that each layer
keeps to itself, so backward finds the convolution columns forward made
still in place (about 1.6 GB per tower for AlexNet at batch 64). Each kernel
call is then bound once to a ctypes function and a tuple of ctypes
arguments, so a step is a loop of foreign calls with no allocation and no
argument conversion. Run-time scalars are ctypes objects shared by the
calls that take them and updated in place before a pass: dropout's `step` and
`train`, and each parameter's momentum, learning rate and decay for the SGD
kernels, which update the weights in one pass, exactly as the numpy rule.

The parameters and velocities the base class creates are the very arrays the
kernels read and write, so nothing is ever synced.

Batch sizes: the kernels are specialised for the construction batch. A
smaller batch in `forward`/`evaluate` (a last validation batch) is padded
with zero images to the full batch and the scores are cut back; rows never
mix in any layer, and the dropout mask of element i does not depend on the
batch size, so the real rows are exactly what a smaller batch would give.
Training steps take exactly the construction batch (the loss is a mean over it).

Returned arrays: `forward` and `gradients` return copies; `_gradients`
returns views of the gradient buffers, valid until the next pass.
"""
from __future__ import annotations

import ctypes
import time

import numpy as np

from .. import rng
from ..layers import REGISTRY
from . import base, cbuild
from .program import Copy, build_program

_SCALARS = {"float": ctypes.c_float, "int": ctypes.c_int, "int64_t": ctypes.c_int64,
            "uint32_t": ctypes.c_uint32, "uint64_t": ctypes.c_uint64}


class Executor(base.Executor):
    backend = "cpu"

    def __init__(self, graph, batch: int, seed: int = 0, dtype=np.float32, guard: bool = True,
                 copy_transfers: bool = False):
        """`copy_transfers` keeps every logical device's tensors apart and copies them at each
        transfer, as between two GPUs, instead of sharing them (tests of the device mapping)."""
        super().__init__(graph, batch, seed, dtype, guard)
        if self.dtype != np.float32:
            raise ValueError("the cpu backend computes in float32")
        placement = (lambda device: device) if copy_transfers else (lambda device: "host")
        self.program = build_program(graph, batch, "c", placement, share_scratch=False)
        self.library = cbuild.load(self.program.module_text())
        self.arrays = self._allocate()
        self._step, self._train = ctypes.c_uint64(0), ctypes.c_int(0)
        self._rates: dict[str, dict[str, ctypes.c_float]] = {}  # parameter -> its SGD scalars
        self.forward_calls = [self._bind(s) for s in self.program.forward]
        # forward without labels (prediction) stops before the loss layer
        self.inference_calls = [c for s, c in zip(self.program.forward, self.forward_calls) if s.node != self.loss]
        self.backward_calls = [self._bind(s) for s in self.program.backward]
        self.update_calls = [self._bind(s) for s in self.program.update]
        self.value_checks = self._value_checks()
        # What the guard watches every step (see _guard): (layer, what, array), arrays bound once.
        self.watched_weights = [(*_layer_and(name, "the {}"), array) for name, array in self.params.items()]
        self.watched_grads = [(*_layer_and(name, "the gradient of {}"), self.arrays[tensor])
                              for name, tensor in self.program.param_grads.items()]

    # ---- construction ------------------------------------------------------
    def _allocate(self) -> dict[str, np.ndarray]:
        """One array per tensor; parameters and velocities are the base class's own arrays."""
        arenas = {device: _aligned(size) for device, size in self.program.scratch.items()}
        owned = {"param": self.params, "velocity": self.velocity}
        arrays = {}
        for name, spec in self.program.tensors.items():
            if spec.role in owned:
                array = owned[spec.role][name.split(":", 1)[1]]
                if array.dtype != np.float32 or not array.flags.c_contiguous or array.size != spec.size:
                    raise ValueError(f"{name}: the array does not fit its kernels")
                arrays[name] = array.reshape(-1)
            elif spec.role == "scratch":
                arrays[name] = arenas[spec.device][spec.offset:spec.offset + spec.nbytes].view(spec.dtype)
            else:
                arrays[name] = np.full(spec.size, spec.fill or 0, spec.dtype)
        return arrays

    def _bind(self, step):
        """(function, arguments) for one step of the program."""
        if isinstance(step, Copy):  # only where transfers are kept apart
            return np.copyto, (self.arrays[step.dst], self.arrays[step.src])
        function = getattr(self.library, step.kernel.name)
        function.restype = None
        args, types = [], []
        for arg, tensor in zip(step.kernel.args, step.tensors):
            if tensor is not None:
                array = self.arrays[tensor]
                if array.size != arg.buffer.size or array.dtype != np.dtype(arg.buffer.dtype):
                    raise ValueError(f"{step.kernel.name}: {tensor} does not fit argument {arg.name}")
                args.append(ctypes.c_void_p(array.ctypes.data))
                types.append(ctypes.c_void_p)
                continue
            ctype = _SCALARS[arg.ctype]
            types.append(ctype)
            if arg.scalar is None:
                args.append(ctype(arg.value))
            elif arg.scalar in ("step", "train"):
                args.append(self._step if arg.scalar == "step" else self._train)
            elif arg.scalar in ("key0", "key1"):
                args.append(ctype(int(rng.stream_key(self.seed, step.kernel.node)[arg.scalar == "key1"])))
            else:  # momentum, lr, decay of the parameter this update writes
                param = next(t for t in step.tensors if t and t.startswith("param:")).split(":", 1)[1]
                args.append(self._rates.setdefault(param, {}).setdefault(arg.scalar, ctype(0)))
        function.argtypes = types
        return function, tuple(args)

    def _value_checks(self) -> list[tuple[str, np.ndarray]]:
        """Each forward layer's output once, in graph order (aliases checked at their producer)."""
        seen, checks = set(), []
        for node in self.order:
            tensor = self.program.values.get(node)
            if self.g.nodes[node]["role"] == "layer" and tensor and tensor not in seen:
                seen.add(tensor)
                checks.append((node, self.arrays[tensor]))
        return checks

    # ---- running -----------------------------------------------------------
    def _run(self, calls, train: bool) -> None:
        self._step.value = self.steps
        self._train.value = int(train)
        with single_threaded_blas():
            for function, args in calls:
                function(*args)

    @staticmethod
    def _finite(value) -> bool:
        # A sum is NaN or infinite when any element is, and costs one pass with no
        # temporary; only then (or on an overflow of finite values) look element-wise.
        return bool(np.isfinite(np.add.reduce(value, axis=None)) or np.isfinite(value).all())

    def _check(self, node, value, what) -> None:
        if self.guard and not self._finite(value):
            super()._check(node, value, what)

    def _guard(self, watched, with_loss: bool, with_grads: bool) -> None:
        """Checks only `watched`, (node, what, array) triples, each step: the weights with
        the loss or scores after forward, the weight gradients after backward. A
        non-finite value that can harm training shows there (one that a ReLU or
        max-pool drops cannot). Only then is every output, and every gradient, scanned
        in order to name the first layer that went bad, as the reference does;
        scanning them all every step costs a tenth of a CIFAR-net step."""
        bad = [(node, what) for node, what, array in watched if not self._finite(array)] if self.guard else []
        if not bad:
            return
        for node, array in self.value_checks:
            if with_loss or node != self.loss:
                self._check(node, array, "the output")
        for layer, tensor, what in self.program.grad_checks if with_grads else ():
            self._check(layer, self.arrays[tensor], what)
        raise base.NonFiniteError(*bad[0], self.steps)

    def _value(self, node: str) -> np.ndarray:
        return self.arrays[self.program.values[node]].reshape((self.batch,) + tuple(self.g.nodes[node]["shape"]))

    def _load_inputs(self, images, labels) -> int:
        n = len(images)
        if n > self.batch or (labels is not None and n != self.batch):
            raise ValueError(f"the cpu executor runs batches of {self.batch} "
                             f"(smaller ones for forward only), got {n}")
        image = self.arrays[self.program.inputs[self.image_input]].reshape((self.batch,) + images.shape[1:])
        image[:n] = images
        image[n:] = 0
        if labels is not None:
            classes = self.g.nodes[self.label_input]["shape"][0]
            if len(labels) != n or labels.min() < 0 or labels.max() >= classes:
                raise ValueError(f"labels must be {n} class indices in [0, {classes})")
            self.arrays[self.program.inputs[self.label_input]][...] = labels
        return n

    def _forward(self, images, labels, train):
        n = self._load_inputs(images, labels)
        with_loss = labels is not None and self.label_input is not None
        self._run(self.forward_calls if with_loss else self.inference_calls, train)
        final = self.loss if with_loss else self.scores_node
        watched = [(final, "the output", self.arrays[self.program.values[final]]), *self.watched_weights]
        self._guard(watched, with_loss, with_grads=False)
        values = {node: self._value(node) for node in self.program.values if node not in (self.loss, self.label_input)}
        if with_loss:
            values[self.label_input] = labels
            values[self.loss] = self.arrays[self.program.values[self.loss]].reshape(())
        return self._value(self.scores_node)[:n].copy(), values, None

    def _gradients(self, images, labels, train, with_metrics=False):
        scores, values, _ = self._forward(images, labels, train)
        self._run(self.backward_calls, train)
        self._guard(self.watched_grads, True, with_grads=True)
        grads = {name: self.arrays[tensor].reshape(self.params[name].shape)
                 for name, tensor in self.program.param_grads.items()}
        loss = values[self.loss].copy()
        if not with_metrics:
            return loss, grads
        return loss, grads, REGISTRY[self.g.nodes[self.loss]["kind"]].metrics(scores, labels)

    def gradients(self, images, labels, train: bool = True):
        loss, grads = super().gradients(images, labels, train)
        return loss, {name: grad.copy() for name, grad in grads.items()}

    def step(self, images, labels) -> dict:
        """The base class's step with the update in C: same rule, same float32 operations."""
        loss, _, metrics = self._gradients(self._images(images), self._labels(labels), True, with_metrics=True)
        self._set_rates()
        self._run(self.update_calls, True)
        self.steps += 1
        self._params_changed()
        return {"loss": float(loss), **metrics}

    def _set_rates(self) -> None:
        for name, scalars in self._rates.items():
            lr_mult, decay_mult = self.multipliers[name]
            lr = self.lr * lr_mult  # as base.step hands them to optimizer.sgd_update
            scalars["momentum"].value = self.momentum
            scalars["lr"].value = lr
            scalars["decay"].value = self.weight_decay * decay_mult * lr

    def timed_step(self, images, labels) -> list[tuple[object, str, float]]:
        """One training step with every launch timed on its own: (program step, phase, seconds)."""
        self._load_inputs(self._images(images), self._labels(labels))
        self._set_rates()
        timings = []
        for phase, steps, calls in (("forward", self.program.forward, self.forward_calls),
                                    ("backward", self.program.backward, self.backward_calls),
                                    ("update", self.program.update, self.update_calls)):
            self._step.value, self._train.value = self.steps, 1
            with single_threaded_blas():
                for step, (function, args) in zip(steps, calls):
                    started = time.perf_counter()
                    function(*args)
                    timings.append((step, phase, time.perf_counter() - started))
        self.steps += 1
        return timings


class single_threaded_blas:
    """Keeps OpenBLAS on the calling thread while kernels run: the generated matrix products
    split the work over OpenMP threads themselves, each calling BLAS on its own slab (see
    templates/gemm_c.j2). Other libraries (reference CBLAS, MKL under OpenMP) need nothing."""

    _functions = None

    def __enter__(self):
        if single_threaded_blas._functions is None:
            single_threaded_blas._functions = _openblas_thread_functions()
        self.saved = None
        if single_threaded_blas._functions:
            get, set_ = single_threaded_blas._functions
            self.saved = get()
            if self.saved != 1:
                set_(1)
        return self

    def __exit__(self, *exc):
        if self.saved not in (None, 1):
            single_threaded_blas._functions[1](self.saved)


def _openblas_thread_functions():
    """(get, set) of the linked OpenBLAS's thread count, whatever its symbol prefix and suffix."""
    blas = cbuild.find_blas()
    if blas is None:
        return ()
    library = ctypes.CDLL(str(blas.library))
    for prefix in ("scipy_openblas_", "openblas_"):
        for suffix in ("64_", ""):
            get = getattr(library, f"{prefix}get_num_threads{suffix}", None)
            set_ = getattr(library, f"{prefix}set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                set_.restype, set_.argtypes = None, [ctypes.c_int]
                return get, set_
    return ()


def _layer_and(param: str, what: str) -> tuple[str, str]:
    """("f5.fc", what naming "weight") for the parameter "f5.fc.weight"."""
    layer, name = param.rsplit(".", 1)
    return layer, what.format(name)


def _aligned(nbytes: int, alignment: int = 64) -> np.ndarray:
    """A byte array whose first element sits on a cache-line boundary."""
    raw = np.zeros(nbytes + alignment, np.uint8)
    start = -raw.ctypes.data % alignment
    return raw[start:start + nbytes]
