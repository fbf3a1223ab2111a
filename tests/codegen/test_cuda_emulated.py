"""Generated CUDA, run on the CPU by the emulator (cuda_emulator.py), against
the numpy reference: every example of every kind at batch 1 and 3, with the
launch geometry the target chose. This is what checks the CUDA dialect's
loops and block reductions where no GPU is present."""
from __future__ import annotations

import shutil

import pytest
from kernel_checks import check_backward, check_forward
from kernel_cases import all_cases
from cuda_emulator import Emulator

from netdsl.codegen import render_module

CASES = all_cases()


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("no g++ to emulate CUDA with")
    sources = {str(case): case.render("cuda") for case in CASES}
    emulator = Emulator(render_module(list(sources.values()), "cuda"), tmp_path_factory.mktemp("emulated"))
    return emulator.launch, sources


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_matches_reference(emulated, case):
    run, sources = emulated
    check_forward(case, sources[str(case)], run)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_backward_matches_reference(emulated, case):
    run, sources = emulated
    check_backward(case, sources[str(case)], run)
