"""Layers whose kernels call matrix products (convolutions, fully connected),
rendered for CUDA with TF32 and BF16 products and run under the emulator:
forward output and every gradient against the float64 numpy reference, at
the precision's tolerance (3u, as test_mma_gemm.py derives). The products are
the tensor-core kernels, named so; the other kernels of the layer are the
FP32 ones, unchanged."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from cuda_emulator import Emulator
from kernel_cases import all_cases
from kernel_checks import fresh_buffers, reference
from test_mma_gemm import UNIT_ROUNDOFF
from tolerances import assert_close

from netdsl.codegen import render_module

PRECISIONS = tuple(UNIT_ROUNDOFF)
CASES = [case for case in all_cases() if any(k.shape == "gemm" for k in case.render("cuda").kernels)]


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("no g++ to emulate CUDA with")
    folder = tmp_path_factory.mktemp("mma_layers")
    found = {}
    for precision in PRECISIONS:  # a module per precision: the layers' own kernels keep their names
        sources = {str(case): case.render("cuda", precision) for case in CASES}
        emulator = Emulator(render_module(list(sources.values()), "cuda"), folder)
        found |= {(name, precision): (emulator.launch, source) for name, source in sources.items()}
    return found


def test_there_are_layers_with_products():
    assert {case.kind for case in CASES} >= {"conv", "fc"}


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_layer_with_tensor_core_products(emulated, case, precision):
    run, source = emulated[str(case), precision]
    products = {k.name for k in source.kernels if k.shape == "gemm"}
    assert products and all(name.startswith(f"netdsl_{precision}gemm_") for name in products), products
    buffers = fresh_buffers(source, case)
    for kernel in source.forward + source.backward:
        run(kernel, buffers, case.scalars())
    y, dxs, dparams = reference(case, np.float64)
    rtol = 3 * UNIT_ROUNDOFF[precision]
    assert_close(buffers["y"].reshape(np.shape(y)), y, rtol, f"{case} y")
    for i, expected in enumerate(dxs):
        if expected is not None:
            assert_close(buffers[f"dx{i}"].reshape(expected.shape), expected, rtol, f"{case} dx{i}")
    for name, expected in dparams.items():
        assert_close(buffers[f"d{name}"].reshape(expected.shape), expected, rtol, f"{case} d{name}")
