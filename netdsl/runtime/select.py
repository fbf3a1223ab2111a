"""Choosing a backend: `auto` takes the fastest one this machine can run."""
from __future__ import annotations

import shutil
import sys

from ..errors import NetDslError

BACKENDS = ("auto", "reference", "cpu", "cuda")


def cuda_available() -> bool:
    try:
        import pycuda.driver as drv
        drv.init()
        return drv.Device.count() > 0
    except Exception:  # no PyCUDA, no driver or no device: all mean "not here"
        return False


def c_compiler_available() -> bool:
    return shutil.which("gcc") is not None or shutil.which("cc") is not None


def _backend_module(name: str):
    import importlib
    try:
        return importlib.import_module(f"netdsl.runtime.{name}")
    except ImportError:
        return None


def resolve_backend(name: str, announce: bool = True) -> str:
    if name not in BACKENDS:
        raise NetDslError(f"unknown backend `{name}`", hint=f"backends: {', '.join(BACKENDS)}")
    if name != "auto":
        return name
    if _backend_module("cuda") is not None and cuda_available():
        chosen, why = "cuda", "PyCUDA sees a GPU"
    elif _backend_module("cpu") is not None and c_compiler_available():
        chosen, why = "cpu", "no usable GPU; a C compiler is here"
    else:
        chosen, why = "reference", "no usable GPU and no C backend"
    if announce:
        print(f"backend: {chosen} ({why})", file=sys.stderr)
    return chosen


def make_executor(net, backend: str, batch: int, seed: int, devices: list[int] | None = None, **options):
    """`devices` maps logical GPUs onto physical ones (cuda only: on the CPU every
    logical device is the host, and the numbers do not depend on the mapping)."""
    backend = resolve_backend(backend)
    if backend == "cuda" and devices:
        options["devices"] = devices
    if backend == "reference":
        from .reference import ReferenceExecutor
        return ReferenceExecutor(net.graph, batch, seed, **options)
    module = _backend_module(backend)
    if module is None:
        raise NetDslError(f"the {backend} backend is not available here")
    return module.Executor(net.graph, batch, seed, **options)
