"""Generated CUDA, run on the CPU by the emulator (cuda_emulator.py), against
the numpy reference: every example of every kind at batch 1 and 3, with the
launch geometry the target chose. This is what checks the CUDA dialect's
loops and block reductions where no GPU is present. Every case runs twice:
blocks and threads taking turns first to last, then last to first, so a race
(a result that depends on an order the GPU does not promise) fails one of them."""
from __future__ import annotations

import ctypes
import shutil

import numpy as np
import pytest
from kernel_checks import check_backward, check_forward
from kernel_cases import all_cases
from cuda_emulator import Emulator, launch_raw

from netdsl.codegen import render_module

CASES = all_cases()


@pytest.fixture(scope="module", params=[(), ("NETDSL_REVERSED",)], ids=["in-order", "reversed"])
def emulated(request, tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("no g++ to emulate CUDA with")
    sources = {str(case): case.render("cuda") for case in CASES}
    emulator = Emulator(render_module(list(sources.values()), "cuda"), tmp_path_factory.mktemp("emulated"),
                        defines=request.param)
    return emulator.launch, sources


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_matches_reference(emulated, case):
    run, sources = emulated
    check_forward(case, sources[str(case)], run)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_backward_matches_reference(emulated, case):
    run, sources = emulated
    check_backward(case, sources[str(case)], run)


RACES = """
extern "C" __global__ void __launch_bounds__(32) racy_shift(float *x)
{
    const int t = threadIdx.x;
    x[t] = x[t + 1];  /* thread t + 1 writes x[t + 1] in the same barrier interval */
    __syncthreads();
}

extern "C" __global__ void __launch_bounds__(32) synced_shift(float *x)
{
    const int t = threadIdx.x;
    const float next = x[t + 1];
    __syncthreads();
    x[t] = next;
}
"""


def test_reversed_turns_expose_a_race_that_in_order_turns_hide(tmp_path):
    """The reversed order has teeth: a read of what another thread writes between the same
    two barriers gives the right shift in order and a wrong one reversed; with the barrier
    between the read and the write, both orders agree."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to emulate CUDA with")
    results = {}
    for reversed_turns in (False, True):
        library = Emulator(RACES, tmp_path, ("NETDSL_REVERSED",) if reversed_turns else ()).library
        for kernel in ("racy_shift", "synced_shift"):
            x = np.arange(33, dtype=np.float32)
            launch_raw(library, kernel, (1, 1, 1), (32, 1, 1), [ctypes.c_void_p(x.ctypes.data)], False)
            results[kernel, reversed_turns] = x[:32].copy()
    shifted = np.arange(1, 33, dtype=np.float32)
    np.testing.assert_array_equal(results["synced_shift", False], shifted)
    np.testing.assert_array_equal(results["synced_shift", True], shifted)
    np.testing.assert_array_equal(results["racy_shift", False], shifted)
    assert not np.array_equal(results["racy_shift", True], shifted)
