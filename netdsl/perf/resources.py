"""Registers and shared memory per block of every kernel of a plan, for one
architecture: from ptxas (`nvcc -cubin -arch=sm_XX -Xptxas -v`, as `netdsl
compile` reads them), cached by the source's hash, or, where nvcc is missing,
an assumption the report states."""
from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

from ..codegen import nvcc
from ..codegen.nvcc import Resources
from ..paths import cache_dir

# Without nvcc: the SIMT sgemm's figures as ptxas gave them for sm_80/sm_90
# (104-128 registers; a k-slice of 8 of both tiles in shared memory), and a
# generous figure for the small elementwise and row kernels (17-32 seen).
ASSUMED_GEMM_REGISTERS = 128
ASSUMED_OTHER_REGISTERS = 32
ASSUMED_ROW_SHARED = 256
ASSUMPTION = (f"nvcc not on PATH: registers assumed ({ASSUMED_GEMM_REGISTERS} per sgemm thread, "
              f"{ASSUMED_OTHER_REGISTERS} otherwise), shared memory as the tiles need")


def _cached(source: str, arch: str) -> Path:
    digest = hashlib.sha256(source.encode()).hexdigest()[:32]
    return cache_dir("ptxas") / f"{digest}.{arch}.json"


def ptxas_resources(source: str, arch: str) -> dict[str, Resources]:
    """kernel -> Resources for `arch`, compiling `source` once per (source, arch)."""
    path = _cached(source, arch)
    if path.exists():
        return {k: Resources(**v) for k, v in json.loads(path.read_text()).items()}
    with tempfile.TemporaryDirectory() as tmp:
        cu = Path(tmp) / "kernels.cu"
        cu.write_text(source)
        logs = nvcc.compile_cubins(cu, Path(tmp), archs=(arch,), extra=())
    found = {kernel: r for (kernel, a), r in nvcc.parse_ptxas(logs[arch]).items() if a == arch}
    path.write_text(json.dumps({k: asdict(r) for k, r in found.items()}))
    return found


def assumed_resources(kernel) -> Resources:
    """What the report assumes for a kernel when ptxas cannot be asked."""
    if kernel.shape == "gemm":
        tile = kernel.launch.threads * 64  # (tile/8)^2 threads for a square tile
        side = int(round(tile ** 0.5))
        return Resources(registers=ASSUMED_GEMM_REGISTERS, shared=2 * side * 8 * 4)
    return Resources(registers=ASSUMED_OTHER_REGISTERS, shared=ASSUMED_ROW_SHARED if kernel.shape == "rows" else 0)


def plan_resources(plan, arch: str) -> tuple[dict[str, Resources], str | None]:
    """(kernel name -> Resources, the assumption made or None) for every kernel of a cuda plan."""
    from ..codegen import render_module
    kernels = {s.kernel.name: s.kernel for s in plan.steps if hasattr(s, "kernel")}
    if not nvcc.available():
        return {name: assumed_resources(k) for name, k in kernels.items()}, ASSUMPTION
    found = ptxas_resources(render_module(plan.modules, "cuda"), arch)
    missing = {name: assumed_resources(k) for name, k in kernels.items() if name not in found}
    return {**missing, **{n: r for n, r in found.items() if n in kernels}}, None
