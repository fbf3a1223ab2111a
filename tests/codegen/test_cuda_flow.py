"""Per-layer gradient flow on the cuda backend, over the PyCUDA stand-in
(fake_pycuda.py): the norms the device reduces after each update
(watch.j2's netdsl_watch_flow) are the reference backend's, for every
parameter tensor, with momentum, weight decay and gradient clipping; they are
the norms of the very arrays the update read and wrote; and they come back in
the step's one copy, with its one wait."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl.runtime.reference import ReferenceExecutor

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to emulate CUDA with")

ROOT = Path(__file__).resolve().parents[2]
FP32 = {"precision": "fp32"}


@pytest.fixture(scope="module")
def cuda(tmp_path_factory):
    """netdsl.runtime.cuda imported over the stand-in, for this module only."""
    import fake_pycuda
    with pytest.MonkeyPatch.context() as patch:
        yield fake_pycuda.cuda_backend(tmp_path_factory.mktemp("flow"), patch), fake_pycuda


def executors(cuda, graph, batch, **options):
    module, fake = cuda
    ex = module.Executor(graph, batch, seed=1, **options)
    fake.FLAT.update(k.name for m in ex.plan.modules for k in m.kernels if k.shape == "flat")
    ref = ReferenceExecutor(graph, batch, seed=1)
    ex.measure_norms = ref.measure_norms = True
    return ex, ref


def lenet(cuda, **overrides):
    net = netdsl.load(ROOT / "examples" / "lenet.net", overrides=FP32 | overrides)
    return executors(cuda, net.graph, 2)


def batch(ex, seed):
    gen = np.random.default_rng(seed)
    images = gen.standard_normal((ex.batch,) + tuple(ex.g.nodes[ex.image_input].shape)).astype(np.float32)
    return images, gen.integers(0, ex.g.nodes[ex.label_input].shape[0], ex.batch)


def assert_norms_match(got: dict, want: dict) -> None:
    assert list(got) == list(want)  # every parameter tensor, in step_norms' order
    for name, norms in want.items():
        assert all(value > 0 for value in norms), name  # so the relative check means something
        assert got[name] == pytest.approx(norms, rel=1e-4), name


def own_norms(ex) -> dict:
    """The norms, in float64, of the arrays the device step left: each gradient buffer times
    the gate's scale (the product update.j2 applies, in float32), the momentum, the weight."""
    scale = ex.download(ex.gate_of("0"))[0]
    norm = lambda a: float(np.linalg.norm(np.asarray(a, np.float64).reshape(-1)))
    return {name: (norm(ex.download(ref) * scale), norm(ex.velocity[name]), norm(ex.params[name]))
            for name, ref in ex.plan.param_grads.items()}


@pytest.mark.parametrize("clip", ["0", "0.01"])
def test_lenet_steps_log_the_reference_norms(cuda, clip):
    ex, ref = lenet(cuda, clip=clip)
    assert ex.momentum > 0 and ex.weight_decay > 0 and ex.clip == float(clip)
    for seed in range(3):
        images, labels = batch(ex, seed)
        ex.step(images, labels)
        ref.step(images, labels)
        assert_norms_match(ex.last_norms, ref.last_norms)
        for name, norms in own_norms(ex).items():
            assert ex.last_norms[name] == pytest.approx(norms, rel=1e-10), name
        applied = np.sqrt(sum(g * g for g, _, _ in ex.last_norms.values()))
        if ex.clip:  # clipped every step: the applied gradients' global norm is the limit
            assert ex.grad_norm > ex.clip and applied == pytest.approx(ex.clip, rel=1e-5)


def test_the_flow_comes_back_in_the_steps_one_copy_and_one_wait(cuda):
    ex, _ = lenet(cuda)
    tensors = len(ex.plan.param_grads)
    assert tensors == 10
    traffic = cuda[1].traffic
    images, labels = batch(ex, 0)
    for measured in (True, False):
        ex.measure_norms, ex.last_norms = measured, None
        ex.step(images, labels)
        traffic.clear()
        for _ in range(3):
            ex.step(images, labels)
        per_step = {key: value / 3 for key, value in traffic.items()}
        # the loss, the four totals and, measured, three sums per parameter tensor
        assert per_step["dtoh_bytes"] == 4 + (4 + 3 * tensors * measured) * 8
        assert per_step["syncs"] == 1
        assert (ex.last_norms is not None) == measured


