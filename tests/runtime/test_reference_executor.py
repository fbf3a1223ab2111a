"""The reference executor: the update rule, determinism, overfitting, save/load, the NaN guard."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl.runtime.base import NonFiniteError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

TINY = """
input image : 2 x 4 x 4
input label : 3 classes
h = fc(image, 5, bias=0.5, bias_lr_mult=2, bias_decay_mult=0) -> relu -> dropout(0.5)
out = fc(h, 3)
loss = softmax_loss(out, label)
train { optimizer = sgd(lr=0.1, momentum=0.9, weight_decay=0.01) }
"""


def tiny(tmp_path, text=TINY, **overrides):
    path = tmp_path / "tiny.net"
    path.write_text(text)
    return netdsl.load(path, overrides=overrides)


def batch(shape, n, classes, seed=0):
    r = np.random.default_rng(seed)
    return r.standard_normal((n,) + shape).astype(np.float32), r.integers(0, classes, n)


def test_sgd_step_equals_hand_computed_update(tmp_path):
    ex = tiny(tmp_path).executor(batch=4, seed=3)
    x, y = batch((2, 4, 4), 4, 3)
    w0 = {k: v.copy() for k, v in ex.params.items()}
    v0 = {k: (np.random.default_rng(7).standard_normal(v.shape) * 0.01).astype(np.float32) for k, v in w0.items()}
    for k in v0:
        ex.velocity[k][...] = v0[k]
    _, grads = ex.gradients(x, y, train=True)  # same step counter, so the same dropout mask
    ex.step(x, y)
    for name in w0:
        lr = 0.1 * (2 if name == "h.fc.bias" else 1)
        wd = 0.0 if name == "h.fc.bias" else 0.01
        v = 0.9 * v0[name] - wd * lr * w0[name] - lr * grads[name]
        np.testing.assert_allclose(ex.velocity[name], v, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(ex.params[name], w0[name] + v, rtol=1e-5, atol=1e-7)
    assert ex.steps == 1


def test_initialisation_follows_the_file(tmp_path):
    ex = tiny(tmp_path).executor(batch=2, seed=0)
    assert np.all(ex.params["h.fc.bias"] == 0.5) and np.all(ex.params["out.bias"] == 0)
    w = ex.params["h.fc.weight"]
    assert w.shape == (5, 32) and 0.005 < w.std() < 0.015  # gauss(0.01) by default


def test_same_seed_is_bit_identical(tmp_path):
    net = tiny(tmp_path)
    x, y = batch((2, 4, 4), 4, 3)
    runs = []
    for _ in range(2):
        ex = net.executor(batch=4, seed=11)
        losses = [ex.step(x, y)["loss"] for _ in range(3)]
        runs.append((losses, {k: v.copy() for k, v in ex.params.items()}))
    assert runs[0][0] == runs[1][0]
    for k in runs[0][1]:
        assert np.array_equal(runs[0][1][k], runs[1][1][k])
    other = net.executor(batch=4, seed=12)
    assert not np.array_equal(other.params["h.fc.weight"], runs[0][1]["h.fc.weight"])


def test_dropout_masks_change_per_step_and_repeat_per_seed(tmp_path):
    ex = tiny(tmp_path).executor(batch=4, seed=5)
    x, _ = batch((2, 4, 4), 4, 3)
    first = ex.forward(x, train=True)
    assert np.array_equal(first, ex.forward(x, train=True))
    ex.steps += 1
    assert not np.array_equal(first, ex.forward(x, train=True))
    assert np.array_equal(ex.forward(x, train=False), ex.forward(x, train=False))


@pytest.mark.slow
def test_cifar_overfits_one_batch():
    net = netdsl.load(EXAMPLES / "cifar.net", overrides={"optimizer.lr": "0.003", "optimizer.weight_decay": "0"})
    ex = net.executor(batch=32, seed=0)
    # Blocky images at pixel-like scale: white noise would be averaged away by
    # three rounds of pooling, leaving the samples nearly alike.
    coarse, y = batch((3, 4, 4), 32, 10, seed=1)
    x = coarse.repeat(8, axis=2).repeat(8, axis=3) * 50
    losses = [ex.step(x, y)["loss"] for _ in range(80)]
    assert losses[-1] < 0.1, losses[::10]
    assert ex.evaluate(x, y)["top1_error"] == 0.0


def test_save_and_load_resume_exactly(tmp_path):
    net = tiny(tmp_path)
    x, y = batch((2, 4, 4), 4, 3)
    a = net.executor(batch=4, seed=2)
    a.step(x, y)
    a.save(tmp_path / "ckpt.npz", epoch=1)
    straight = [a.step(x, y)["loss"] for _ in range(2)]
    b = net.executor(batch=4, seed=2)
    assert int(b.load(tmp_path / "ckpt.npz")["epoch"]) == 1
    assert [b.step(x, y)["loss"] for _ in range(2)] == straight
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k]) and np.array_equal(a.velocity[k], b.velocity[k])


@pytest.mark.slow
def test_params_are_in_file_order():
    ex = netdsl.load(EXAMPLES / "alexnet.net").executor(batch=1)
    names = list(ex.params)
    assert names[:4] == ["conv1.conv@gpu0.weight", "conv1.conv@gpu0.bias", "conv1.conv@gpu1.weight",
                         "conv1.conv@gpu1.bias"]
    assert names[-2:] == ["fc8.weight", "fc8.bias"]
    assert sum(v.size for v in ex.params.values()) == 60_965_224


def test_guard_names_the_first_non_finite_layer(tmp_path):
    ex = tiny(tmp_path).executor(batch=2)
    x, y = batch((2, 4, 4), 2, 3)
    ex.params["out.weight"][0, 0] = np.inf
    with pytest.raises(NonFiniteError) as info:
        ex.step(x, y)
    assert info.value.node == "out"


def test_bad_image_shape_is_reported(tmp_path):
    ex = tiny(tmp_path).executor(batch=2)
    with pytest.raises(ValueError, match="2x4x4"):
        ex.forward(np.zeros((2, 3, 4, 4), np.float32))
