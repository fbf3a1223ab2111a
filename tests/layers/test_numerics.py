"""Numerical edge cases and conventions the per-example sweeps do not reach:
extreme inputs, the exact LRN window, and the statistics of dropout masks."""
from __future__ import annotations

import numpy as np
import pytest
from tolerances import FLOAT32_RTOL, FLOAT64_RTOL, assert_close

from netdsl.layers import REGISTRY
from netdsl.layers.base import Context


def run(kind, a, xs, dy=None, ctx=None):
    layer = REGISTRY[kind]
    ctx = ctx or Context()
    y, cache = layer.forward(a, {}, xs, ctx)
    dxs, _ = layer.backward(a, {}, cache, np.ones_like(y) if dy is None else dy, ctx)
    return y, dxs


# ---- softmax_loss -------------------------------------------------------------

def softmax_reference(scores: np.ndarray, labels: np.ndarray):
    """Loss and d loss / d scores in float64 via log-sum-exp."""
    s = scores.astype(np.float64)
    top = s.max(axis=1, keepdims=True)
    logp = s - top - np.log(np.exp(s - top).sum(axis=1, keepdims=True))
    grad = np.exp(logp)
    grad[np.arange(len(labels)), labels] -= 1
    return -logp[np.arange(len(labels)), labels].mean(), grad / len(labels)


def test_softmax_loss_is_stable_for_scores_near_1e4():
    rng = np.random.default_rng(0)
    scores = (1e4 * rng.standard_normal((6, 10))).astype(np.float32)
    scores[0] = 1e4  # a row of ties at the top of the range: softmax is uniform there
    labels = rng.integers(0, 10, 6)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, (dscores, dlabels) = run("softmax_loss", {}, [scores, labels], dy=np.float32(1.0))
    expected_loss, expected_grad = softmax_reference(scores, labels)
    assert dlabels is None
    assert loss.dtype == np.float32
    assert_close(loss, expected_loss, FLOAT32_RTOL, "loss")
    assert_close(dscores, expected_grad, FLOAT32_RTOL, "dscores")
    # Each row of softmax - onehot sums to zero.
    np.testing.assert_allclose(dscores.sum(axis=1), 0.0, atol=1e-7)


# ---- sigmoid ------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_saturates_without_overflow(dtype):
    x = np.array([[-100.0, -50.0, -20.0, 0.0, 20.0, 50.0, 100.0]], dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y, (dx,) = run("sigmoid", {}, [x])
    assert y.dtype == dx.dtype == dtype
    assert np.all((y >= 0) & (y <= 1)) and np.all(np.isfinite(dx)) and np.all(dx >= 0)
    np.testing.assert_array_equal(y[0, [3, -1]], [0.5, 1.0])
    # The negative side is e^x / (1 + e^x), never 1 - (something rounded to 1),
    # so it keeps its relative accuracy: sigmoid(-100) = 3.7e-44 is a float32
    # subnormal, not 0.
    exact = np.exp(x[0, :3].astype(np.float64)) / (1 + np.exp(x[0, :3].astype(np.float64)))
    rtol = FLOAT32_RTOL if dtype == np.float32 else FLOAT64_RTOL
    assert_close(y[0, :3], exact, rtol, "sigmoid of large negative x")
    assert y[0, 0] > 0


# ---- lrn ----------------------------------------------------------------------

def lrn_loop(x: np.ndarray, n: int, alpha: float, beta: float, k: float) -> np.ndarray:
    """The paper's formula, channel by channel: window i - n//2 .. i + (n-1)//2, clipped."""
    channels = x.shape[1]
    y = np.empty_like(x)
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + (n - 1) // 2)
        squares = (x[:, lo:hi + 1] ** 2).sum(axis=1)
        y[:, i] = x[:, i] / (k + alpha * squares) ** beta
    return y


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 9])
def test_lrn_matches_a_direct_loop_of_the_papers_formula(n):
    x = np.random.default_rng(n).standard_normal((2, 6, 2, 3))
    y, _ = run("lrn", {"size": n, "alpha": 0.3, "beta": 0.75, "k": 2.0}, [x])
    assert_close(y, lrn_loop(x, n, alpha=0.3, beta=0.75, k=2.0), FLOAT64_RTOL, f"lrn n={n}")


