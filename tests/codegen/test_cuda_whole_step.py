"""The generated CUDA of whole training steps, run under the thread emulator
through the shared executor (emulated_cuda.py), against the numpy reference:
the lowering, the memory plan (bytes reused across layers and streams), the
schedule's waits and the transfers between the two towers' devices are all
exercised; only PyCUDA's own calls are not."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from backend_comparison import assert_gradients_match, pair, spread_weights
from emulated_cuda import EmulatedCudaExecutor

import netdsl
from netdsl.runtime.reference import ReferenceExecutor
from netdsl.step import Copy
from tolerances import assert_close

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to emulate CUDA with")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RTOL = 1e-4
FP32 = {"precision": "fp32"}  # these steps hold the float32 tolerance; reduced precisions are checked below


def _data(ex, batch, seed=0):
    gen = np.random.default_rng(seed)
    shape = (batch,) + tuple(ex.g.nodes[ex.image_input].shape)
    classes = ex.g.nodes[ex.label_input].shape[0]
    return gen.standard_normal(shape).astype(np.float32), gen.integers(0, classes, batch)


def _steps_match(emulated, ref, steps):
    weights = spread_weights(ref.params)
    emulated.set_params(weights)
    ref.set_params(weights)
    images, labels = _data(ref, ref.batch)
    start = {n: v.copy() for n, v in ref.params.items()}
    for _ in range(steps):
        got, want = emulated.step(images, labels), ref.step(images, labels)
        assert got["loss"] == pytest.approx(want["loss"], rel=RTOL)
    for name in ref.params:
        assert_close(emulated.params[name] - start[name], ref.params[name] - start[name], RTOL, f"{name}, change")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One folder for the emulated modules: lenet's is compiled once for both tests."""
    return tmp_path_factory.mktemp("emulated-steps")


@pytest.mark.slow
def test_lenet_steps_match_the_reference(built):
    net = netdsl.load(EXAMPLES / "lenet.net", FP32)
    _steps_match(EmulatedCudaExecutor(net.graph, 3, folder=built), ReferenceExecutor(net.graph, 3), 2)


@pytest.mark.slow
def test_two_tower_alexnet_step_matches_the_reference(tmp_path):
    """Both towers on two devices: the transfers are copies between arenas and the
    streams run out of program order, as far as the schedule's waits allow."""
    net = netdsl.load(EXAMPLES / "alexnet.net", overrides={"optimizer.lr": "0.001", **FP32})
    emulated = EmulatedCudaExecutor(net.graph, 2, folder=tmp_path)
    copies = [s for s in emulated.plan.steps if isinstance(s, Copy)]
    assert {s.node for s in copies} >= {"conv2.maxpool@gpu0->gpu1", "fc6.dropout@gpu1->gpu0"}
    assert any(sync.waits for sync in emulated.plan.sync.values())
    _steps_match(emulated, ReferenceExecutor(net.graph, 2), 1)
    forward = list(emulated.plan.phase_range("forward"))
    issued = [i for i in emulated.issued if i in set(forward)]
    assert issued != sorted(issued), "the streams ran in program order: nothing tested the waits"


@pytest.fixture
def cuda(built, monkeypatch):
    """netdsl.runtime.cuda, imported over fake_pycuda (host memory and the emulator)."""
    import fake_pycuda
    return fake_pycuda.cuda_backend(built, monkeypatch)


def _flat_kernels(executor) -> None:
    import fake_pycuda
    fake_pycuda.FLAT.update(k.name for m in executor.plan.modules for k in m.kernels if k.shape == "flat")


def test_fresh_device_memory_reads_as_garbage(cuda):
    """cuMemAlloc's bytes are whatever was there, so the stand-in's and the emulated
    executor's arenas start as POISON, not zeros: a kernel reading before it writes
    (an add into a buffer it never cleared) computes a wrong number here too."""
    import sys

    from cuda_emulator import POISON
    driver = sys.modules["pycuda.driver"]
    back = np.empty(16, np.float32)
    driver.memcpy_dtoh(back, driver.mem_alloc(back.nbytes))
    assert (back == POISON).all()
    arena = EmulatedCudaExecutor.allocate(None, "gpu0", 64)
    assert (arena.view(np.float32) == POISON).all()


