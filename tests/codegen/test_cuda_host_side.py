"""The cuda backend's host side, over the PyCUDA stand-in (fake_pycuda.py):
what a training step reads back and how often it waits for the device, the
guard on the device (the same errors as the reference, the weights kept), and
gradient clipping without the gradients leaving the device."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl.runtime.base import NonFiniteError
from netdsl.runtime.reference import ReferenceExecutor

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to emulate CUDA with")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.fixture(scope="module")
def cuda(tmp_path_factory):
    """netdsl.runtime.cuda imported over the stand-in, for this module only."""
    import fake_pycuda
    with pytest.MonkeyPatch.context() as patch:
        yield fake_pycuda.cuda_backend(tmp_path_factory.mktemp("host-side"), patch), fake_pycuda


def lenet(cuda, overrides=None, **options):
    module, fake = cuda
    net = netdsl.load(ROOT / "examples" / "lenet.net", overrides={"precision": "fp32", **(overrides or {})})
    ex = module.Executor(net.graph, 2, seed=1, **options)
    fake.FLAT.update(k.name for m in ex.plan.modules for k in m.kernels if k.shape == "flat")
    return ex, ReferenceExecutor(net.graph, 2, seed=1)


def data(ex, seed=0):
    gen = np.random.default_rng(seed)
    images = gen.standard_normal((2,) + tuple(ex.g.nodes[ex.image_input].shape)).astype(np.float32)
    return images, gen.integers(0, ex.g.nodes[ex.label_input].shape[0], 2)


def test_a_lenet_step_reads_back_only_scalars_and_waits_once(cuda):
    from host_traffic import TARGET_BYTES, TARGET_SYNCS
    ex, _ = lenet(cuda)
    assert ex.guard  # training's default
    traffic = cuda[1].traffic
    images, labels = data(ex)
    ex.step(images, labels)
    traffic.clear()
    for _ in range(3):
        ex.step(images, labels)
    per_step = {key: value / 3 for key, value in traffic.items()}
    assert per_step["dtoh_bytes"] < TARGET_BYTES and per_step["syncs"] <= TARGET_SYNCS
    # the loss and four doubles (the guard's totals, the errors' counts): no score, weight
    # or gradient
    assert per_step["dtoh_bytes"] == 4 + 4 * 8


def test_the_guard_on_the_device_names_the_layer_the_reference_names_and_keeps_the_weights(cuda):
    ex, ref = lenet(cuda)
    images, labels = data(ex)
    ex.step(images, labels)
    ref.step(images, labels)
    name = list(ex.params)[2]  # the second layer's weight
    broken = ex.params[name].copy()
    broken.reshape(-1)[3] = np.nan
    ex.set_params({name: broken})
    ref.set_params({name: broken})
    before = {k: v.copy() for k, v in ex.params.items()}
    with pytest.raises(NonFiniteError) as got:
        ex.step(images, labels)
    with pytest.raises(NonFiniteError) as want:
        ref.step(images, labels)
    assert (got.value.node, got.value.what, got.value.step) == (want.value.node, want.value.what, want.value.step)
    assert str(got.value) == str(want.value)
    for k, v in ex.params.items():  # the gate kept the update from running
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert ex.steps == 1


def test_a_gradient_gone_bad_is_reported_after_backward_and_nothing_is_updated(cuda):
    ex, _ = lenet(cuda)
    images, labels = data(ex)
    before = {k: v.copy() for k, v in ex.params.items()}
    last = ex.gradient_segments()[-1]

    def poison(layer, refs):  # what a broken gradient sum would leave (data parallelism's hook)
        if layer == last[1]:
            ex.upload(refs[0], np.full(ex.plan.tensors[refs[0]].size, np.inf, np.float32))
    ex.on_gradients_ready = poison
    with pytest.raises(NonFiniteError) as err:
        ex.step(images, labels)
    node, what = next((n, w) for n, w, ref in ex.watched_grads if ref == last[2][0])
    assert (err.value.node, err.value.what, err.value.step) == (node, what, 0)
    for k, v in ex.params.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    ex.on_gradients_ready, ex.guard = None, False
    ex.step(images, labels)  # the next step updates: the gate opens again, guard or not
    assert any((ex.params[k] != before[k]).any() for k in before)


def test_clipping_happens_on_the_device_as_the_reference_clips(cuda):
    ex, ref = lenet(cuda, {"clip": "0.01"})
    assert ex.clip == 0.01
    images, labels = data(ex)
    for seed in range(2):
        images, labels = data(ex, seed)
        got, want = ex.step(images, labels), ref.step(images, labels)
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4)
        assert (got["top1_error"], got["top5_error"]) == (want["top1_error"], want["top5_error"])
        assert ex.grad_norm == pytest.approx(ref.grad_norm, rel=1e-5) and ref.grad_norm > 0.01
    for name in ref.params:
        np.testing.assert_allclose(ex.params[name], ref.params[name], rtol=1e-4, atol=1e-7, err_msg=name)


def test_the_errors_counted_on_the_device_are_the_references_ties_and_nan_included(cuda):
    from netdsl.layers.softmax_loss import top_k_error
    ex, _ = lenet(cuda)
    classes = ex.g.nodes[ex.label_input].shape[0]
    scores_ref, labels_ref = ex.plan.values[ex.scores_node], ex.plan.inputs[ex.label_input]
    cases = [(np.array([[0, 2, 1, 0, 0, 0, 0, 0, 0, 3], [5, 5, 5, 5, 5, 5, 5, 5, 5, 5]]), [1, 4]),
             (np.array([[np.nan, 1, 2, 3, 4, 5, 6, 7, 8, 9], [9, 8, 7, 6, 5, 4, 3, 2, 1, np.inf]]), [9, 0]),
             (np.array([[1, 1, 1, 1, 1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0, 0, 7, 8]]), [0, 8])]
    assert classes == 10
    for scores, labels in cases:
        ex.upload(scores_ref, scores.astype(np.float32))
        ex.upload(labels_ref, np.array(labels, np.int32))
        device = ex.watch.errors()
        counts = ex.watch.settle()[device]
        for k, slot in ((1, 2), (5, 3)):
            assert counts[slot] / 2 == top_k_error(scores.astype(np.float32), np.array(labels), k), (scores, k)


def test_gradients_still_reads_every_gradient(cuda):
    ex, ref = lenet(cuda)
    images, labels = data(ex)
    traffic = cuda[1].traffic
    traffic.clear()
    _, grads = ex.gradients(images, labels)
    _, want = ref.gradients(images, labels)
    assert traffic["dtoh_bytes"] >= sum(g.nbytes for g in grads.values())
    for name in want:
        np.testing.assert_allclose(grads[name], want[name], rtol=1e-3, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_an_alexnet_step_reads_back_only_scalars_waits_once_and_uploads_uint8(tmp_path):
    from host_traffic import TARGET_BYTES, TARGET_SYNCS, measure
    counts = measure(ROOT / "examples" / "alexnet.net", 2, 1, True, tmp_path)
    assert counts["dtoh_bytes"] < TARGET_BYTES and counts["syncs"] <= TARGET_SYNCS
    # fed as the trainer feeds it, uint8 crops: the 224x224x3 crop and 28 bytes per image
    assert counts["htod_per_image"] == 224 * 224 * 3 + 28 <= 151 * 1024
