"""A stand-in for PyCUDA's driver and compiler, over host memory and the
thread emulator, so netdsl/runtime/cuda.py itself runs where no GPU is.

It implements exactly the calls cuda.py makes (contexts, cuMemAlloc,
host/device copies, streams, events, SourceModule.get_function and the
launch) with their PyCUDA signatures. Device memory is host memory at real
addresses; a stream runs what it is given at once, so the order of work is
the issue order, and an event wait is checked, not simulated: waiting on an
event that was never recorded is an error, as it would be a bug in cuda.py.
"""
from __future__ import annotations

import ctypes
import sys
import types

import numpy as np
from cuda_emulator import Emulator, launch_raw, poisoned

_CTYPES = {np.uintp: ctypes.c_void_p, np.float32: ctypes.c_float, np.int32: ctypes.c_int,
           np.int64: ctypes.c_int64, np.uint32: ctypes.c_uint32, np.uint64: ctypes.c_uint64}


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

    def record(self, stream):
        self.recorded = True


class _Stream:
    def wait_for_event(self, event):
        if not event.recorded:
            raise RuntimeError("waiting on an event that was never recorded")


def _memcpy_htod(address, array):
    ctypes.memmove(int(address), np.ascontiguousarray(array).ctypes.data, array.nbytes)


def _memcpy_dtoh(array, address):
    ctypes.memmove(array.ctypes.data, int(address), array.nbytes)


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
        # PyCUDA's launch does not say whether a kernel has barriers; the test names those without
        launch_raw(self.emulator.library, self.name, grid, block, values, self.name in FLAT)


FLAT: set[str] = set()  # kernels without barriers or shuffles, run one thread at a time (see cuda_emulator)


def install(folder, monkeypatch=None) -> None:
    """Put the stand-in where `import pycuda.driver` and `pycuda.compiler` look; with a pytest
    `monkeypatch`, only until the test ends (else the gpu tests that follow would find it)."""
    driver = types.ModuleType("pycuda.driver")
    driver.init = lambda: None
    driver.Device, driver.Context, driver.Stream, driver.Event = _Device, _Context, _Stream, _Event
    driver.mem_alloc = _Allocation
    driver.memcpy_htod, driver.memcpy_dtoh, driver.memcpy_dtod_async = _memcpy_htod, _memcpy_dtoh, _memcpy_dtod_async

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