@pytest.mark.slow
def test_the_cuda_backend_itself_runs_lenet_over_a_stand_in_for_pycuda(cuda, tmp_path):
    """netdsl/runtime/cuda.py, unchanged, over fake_pycuda (host memory and the emulator):
    its arena, bindings, launches, events, lazy weight fetches and checkpoint round trip."""
    net = netdsl.load(EXAMPLES / "lenet.net", FP32)
    gpu = cuda.Executor(net.graph, 3, seed=1)
    _flat_kernels(gpu)
    ref = ReferenceExecutor(net.graph, 3, seed=1)
    _steps_match(gpu, ref, 2)
    gpu.save(tmp_path / "ckpt.npz")
    again = cuda.Executor(net.graph, 3, seed=7)
    again.load(tmp_path / "ckpt.npz")
    images, labels = _data(ref, 3, seed=3)
    np.testing.assert_array_equal(again.forward(images), gpu.forward(images))
    assert again.step(images, labels) == gpu.step(images, labels)


@pytest.mark.slow
@pytest.mark.parametrize("example", ["cifar.net", "alexnet-1gpu.net"])
@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
def test_the_gpu_tests_comparison_holds_over_the_stand_in(cuda, example, precision):
    """tests/runtime/test_cuda_backend.py's gradient check of AlexNet on one device, with
    its very inputs, through cuda.py over the emulator: what the GPU computes, the
    emulator computes to the last few digits, so this fails wherever that test would
    for a reason that is not the hardware's (as with near-tied max-pooling windows)."""
    def make(net):
        gpu = cuda.Executor(net.graph, 2, seed=1, devices=[0])
        _flat_kernels(gpu)
        return gpu
    assert_gradients_match(*pair(example, 2, make, precision))


@pytest.mark.slow
@pytest.mark.parametrize("act", ["tanh", "elu"])
def test_fused_activations_hold_the_comparison_over_the_stand_in(cuda, act):
    """`--set act=...` on the CIFAR net: the activation after conv2 and conv3 (conv1's follows
    its pool) runs in their tf32 products' epilogue, and its backward reads that output."""
    def make(net):
        gpu = cuda.Executor(net.graph, 2, seed=1, devices=[0])
        _flat_kernels(gpu)
        fused = [v for source in gpu.plan.modules for v in source.gemms if v.activation]
        assert {v.activation.tag for v in fused} == {act} and len(fused) == 2, [v.name for v in fused]
        return gpu
    assert_gradients_match(*pair("cifar.net", 2, make, "tf32", {"act": act}))


TWO_TOWERS = """
network towers
input image : 3 x 12 x 12
input label : 5 classes
defaults conv, fc { init = gauss(0.2); bias = 0.1 }
tower on gpu0, gpu1 {
  c1 = conv(image, 4, size=3, pad=1) -> relu -> lrn(3) -> maxpool(2)
  c2 = conv(all c1, 4, size=3, pad=1) -> relu
  f = fc(all c2, 8) -> relu -> dropout(0.5)
}
scores = fc(all f, 5) on gpu0
loss = softmax_loss(scores, label)
"""


@pytest.mark.slow
def test_two_gpus_through_the_cuda_backend_over_the_stand_in(cuda):
    """Two physical devices: cuda.py's arenas per GPU, the peer copies on the sender's
    stream and the schedule's waits, against the reference."""
    from netdsl.compiler import compile_graph
    g = compile_graph(text=TWO_TOWERS, file="towers.net", training=True, overrides=FP32)
    gpu = cuda.Executor(g, 2, seed=1, devices=[0, 1])
    _flat_kernels(gpu)
    assert set(gpu.arenas) == {"0", "1"}
    assert any(isinstance(s, Copy) for s in gpu.plan.steps)
    _steps_match(gpu, ReferenceExecutor(g, 2, seed=1), 3)