def test_the_flow_kernel_gives_a_large_tensor_several_blocks(cuda):
    """FLOW_ELEMENTS per block: LeNet's 48,000-weight layer is shared by blocks, each
    bias has one, and the partials are still added per tensor in block order."""
    from netdsl.runtime.cuda_watch import FLOW_ELEMENTS
    ex, _ = lenet(cuda)
    _, names, blocks = ex.watch.flow["0"]
    sizes = [ex.params[name].size for name in names]
    assert blocks == sum(-(-size // FLOW_ELEMENTS) for size in sizes) and max(sizes) > 8 * FLOW_ELEMENTS
    images, labels = batch(ex, 0)
    ex.step(images, labels)
    for name, norms in own_norms(ex).items():
        assert ex.last_norms[name] == pytest.approx(norms, rel=1e-10), name


TWO_TOWERS = """
network towers
input image : 3 x 12 x 12
input label : 5 classes
defaults conv, fc { init = gauss(0.2); bias = 0.1 }
tower on gpu0, gpu1 {
  c1 = conv(image, 4, size=3, pad=1) -> relu -> maxpool(2)
  f = fc(all c1, 8) -> relu
}
scores = fc(all f, 5) on gpu0
loss = softmax_loss(scores, label)
train { optimizer = sgd(lr=0.05, momentum=0.9, weight_decay=0.0005); clip = 0.5 }
"""


def test_two_gpus_each_reduce_their_own_tensors(cuda):
    from netdsl.compiler import compile_graph
    g = compile_graph(text=TWO_TOWERS, file="towers.net", training=True, overrides=FP32)
    ex, ref = executors(cuda, g, 2, devices=[0, 1])
    held = {device: names for device, (_, names, _) in ex.watch.flow.items()}
    assert all(held.values()) and sorted(sum(held.values(), [])) == sorted(ex.plan.param_grads)
    for seed in range(2):
        images, labels = batch(ex, seed)
        ex.step(images, labels)
        ref.step(images, labels)
        assert_norms_match(ex.last_norms, ref.last_norms)
    assert ref.grad_norm > 0.5  # the gate each device read clipped


def test_the_flow_kernels_give_float64_sums_in_either_order(cuda, tmp_path):
    """watch.j2's flow kernels alone, on awkward sizes (one element, one past a block's
    share, more than WATCH_BLOCKS blocks' worth so each block loops), with a clipping
    scale: the float64 sums of the float32 product, and the same bits when blocks and
    threads take turns last to first; the guard's four totals are left alone."""
    import ctypes

    from cuda_emulator import Emulator, launch_raw

    from netdsl.codegen import render_module
    from netdsl.codegen.training import WATCH_THREADS, render_watch
    from netdsl.runtime.cuda_watch import FLOW_ELEMENTS, WATCH_BLOCKS, flow_table
    sizes = [1, 300, FLOW_ELEMENTS + 1, WATCH_BLOCKS * FLOW_ELEMENTS + 4097]
    gen = np.random.default_rng(5)
    arrays = [[gen.standard_normal(n).astype(np.float32) for n in sizes] for _ in range(3)]
    gate = np.array([0.37, 1.0], np.float32)
    table, blocks = flow_table([[a.ctypes.data for a in role] for role in arrays], sizes)
    assert blocks == 1 + 1 + 2 + WATCH_BLOCKS
    source = render_module([render_watch("cuda")], "cuda")
    count, found = len(sizes), []
    for defines in ((), ("NETDSL_REVERSED",)):
        library = Emulator(source, tmp_path, defines).library
        workspace = np.full(4 + 3 * count + 3 * blocks, np.nan)
        totals, partials = workspace.ctypes.data, workspace.ctypes.data + 8 * (4 + 3 * count)
        pointer = ctypes.c_void_p
        launch_raw(library, "netdsl_watch_flow", (blocks, 1, 1), (WATCH_THREADS, 1, 1),
                   [pointer(table.ctypes.data), ctypes.c_int(count), pointer(gate.ctypes.data), pointer(partials)],
                   False)
        launch_raw(library, "netdsl_watch_flow_total", (1, 1, 1), (WATCH_THREADS, 1, 1),
                   [pointer(table.ctypes.data), ctypes.c_int(count), pointer(partials), pointer(totals)], False)
        found.append(workspace[:4 + 3 * count].copy())
    np.testing.assert_array_equal(found[0], found[1])
    assert np.isnan(found[0][:4]).all()
    sums = found[0][4:].reshape(count, 3)
    for t in range(count):
        grad = (arrays[0][t] * gate[0]).astype(np.float64)  # the float32 product the update applies
        want = [float(x @ x) for x in (grad, arrays[1][t].astype(np.float64), arrays[2][t].astype(np.float64))]
        np.testing.assert_allclose(sums[t], want, rtol=1e-12, err_msg=f"tensor {t}")
