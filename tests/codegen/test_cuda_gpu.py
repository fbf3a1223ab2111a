"""Generated CUDA on a real GPU through PyCUDA, against the numpy reference,
for every example of every kind at batch 1 and 3. Skipped, with the reason,
where PyCUDA or a GPU is missing."""
from __future__ import annotations

import numpy as np
import pytest
from kernel_checks import check_backward, check_forward
from kernel_cases import all_cases

from netdsl.codegen import render_module

pytestmark = pytest.mark.gpu

CASES = all_cases()
SCALARS = {"float": np.float32, "int": np.int32, "int64_t": np.int64, "uint32_t": np.uint32, "uint64_t": np.uint64}


@pytest.fixture(scope="module")
def gpu():
    try:
        import pycuda.autoinit  # noqa: F401
        import pycuda.driver as driver
        from pycuda.compiler import SourceModule
    except Exception as error:  # ImportError, or no driver / device
        pytest.skip(f"no usable CUDA GPU through PyCUDA: {error}")
    sources = {str(case): case.render("cuda") for case in CASES}
    module = SourceModule(render_module(list(sources.values()), "cuda"), no_extern_c=True)

    def run(kernel, buffers, scalars):
        args = []
        for arg in kernel.args:
            if arg.buffer is not None:
                args.append(driver.InOut(buffers[arg.buffer.name]))
            else:
                args.append(SCALARS[arg.ctype](arg.value if arg.value is not None else scalars[arg.scalar]))
        module.get_function(kernel.name)(*args, grid=kernel.launch.grid, block=kernel.launch.block)
        driver.Context.synchronize()

    return run, sources


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_matches_reference(gpu, case):
    run, sources = gpu
    check_forward(case, sources[str(case)], run)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_backward_matches_reference(gpu, case):
    run, sources = gpu
    check_backward(case, sources[str(case)], run)
