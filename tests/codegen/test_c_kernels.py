"""Generated C against the numpy reference, forward and backward, for every
example of every kind at batch 1 and 3. All cases share one library: one gcc
run, cached by source hash."""
from __future__ import annotations

import ctypes
import functools

import numpy as np
import pytest
from kernel_checks import check_backward, check_forward
from kernel_cases import all_cases

from netdsl.codegen import render_layer, render_module
from netdsl.runtime import cbuild
from netdsl.runtime.cpu import single_threaded_blas

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


def test_conv_results_do_not_depend_on_the_thread_count():
    """The C convolution hands groups of images to whichever thread is free and adds
    weight gradients per group, then over groups in order: 1, 2 or 3 threads give the
    same bits. Batch 20 makes 16 groups, some of two images."""
    if cbuild.find_blas() is None:
        pytest.skip("no CBLAS library found for the C target's matrix products")
    source = render_layer("conv", "conv", 1, {"filters": 5, "size": 3, "pad": 1}, [(4, 9, 7)], (5, 9, 7), 20, "c")
    lib = cbuild.load(render_module([source], "c"))
    gomp = ctypes.CDLL("libgomp.so.1")
    gen = np.random.default_rng(7)
    data = {name: gen.standard_normal(buf.size).astype(np.float32)
            for name, buf in source.buffers.items() if buf.role in ("input", "param", "grad_output")}
    results, default = [], gomp.omp_get_max_threads()
    try:
        for threads in (1, 2, 3):
            gomp.omp_set_num_threads(threads)
            buffers = {name: data[name].copy() if name in data else np.full(buf.size, np.nan, np.float32)
                       for name, buf in source.buffers.items()}
            with single_threaded_blas():
                for kernel in source.forward + source.backward:
                    cbuild.call(lib, kernel, buffers)
            results.append({name: buffers[name] for name in ("y", "dx0", "dweight", "dbias")})
    finally:
        gomp.omp_set_num_threads(default)
    for other in results[1:]:
        for name, value in results[0].items():
            np.testing.assert_array_equal(other[name], value, err_msg=name)
    assert np.isfinite(results[0]["dweight"]).all()
