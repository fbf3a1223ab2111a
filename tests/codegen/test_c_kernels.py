"""Generated C against the numpy reference, forward and backward, for every
example of every kind at batch 1 and 3. All cases share one library: one gcc
run, cached by source hash."""
from __future__ import annotations

import functools

import pytest
from kernel_checks import check_backward, check_forward
from kernel_cases import all_cases

from netdsl.codegen import render_module
from netdsl.runtime import cbuild

CASES = all_cases()


@pytest.fixture(scope="module")
def library():
    if cbuild.find_blas() is None:
        pytest.skip("no CBLAS library found for the C target's matrix products")
    sources = {str(case): case.render("c") for case in CASES}
    lib = cbuild.load(render_module(list(sources.values()), "c"))
    return functools.partial(cbuild.call, lib), sources


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_matches_reference(library, case):
    run, sources = library
    check_forward(case, sources[str(case)], run)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_backward_matches_reference(library, case):
    run, sources = library
    check_backward(case, sources[str(case)], run)
