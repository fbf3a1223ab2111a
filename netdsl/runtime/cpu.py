"""The cpu backend: the plan's generated C, built once, run through ctypes.

The three roles of a backend (see planned.py), for the host:

    allocator   one 64-byte-aligned numpy byte array per arena; a tensor is a view at its
                planned offset, so parameters, inputs and results are read and written in
                place and nothing is ever copied to or from "the device"
    compiler    cbuild: gcc -O3 -fopenmp, cached by source hash
    program     each call bound once to its ctypes function and a tuple of ctypes arguments,
                so a pass is a loop of foreign calls with no allocation and no conversion;
                run-time scalars are ctypes cells the calls share, set in place

Every logical device lives on the host, so transfers are aliases and there is
one arena; `copy_transfers` keeps each logical device in its own arena and
copies at each transfer, as between two GPUs (tests of the device mapping).
"""
from __future__ import annotations

import ctypes

import numpy as np

from ..step import Copy, TensorRef
from . import cbuild
from .planned import PlannedExecutor

_CTYPES = {"float": ctypes.c_float, "int": ctypes.c_int, "int64_t": ctypes.c_int64,
           "uint32_t": ctypes.c_uint32, "uint64_t": ctypes.c_uint64}


class Executor(PlannedExecutor):
    backend = "cpu"
    target = "c"

    def __init__(self, graph, batch: int, seed: int = 0, dtype=np.float32, guard: bool = True,
                 copy_transfers: bool = False, keep_values: bool = False):
        placement = (lambda device: device) if copy_transfers else (lambda device: "host")
        super().__init__(graph, batch, seed, dtype, guard, placement, keep_values)

    # ---- allocator ---------------------------------------------------------------
    def allocate(self, device: str, nbytes: int) -> np.ndarray:
        return _aligned(nbytes)

    def view(self, ref: TensorRef) -> np.ndarray:
        info = self.plan.tensors[ref]
        arena = self.plan.arena_of(ref)
        offset = arena.offsets[ref]
        return self.arenas[arena.device][offset:offset + info.nbytes].view(info.dtype)

    def upload(self, ref: TensorRef, array: np.ndarray) -> None:
        self.view(ref)[...] = np.asarray(array).reshape(-1)

    def download(self, ref: TensorRef) -> np.ndarray:
        return self.view(ref).copy()

    # ---- compiler ----------------------------------------------------------------
    def compile(self, source: str) -> ctypes.CDLL:
        return cbuild.load(source)

    # ---- program -----------------------------------------------------------------
    def make_cell(self, ctype: str):
        return _CTYPES[ctype](0)

    def set_cell(self, cell, value) -> None:
        cell.value = value

    def prepare(self, index, step, sync):
        """(function, arguments) for one step; the host runs steps in order, so no sync."""
        if isinstance(step, Copy):
            return np.copyto, (self.view(step.dst), self.view(step.src))
        function = getattr(self.module, step.kernel.name)
        function.restype = None
        args, types = [], []
        for arg, value in zip(step.kernel.args, self.arguments(step)):
            if isinstance(value, TensorRef):
                view = self.view(value)
                if view.size != arg.buffer.size or view.dtype != np.dtype(arg.buffer.dtype):
                    raise ValueError(f"{step.kernel.name}: {value} does not fit argument {arg.name}")
                args.append(ctypes.c_void_p(view.ctypes.data))
                types.append(ctypes.c_void_p)
                continue
            ctype = _CTYPES[arg.ctype]
            types.append(ctype)
            args.append(value if isinstance(value, ctype) else ctype(value))
        function.argtypes = types
        return function, tuple(args)

    def run(self, launches) -> None:
        with single_threaded_blas():
            for function, args in launches:
                function(*args)


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


def _aligned(nbytes: int, alignment: int = 64) -> np.ndarray:
    """A byte array whose first element sits on a cache-line boundary."""
    raw = np.zeros(nbytes + alignment, np.uint8)
    start = -raw.ctypes.data % alignment
    return raw[start:start + nbytes]
