"""Training batches uploaded as uint8 and augmented on the device (runtime/cuda_feed.py,
templates/input_augment.j2), over the PyCUDA stand-in: the first layer's input is the
host path's float batch bit for bit, a step on crops is a step on that batch, and a
step uploads the crops' bytes and a few more per image."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl.data.augment import AUGMENT_STREAM, AugmentSpec, augment_batch, counter_rng, crop_batch

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to emulate CUDA with")

ROOT = Path(__file__).resolve().parents[2]
SIZE, SCALE = 36, 0.015625  # lenet's random_crop(32, from=36) and scale(0.015625)
SPEC = AugmentSpec(crop=32, flip=True, pca_std=0.1)  # everything the kernel can do


@pytest.fixture(scope="module")
def cuda(tmp_path_factory):
    import fake_pycuda
    with pytest.MonkeyPatch.context() as patch:
        yield fake_pycuda.cuda_backend(tmp_path_factory.mktemp("feed"), patch), fake_pycuda


def lenet(cuda, **options):
    module, fake = cuda
    net = netdsl.load(ROOT / "examples" / "lenet.net", overrides={"precision": "fp32"})
    ex = module.Executor(net.graph, 2, seed=1, **options)
    fake.FLAT.update(k.name for m in ex.plan.modules for k in m.kernels if k.shape == "flat")
    fake.FLAT.add("netdsl_input_augment")
    return ex


def statistics(seed=0):
    gen = np.random.default_rng(seed)
    mean = gen.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)
    basis = np.linalg.qr(gen.standard_normal((3, 3)))[0]
    return mean, np.array([0.2, 0.02, 0.005]), basis


def batch(index, spec=SPEC, seed=0):
    """(host float batch as the trainer scales it, the same batch as crops, labels)."""
    gen = np.random.default_rng(seed + index)
    images = gen.integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    mean, eigval, eigvec = statistics()
    host = augment_batch(images, spec, counter_rng(7, AUGMENT_STREAM, 0, index), mean, eigval, eigvec)
    host *= np.float32(SCALE)  # datasets.scaled
    crops = crop_batch(images, spec, counter_rng(7, AUGMENT_STREAM, 0, index), eigval, eigvec)
    return host, crops, gen.integers(0, 10, 2)


def test_the_first_layer_reads_the_host_batch_bit_for_bit(cuda):
    ex = lenet(cuda, keep_values=True)
    ex.feed_crops(statistics()[0], SCALE, SIZE, True)
    seen = set()
    batches = [batch(index) for index in range(7)]
    for index, (host, crops, labels) in enumerate(batches[:6]):
        ex.step_crops(crops, labels, batches[index + 1][1] if index % 3 else None)  # both slots, sent ahead or not
        got = ex.read(ex.plan.inputs[ex.image_input]).reshape(host.shape)
        np.testing.assert_array_equal(got.view(np.uint32), host.view(np.uint32), err_msg=f"batch {index}")
        seen |= {(int(t), int(f)) for t, f in crops.windows[:, ::2]}
    assert {f for _, f in seen} == {0, 1} and len({t for t, _ in seen}) > 2  # mirrored and not, several windows


def test_without_mean_lighting_or_scale_too(cuda):
    spec = AugmentSpec(crop=32, flip=True, mean_subtract=False)
    ex = lenet(cuda, keep_values=True)
    ex.feed_crops(None, 1.0, SIZE, False)
    host, crops, labels = batch(0, spec)
    host /= np.float32(SCALE)  # exact: a power of two
    assert crops.shifts is None
    ex.step_crops(crops, labels)
    got = ex.read(ex.plan.inputs[ex.image_input]).reshape(host.shape)
    np.testing.assert_array_equal(got, host)
    assert got.min() >= 0 and np.array_equal(got, np.round(got))  # plain pixels


def test_a_step_on_crops_is_the_step_on_the_host_batch(cuda):
    host_ex, crop_ex = lenet(cuda), lenet(cuda)
    crop_ex.feed_crops(statistics()[0], SCALE, SIZE, True)
    for index in range(2):
        host, crops, labels = batch(index)
        assert host_ex.step(host, labels) == crop_ex.step_crops(crops, labels)
    for name, value in host_ex.params.items():
        np.testing.assert_array_equal(crop_ex.params[name], value, err_msg=name)


def test_a_step_uploads_the_uint8_crops_and_28_bytes_more_per_image(cuda):
    ex = lenet(cuda)
    ex.feed_crops(statistics()[0], SCALE, SIZE, True)
    traffic = cuda[1].traffic
    _, crops, labels = batch(0)
    ex.step_crops(crops, labels)  # warm-up
    traffic.clear()
    for index in range(1, 4):
        _, crops, labels = batch(index)
        ex.step_crops(crops, labels)
    per_image = traffic["htod_bytes"] / 3 / 2
    # the crop, its window (3 int32), its lighting shift (3 float32) and its label (int32)
    assert per_image == 32 * 32 * 3 + 12 + 12 + 4
    assert per_image < 32 * 32 * 3 * 4 / 3  # under a third of the float32 image it replaces
    assert traffic["syncs"] / 3 <= 1


def test_the_next_batch_is_uploaded_before_the_step_waits(cuda):
    ex = lenet(cuda)
    ex.feed_crops(statistics()[0], SCALE, SIZE, True)
    traffic, crop_bytes = cuda[1].traffic, 2 * (32 * 32 * 3 + 24)
    settle, uploaded_by_the_wait = ex.watch.settle, []

    def watched_settle(*args):
        uploaded_by_the_wait.append(traffic["htod_bytes"])
        return settle(*args)
    ex.watch.settle = watched_settle
    batches = [batch(index) for index in range(3)]
    traffic.clear()
    ex.step_crops(batches[0][1], batches[0][2], batches[1][1])
    ex.step_crops(batches[1][1], batches[1][2])  # found on the device: only its labels go up
    ex.step_crops(batches[2][1], batches[2][2])  # not sent ahead: uploaded in its own step
    labels = 2 * 4
    assert uploaded_by_the_wait == [2 * crop_bytes + labels, 2 * crop_bytes + 2 * labels,
                                    3 * crop_bytes + 3 * labels]


def test_crops_must_be_whole_batches_matching_the_kernel(cuda):
    ex = lenet(cuda)
    _, crops, labels = batch(0)
    with pytest.raises(RuntimeError, match="feed_crops"):
        ex.step_crops(crops, labels)
    ex.feed_crops(statistics()[0], SCALE, SIZE, False)
    with pytest.raises(ValueError, match="lighting"):
        ex.step_crops(crops, labels)

