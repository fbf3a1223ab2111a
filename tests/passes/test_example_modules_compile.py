"""The whole CUDA training step of every example network, at its train batch size,
compiles with nvcc for sm_80 and sm_90 without warnings or spills.

tests/codegen compiles every layer kind's cases; this compiles what `netdsl
compile --target cuda` writes for each real network (one nvcc call per arch
per example). nvcc is slow, so ptxas' report is kept in pytest's cache under
the hash of source, flags and nvcc's version, and an unchanged module is not
compiled again.
"""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from netdsl.codegen import nvcc, render_module
from netdsl.compiler import compile_graph
from netdsl.passes import plan_step

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FLAGS = ("-Werror", "all-warnings")

# About 15 s of nvcc per example network when the cache is cold.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=sorted(EXAMPLES.glob("*.net")), ids=lambda p: p.stem)
def built(request, tmp_path_factory):
    """(kernel names of the module, ptxas' resources per (kernel, arch))."""
    if not nvcc.available():
        pytest.skip("nvcc not on PATH: generated CUDA cannot be compiled here")
    g = compile_graph(request.param, training=True)
    plan = plan_step(g, g.graph["train"].batch, "cuda")
    text = render_module(plan.modules, "cuda")
    names = {k.name for s in plan.modules for k in s.kernels}
    version = subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([text, " ".join(nvcc.ARCHS + FLAGS), version]).encode()).hexdigest()[:24]
    cache = request.config.cache
    logs = cache.get(f"netdsl/nvcc-network/{key}", None)
    if logs is None:
        folder = tmp_path_factory.mktemp(request.param.stem)
        (folder / "kernels.cu").write_text(text)
        logs = nvcc.compile_cubins(folder / "kernels.cu", folder, nvcc.ARCHS, FLAGS)  # raises if nvcc fails
        cache.set(f"netdsl/nvcc-network/{key}", logs)
    return names, nvcc.parse_ptxas("\n".join(logs.values()))


def test_every_kernel_is_built_for_every_arch(built):
    names, resources = built
    missing = [(name, arch) for name in sorted(names) for arch in nvcc.ARCHS if (name, arch) not in resources]
    assert not missing, f"not compiled: {missing[:10]}"


def test_no_kernel_uses_local_memory(built):
    _, resources = built
    spilled = {key: r for key, r in resources.items() if r.spills or r.stack}
    assert not spilled, f"kernels using local memory: {spilled}"