def test_lrn_even_window_reaches_further_below_than_above():
    # With n = 4 channel i sums i-2 .. i+1: a bump in channel 2 damps channels
    # 1..4 and leaves 0 and 5 alone.
    x = np.full((1, 6, 1, 1), 1e-3)
    x[0, 2] = 10.0
    y, _ = run("lrn", {"size": 4, "alpha": 1.0, "beta": 1.0, "k": 1.0}, [x])
    damped = y[0, :, 0, 0] < 0.5 * x[0, :, 0, 0]
    np.testing.assert_array_equal(damped, [False, True, True, True, True, False])


def test_lrn_window_sums_do_not_cancel_in_float32():
    # One loud channel far from the others: a window sum taken as a difference
    # of prefix sums would lose the quiet channels' squares entirely.
    x = np.full((1, 16, 1, 2), 1e-2, np.float32)
    x[0, 0] = 1e4
    a = {"size": 3, "alpha": 10.0, "beta": 0.75, "k": 1.0}
    y, (dx,) = run("lrn", a, [x])
    y64, (dx64,) = run("lrn", a, [x.astype(np.float64)])
    assert_close(y, lrn_loop(x.astype(np.float64), 3, alpha=10.0, beta=0.75, k=1.0), FLOAT32_RTOL, "lrn forward")
    assert_close(dx, dx64, FLOAT32_RTOL, "lrn backward")


# ---- dropout ------------------------------------------------------------------

DROP = {"rate": 0.3}


def test_dropout_mask_statistics_and_scaling():
    x = np.ones((40, 50, 50), np.float32)  # 100,000 units
    ctx = Context(train=True, seed=1, step=0, stream="fc6.dropout@gpu0")
    y, (dx,) = run("dropout", DROP, [x], ctx=ctx)
    kept = y != 0
    # Keep fraction within 5 standard deviations of 1 - rate.
    sigma = np.sqrt(0.3 * 0.7 / kept.size)
    assert abs(kept.mean() - 0.7) < 5 * sigma
    np.testing.assert_array_equal(y[kept], np.float32(1 / 0.7))  # inverted scaling, exactly
    np.testing.assert_array_equal(dx, y)  # backward with dy = 1 applies the same mask
    # Masks of neighbouring rows are independent: their agreement is p^2 + q^2.
    agree = (kept[:-1] == kept[1:]).mean()
    assert abs(agree - (0.7**2 + 0.3**2)) < 0.01


def test_dropout_masks_differ_by_step_and_stream_and_repeat_otherwise():
    x = np.ones((1, 4096), np.float32)

    def mask(**ctx):
        return run("dropout", DROP, [x], ctx=Context(train=True, **ctx))[0] != 0

    base = mask(seed=1, step=3, stream="fc6")
    np.testing.assert_array_equal(base, mask(seed=1, step=3, stream="fc6"))
    for other in [dict(seed=1, step=4, stream="fc6"), dict(seed=1, step=3, stream="fc7"),
                  dict(seed=2, step=3, stream="fc6")]:
        assert (base != mask(**other)).mean() > 0.3, other  # about 2 * 0.3 * 0.7 = 0.42


def test_dropout_is_the_identity_at_test_time():
    x = np.random.default_rng(0).standard_normal((3, 7)).astype(np.float32)
    dy = np.random.default_rng(1).standard_normal((3, 7)).astype(np.float32)
    y, (dx,) = run("dropout", DROP, [x], dy=dy, ctx=Context(train=False, seed=1, step=0, stream="fc6"))
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(dx, dy)
