"""A stand-in for PyCUDA's driver and compiler, over host memory and the
thread emulator, so netdsl/runtime/cuda.py itself runs where no GPU is.

It implements exactly the calls cuda.py makes (contexts, cuMemAlloc,
host/device copies, streams, events, SourceModule.get_function and the
launch) with their PyCUDA signatures. Device memory is host memory at real
addresses; a stream runs what it is given at once, so the order of work is
the issue order, and an event wait is checked, not simulated: waiting on an
event that was never recorded is an error, as it would be a bug in cuda.py.

`traffic` counts what costs the host time on a real GPU: bytes copied device
to host and host to device, and synchronisations (Context, Stream and Event
`synchronize`, and the blocking `memcpy_dtoh` / `memcpy_htod`, which wait for
the device as one does). Prepared launches pack their arguments with the
format `prepare` made, as PyCUDA 2026.1 does (`struct` in native alignment).
"""
from __future__ import annotations

import ctypes
import importlib
import struct
import sys
import types
from collections import Counter

import numpy as np
from cuda_emulator import Emulator, launch_raw, poisoned

_CTYPES = {np.uintp: ctypes.c_void_p, np.float32: ctypes.c_float, np.int32: ctypes.c_int,
           np.int64: ctypes.c_int64, np.uint32: ctypes.c_uint32, np.uint64: ctypes.c_uint64}


traffic: Counter = Counter()  # "dtoh_bytes", "htod_bytes", "syncs"


class _Allocation:
    def __init__(self, nbytes):
        self.buffer = poisoned(nbytes)  # never zeros, as cuMemAlloc's are not

    def __int__(self):
        return self.buffer.ctypes.data


class _Context:
    stack: list = []

    def push(self):
        _Context.stack.append(self)

    @staticmethod
    def pop():
        _Context.stack.pop()

    @staticmethod
    def synchronize():
        if not _Context.stack:
            raise RuntimeError("no current context")
        traffic["syncs"] += 1


class _Device:
    def __init__(self, ordinal):
        self.ordinal = ordinal

    def retain_primary_context(self):
        return _Context()

    @staticmethod
    def count():
        return 2


class _Event:
    def __init__(self):
        self.recorded = False

    def record(self, stream=None):
        self.recorded = True
        return self

    def synchronize(self):
        traffic["syncs"] += 1
        return self


class _Stream:
    _handles = 0

    def __init__(self, flags=0):
        _Stream._handles += 1
        self.handle = _Stream._handles

    def wait_for_event(self, event):
        if not event.recorded:
            raise RuntimeError("waiting on an event that was never recorded")

    def synchronize(self):
        traffic["syncs"] += 1

    def is_done(self):
        return True


def _memcpy_htod(address, array):
    traffic["syncs"] += 1
    _memcpy_htod_async(address, array)


def _memcpy_dtoh(array, address):
    traffic["syncs"] += 1
    _memcpy_dtoh_async(array, address)


def _memcpy_htod_async(address, array, stream=None):
    traffic["htod_bytes"] += array.nbytes
    ctypes.memmove(int(address), np.ascontiguousarray(array).ctypes.data, array.nbytes)


def _memcpy_dtoh_async(array, address, stream=None):
    if not array.flags.c_contiguous:
        raise ValueError("memcpy_dtoh needs a contiguous destination")
    traffic["dtoh_bytes"] += array.nbytes
    ctypes.memmove(array.ctypes.data, int(address), array.nbytes)


def _pagelocked_empty(shape, dtype, order="C", mem_flags=0):
    return np.empty(shape, dtype, order)


def _memcpy_dtod_async(dst, src, nbytes, stream=None):
    ctypes.memmove(int(dst), int(src), nbytes)


class _Function:
    def __init__(self, emulator, name):
        self.emulator, self.name, self.function = emulator, name, getattr(emulator.library, name)
        self.function.restype = None

    def __call__(self, *args, grid, block, stream=None):
        if not _Context.stack:
            raise RuntimeError("launch without a current context")
        values = [_CTYPES[type(a)](int(a) if isinstance(a, np.uintp) else a) for a in args]
        self._launch(grid, block, values)

    def _launch(self, grid, block, values):
        # PyCUDA's launch does not say whether a kernel has barriers; the test names those without
        launch_raw(self.emulator.library, self.name, grid, block, values, self.name in FLAT)

    def prepare(self, arg_types):
        """PyCUDA's Function.prepare: a numpy type per argument, or struct characters."""
        self.arg_format = "".join(t if isinstance(t, str) else np.dtype(t).char for t in arg_types)
        return self

    def prepared_async_call(self, grid, block, stream, *args, shared_size=0):
        if not _Context.stack:
            raise RuntimeError("launch without a current context")
        if not isinstance(block, tuple):
            raise TypeError("prepared_async_call(grid, block, stream, *args): block must be a tuple")
        packed = struct.pack(self.arg_format, *args)  # raises, as PyCUDA's pack does, on a wrong type
        values = [_PACKED[c](v) for c, v in zip(self.arg_format, struct.unpack(self.arg_format, packed))]
        self._launch(grid, block, values)


# the ctypes value of each struct character PyCUDA's formats use (np.dtype(t).char)
_PACKED = {"L": ctypes.c_uint64, "Q": ctypes.c_uint64, "l": ctypes.c_int64, "q": ctypes.c_int64,
           "i": ctypes.c_int, "I": ctypes.c_uint32, "f": ctypes.c_float, "d": ctypes.c_double}


FLAT: set[str] = set()  # kernels without barriers or shuffles, run one thread at a time (see cuda_emulator)


def install(folder, monkeypatch=None) -> None:
    """Put the stand-in where `import pycuda.driver` and `pycuda.compiler` look; with a pytest
    `monkeypatch`, only until the test ends (else the gpu tests that follow would find it)."""
    driver = types.ModuleType("pycuda.driver")
    driver.init = lambda: None
    driver.Device, driver.Context, driver.Stream, driver.Event = _Device, _Context, _Stream, _Event
    driver.mem_alloc = _Allocation
    driver.memcpy_htod, driver.memcpy_dtoh, driver.memcpy_dtod_async = _memcpy_htod, _memcpy_dtoh, _memcpy_dtod_async
    driver.memcpy_htod_async, driver.memcpy_dtoh_async = _memcpy_htod_async, _memcpy_dtoh_async
    driver.pagelocked_empty = _pagelocked_empty

    class SourceModule:
        def __init__(self, source, no_extern_c=False, cache_dir=None):
            self.emulator = Emulator(source, folder)

        def get_function(self, name):
            return _Function(self.emulator, name)

    compiler = types.ModuleType("pycuda.compiler")
    compiler.SourceModule = SourceModule
    package = types.ModuleType("pycuda")
    package.driver, package.compiler = driver, compiler
    modules = {"pycuda": package, "pycuda.driver": driver, "pycuda.compiler": compiler}
    for name, module in modules.items():
        if monkeypatch is not None:
            monkeypatch.setitem(sys.modules, name, module)
        else:
            sys.modules[name] = module


def cuda_backend(folder, monkeypatch):
    """netdsl.runtime.cuda imported over the stand-in, until `monkeypatch` is undone: any
    earlier import of PyCUDA or of the backend is dropped first, so the import finds the
    stand-in, and the backend imported here leaves sys.modules with it."""
    for name in ("pycuda", "pycuda.driver", "pycuda.compiler", "netdsl.runtime.cuda"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    install(folder, monkeypatch)
    module = importlib.import_module("netdsl.runtime.cuda")
    monkeypatch.setitem(sys.modules, "netdsl.runtime.cuda", module)
    return module
