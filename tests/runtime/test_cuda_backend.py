"""The cuda backend against the numpy reference, on a GPU: forward, every
gradient, and the weights after three SGD steps with dropout on. Skipped, with
the reason, where PyCUDA or a GPU is missing. The inputs and checks are
backend_comparison's, which tests/codegen/test_cuda_whole_step.py runs over
the CPU emulator too."""
from __future__ import annotations

import pytest
from backend_comparison import assert_gradients_match, assert_steps_match, pair
from tolerances import relative_error

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def gpu():
    try:
        import pycuda.driver as drv
        drv.init()
        if drv.Device.count() == 0:
            raise RuntimeError("no CUDA device")
        from netdsl.runtime import cuda  # noqa: F401
    except Exception as error:  # ImportError, or no driver / device
        pytest.skip(f"no usable CUDA GPU through PyCUDA: {error}")


def on_gpus(devices):
    return lambda net: net.executor(backend="cuda", batch=2, seed=1, devices=devices)


@pytest.mark.parametrize("example, precision", [(e, "fp32") for e in ("lenet.net", "cifar.net", "alexnet-1gpu.net")]
                         + [(e, p) for e in ("cifar.net", "alexnet.net") for p in ("fp32", "tf32", "bf16")])
def test_cuda_equals_reference(example, precision):
    ref, gpu, x, y = pair(example, 2, on_gpus([0]), precision)
    assert_gradients_match(ref, gpu, x, y)
    assert_steps_match(ref, gpu, x, y)


def test_towers_on_two_gpus_give_the_same_numbers():
    import pycuda.driver as drv
    if drv.Device.count() < 2:
        pytest.skip("needs two GPUs")
    _, one, x, y = pair("alexnet.net", 2, on_gpus([0]))
    _, two, _, _ = pair("alexnet.net", 2, on_gpus([0, 1]))
    for _ in range(2):
        one.step(x, y)
        two.step(x, y)
    for name in one.params:
        assert relative_error(two.params[name], one.params[name]) < 1e-6, name
