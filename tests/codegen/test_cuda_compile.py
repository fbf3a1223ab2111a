"""Generated CUDA compiles with nvcc for sm_80 and sm_90, without warnings,
and no kernel spills registers to local memory.

Every case of every kind goes into one module, plus an AlexNet-sized conv
and fc, every matrix-product variant at every tile and the runtime's own
kernels (watch.j2, input_augment.j2), and one nvcc run
compiles it for both architectures (nvcc is slow; -Xptxas -v reports each
kernel's registers and spills).
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest
from kernel_cases import all_cases, gemm_variants

from netdsl.codegen import render_layer, render_module
from netdsl.codegen.nvcc import ARCHS, parse_ptxas
from netdsl.codegen.training import render_input_augment, render_watch
from netdsl.codegen.targets import GEMM_TILES


# Layers large enough that the matrix products pick 128 x 128 tiles.
LARGE_LAYERS = [
    ("conv", "alexnet.conv2@gpu0", {"filters": 128, "size": 5, "pad": 2}, [(48, 27, 27)], (128, 27, 27), 128),
    ("fc", "alexnet.fc6@gpu0", {"outputs": 2048}, [(256, 6, 6)], (2048,), 128),
]


@pytest.fixture(scope="module")
def compiled(request, tmp_path_factory):
    """(sources, nvcc's return code, nvcc's messages); the messages are kept in
    pytest's cache under the hash of source, flags and nvcc, so an unchanged
    module is not compiled again."""
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not on PATH: generated CUDA cannot be compiled here")
    sources = [case.render("cuda") for case in all_cases()]
    sources += [render_layer(kind, node, 1, args, shapes, out, batch, "cuda")
                for kind, node, args, shapes, out, batch in LARGE_LAYERS]
    # The runtime's own kernels: the device guard and the training batch's augmentation.
    sources += [render_watch("cuda"), render_input_augment(224, 256, 3, True, True, True)]
    text = render_module(sources, "cuda", gemms=gemm_variants("cuda", GEMM_TILES))
    folder = tmp_path_factory.mktemp("cuda")
    gencode = [flag for arch in ARCHS for flag in ("-gencode", f"arch=compute_{arch[3:]},code={arch}")]
    command = ["nvcc", "-fatbin", *gencode, "--threads", str(len(ARCHS)), "-Xptxas", "-v",
               "-Werror", "all-warnings", str(folder / "kernels.cu"), "-o", str(folder / "kernels.fatbin")]
    version = subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([text, " ".join(command[:-4]), version]).encode()).hexdigest()[:24]
    cache = getattr(request.config, "cache", None)
    found = cache.get(f"netdsl/nvcc/{key}", None) if cache else None
    if found is None:
        (folder / "kernels.cu").write_text(text)
        result = subprocess.run(command, capture_output=True, text=True)
        found = {"returncode": result.returncode, "stderr": result.stderr}
        if cache and result.returncode == 0:
            cache.set(f"netdsl/nvcc/{key}", found)
    return sources, found["returncode"], found["stderr"]


def test_module_compiles_for_every_arch(compiled):
    _, returncode, messages = compiled
    assert returncode == 0, messages[-4000:]


def test_every_kernel_is_built_for_every_arch(compiled):
    sources, _, messages = compiled
    built = parse_ptxas(messages)
    names = {kernel.name for source in sources for kernel in source.kernels}
    assert any(name.endswith("128x128") for name in names), "the large layers should use the large tile"
    names |= {variant.name for variant in gemm_variants("cuda", GEMM_TILES)}
    missing = [(name, arch) for name in sorted(names) for arch in ARCHS if (name, arch) not in built]
    assert not missing, f"not compiled: {missing[:10]}"


def test_no_kernel_spills(compiled):
    sources, _, messages = compiled
    built = parse_ptxas(messages)
    spilled = {key: stats for key, stats in built.items()
               if stats.spill_stores or stats.spill_loads or stats.stack}
    assert not spilled, f"kernels using local memory: {spilled}"
    flat = {kernel.name for source in sources for kernel in source.kernels if kernel.shape == "flat"}
    # Elementwise kernels are memory-bound: they should stay far below the
    # register count that would cut occupancy (64 per thread at 256 threads
    # still fills an SM's 64K registers).
    heavy = {key: stats.registers for key, stats in built.items() if key[0] in flat and stats.registers > 64}
    assert not heavy, f"flat kernels with more than 64 registers: {heavy}"
