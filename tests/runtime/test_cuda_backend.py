"""The cuda backend against the numpy reference, on a GPU: forward, every
gradient, and the weights after three SGD steps with dropout on. Skipped, with
the reason, where PyCUDA or a GPU is missing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import netdsl

pytestmark = pytest.mark.gpu
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RTOL = 1e-4


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


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / max(np.linalg.norm(b), 1e-30))


def pair(example, batch, devices):
    net = netdsl.load(EXAMPLES / example)
    ref = net.executor(backend="reference", batch=batch, seed=1)
    gpu = net.executor(backend="cuda", batch=batch, seed=1, devices=devices)
    gpu.set_params(ref.params)
    shape = net.graph.nodes["image"].shape
    classes = net.graph.nodes["label"].shape[0]
    r = np.random.default_rng(0)
    return ref, gpu, r.standard_normal((batch,) + tuple(shape)).astype(np.float32), r.integers(0, classes, batch)


@pytest.mark.parametrize("example", ["lenet.net", "cifar.net", "alexnet-1gpu.net", "alexnet.net"])
def test_cuda_equals_reference(example):
    ref, gpu, x, y = pair(example, 2, [0])
    assert rel(gpu.forward(x), ref.forward(x)) < RTOL
    _, g_ref = ref.gradients(x, y)
    _, g_gpu = gpu.gradients(x, y)
    for name in g_ref:
        assert rel(g_gpu[name], g_ref[name]) < RTOL, name
    for _ in range(3):
        ref.step(x, y)
        gpu.step(x, y)
    for name in ref.params:
        assert rel(gpu.params[name], ref.params[name]) < RTOL, name


def test_towers_on_two_gpus_give_the_same_numbers():
    import pycuda.driver as drv
    if drv.Device.count() < 2:
        pytest.skip("needs two GPUs")
    _, one, x, y = pair("alexnet.net", 2, [0])
    _, two, _, _ = pair("alexnet.net", 2, [0, 1])
    for _ in range(2):
        one.step(x, y)
        two.step(x, y)
    for name in one.params:
        assert rel(two.params[name], one.params[name]) < 1e-6, name
