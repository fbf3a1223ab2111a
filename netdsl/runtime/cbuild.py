"""Build generated C into a shared library, cache it, load it and call its kernels.

Compilation: `gcc -O3 -march=native -fopenmp -shared -fPIC` (override the
compiler with $CC). A library is cached as
`$XDG_CACHE_HOME/netdsl/kernels/<hash>.so` (default ~/.cache), the hash
covering the source, the compiler and its flags, the BLAS and this machine's
CPU features, so a cache shared between machines never serves code built
for another CPU. A build writes a temporary file and renames it into place,
so concurrent builds of one source never see a half-written library.

BLAS: the OpenBLAS that numpy itself ships and already has loaded
(numpy.libs/libscipy_openblas64_*.so in numpy >= 2 wheels, whose CBLAS sgemm
is exported as `scipy_cblas_sgemm64_` with 64-bit integers). It needs no
extra package and is what numpy's own matmul runs on. Where numpy was built
against another library (conda, distributions) the libraries threadpoolctl
reports are tried, then the system's libopenblas / libcblas. The first
library exporting a known CBLAS sgemm symbol wins; a `64_` suffix marks the
64-bit-integer interface. The symbol and integer type reach the source as
the NETDSL_CBLAS_SGEMM and NETDSL_BLAS_INT macros (see templates/gemm_c.j2),
and the library is linked by its path.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11", "-fno-math-errno")

# CBLAS sgemm symbols in preference order: (symbol, integer type).
SGEMM_SYMBOLS = (
    ("scipy_cblas_sgemm64_", "int64_t"),  # numpy >= 2 wheels (scipy-openblas64)
    ("cblas_sgemm64_", "int64_t"),        # numpy 1.x wheels (openblas64_)
    ("scipy_cblas_sgemm", "int"),         # scipy-openblas32
    ("cblas_sgemm", "int"),               # system OpenBLAS, reference CBLAS, MKL
)

SCALAR_TYPES = {
    "float": ctypes.c_float, "int": ctypes.c_int, "int64_t": ctypes.c_int64,
    "uint32_t": ctypes.c_uint32, "uint64_t": ctypes.c_uint64,
}


class BuildError(RuntimeError):
    """The C compiler rejected generated source; the message carries its diagnostics."""


@dataclass(frozen=True)
class Blas:
    library: Path
    sgemm: str     # exported symbol
    int_type: str  # C type of its integer arguments

    @property
    def flags(self) -> tuple[str, ...]:
        return (f"-DNETDSL_CBLAS_SGEMM={self.sgemm}", f"-DNETDSL_BLAS_INT={self.int_type}",
                str(self.library), f"-Wl,-rpath,{self.library.parent}")


def _candidate_libraries() -> list[Path]:
    numpy_libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    found = sorted(numpy_libs.glob("libscipy_openblas*.so*")) + sorted(numpy_libs.glob("libopenblas*.so*"))
    try:
        from threadpoolctl import threadpool_info
        found += [Path(info["filepath"]) for info in threadpool_info() if info.get("user_api") == "blas"]
    except ImportError:
        pass
    for name in ("openblas", "cblas", "blas"):
        path = ctypes.util.find_library(name)
        if path:
            found.append(Path(path))
    return found


@functools.cache
def find_blas() -> Blas | None:
    """The BLAS generated C links against, or None when no library exports a CBLAS sgemm."""
    for library in _candidate_libraries():
        try:
            handle = ctypes.CDLL(str(library))
        except OSError:
            continue
        for symbol, int_type in SGEMM_SYMBOLS:
            if hasattr(handle, symbol):
                resolved = library if library.is_absolute() else Path(_loaded_path(handle, symbol) or library)
                return Blas(resolved, symbol, int_type)
    return None


def _loaded_path(handle: ctypes.CDLL, symbol: str) -> str | None:
    """Absolute path of the library that defines `symbol` (find_library may give a bare soname)."""
    class DlInfo(ctypes.Structure):
        _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p),
                    ("sname", ctypes.c_char_p), ("saddr", ctypes.c_void_p)]
    info = DlInfo()
    libdl = ctypes.CDLL(None)
    if libdl.dladdr(ctypes.cast(getattr(handle, symbol), ctypes.c_void_p), ctypes.byref(info)):
        return info.fname.decode()
    return None


def compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise BuildError("no C compiler: install gcc or set $CC")
    return cc


def cache_dir() -> Path:
    """$NETDSL_CACHE/kernels (else the XDG cache), like every other netdsl cache."""
    from ..paths import cache_dir as netdsl_cache
    return netdsl_cache("kernels")


@functools.cache
def _machine_key() -> str:
    """The compiler's version and the CPU features -march=native would target."""
    cc = compiler()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    try:
        cpu = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        cpu = os.uname().machine
    return version + cpu


def library_path(source: str) -> Path:
    """Where the library built from `source` is cached (whether or not it exists yet)."""
    blas = find_blas()
    digest = hashlib.sha256()
    for part in (source, compiler(), " ".join(FLAGS), " ".join(blas.flags) if blas else "", _machine_key()):
        digest.update(part.encode())
        digest.update(b"\0")
    return cache_dir() / f"{digest.hexdigest()[:32]}.so"


def build(source: str) -> Path:
    """Compile `source` unless the cache holds it; return the library's path."""
    target = library_path(source)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    blas = find_blas()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as scratch:
        c_file = Path(scratch) / "kernels.c"
        c_file.write_text(source)
        built = Path(scratch) / target.name
        command = [compiler(), *FLAGS, str(c_file), "-o", str(built), *(blas.flags if blas else ()), "-lm"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"{' '.join(command)}\n{result.stderr}")
        os.replace(built, target)
    return target


def load(source: str) -> ctypes.CDLL:
    """Build (or find in the cache) and load the library of `source`."""
    return ctypes.CDLL(str(build(source)))


def bind(library: ctypes.CDLL, kernel, buffers: dict[str, np.ndarray], scalars: dict | None = None):
    """The kernel's ctypes function, typed, and its argument values.

    `buffers` maps each buffer the kernel names to a C-contiguous array of its
    dtype and size; `scalars` gives the run-time scalars it takes.
    """
    values, types = [], []
    for arg in kernel.args:
        if arg.buffer is not None:
            array = buffers[arg.buffer.name]
            if array.dtype != np.dtype(arg.buffer.dtype) or array.size != arg.buffer.size \
                    or not array.flags.c_contiguous:
                raise ValueError(f"{kernel.name}: buffer {arg.buffer.name} must be a contiguous "
                                 f"{arg.buffer.dtype} array of {arg.buffer.size} elements, "
                                 f"got {array.dtype} {array.shape}")
            values.append(array.ctypes.data)
            types.append(ctypes.c_void_p)
        else:
            scalar_type = SCALAR_TYPES[arg.ctype]
            values.append(scalar_type(arg.value if arg.value is not None else (scalars or {})[arg.scalar]))
            types.append(scalar_type)
    function = getattr(library, kernel.name)
    function.restype = None
    function.argtypes = types
    return function, values


def call(library: ctypes.CDLL, kernel, buffers: dict[str, np.ndarray], scalars: dict | None = None) -> None:
    """Run one kernel of a netdsl.codegen plan on numpy arrays (see `bind`)."""
    function, values = bind(library, kernel, buffers, scalars)
    function(*values)
