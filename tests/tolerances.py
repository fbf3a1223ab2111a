"""Every numeric tolerance the tests use, and the one comparison that applies them.

Errors are relative to the whole reference tensor, ||actual - expected|| / ||expected||,
so a tolerance means the same thing for a bias of 4 numbers and an activation of
millions, and an element that is small by cancellation does not fail on its own.
"""
from __future__ import annotations

import numpy as np

# Central differences in float64: step and the agreement they reach. The
# truncation error is O(step^2) ~ 1e-12 and rounding ~ 1e-16 / step ~ 1e-10,
# both far below the tolerance; a wrong gradient is off by O(1).
FD_STEP = 1e-6
FD_RTOL = 1e-6

# float32 against an independent float32 implementation (PyTorch): a few ulps
# (6e-8 each) accumulated over sums of at most a few hundred terms.
FLOAT32_RTOL = 1e-5

# float64 against a direct loop of the same formula: only summation order differs.
FLOAT64_RTOL = 1e-12

# A whole network on a generated backend against the reference executor, by the precision
# of its matrix products (netdsl/precision.py); the reference rounds the products' operands
# the same way (ReferenceExecutor(precision=...)) and computes in float64.
#
# fp32: float32 rounding through a few dozen kernels; scores, every gradient and the weights
# after SGD steps.
#
# TF32 and BF16 (u = 2^-11 and 2^-8): NETWORK_RTOL holds the scores, the loss, the last
# layer's gradients (functions of continuous quantities only: scores, softmax, the forward
# values) and the weights after steps. The backend's float32 values and the reference's
# float64 ones round to different TF32/BF16 neighbours where they straddle a rounding
# midpoint, which happens to a fraction ~1e-7/u of the operands and moves each by u; through
# the forward pass that stays near u (AlexNet at batch 2 under the emulator: scores 1.1u TF32,
# 0.85u BF16), so 10u is the bound. Gradients below a ReLU or a max-pooling window are not
# continuous: a value that rounding moves across 0, or past its window's runner-up, moves the
# whole gradient entry (at batch 2 one such flip is a visible share of conv1's gradient).
# Their bound, REDUCED_GRADIENT_RTOL, is about 4x the worst seen under the emulator
# (AlexNet conv1: 3.5% TF32, 7.4% BF16); each kind's TF32/BF16 gradients are held to 3u
# on their own (tests/codegen/test_mma_layers.py), where no decision can move.
NETWORK_RTOL = {"fp32": 1e-4, "tf32": 10 * 2.0 ** -11, "bf16": 10 * 2.0 ** -8}
REDUCED_GRADIENT_RTOL = {"tf32": 0.15, "bf16": 0.3}

_SHOWN = 5  # mismatching elements printed on failure


def relative_error(actual, expected) -> float:
    """||actual - expected|| / ||expected||; the plain norm of actual when expected is all zeros."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    scale = np.linalg.norm(expected)
    diff = np.linalg.norm(actual - expected)
    return float(diff / scale) if scale > 0 else float(diff)


def assert_close(actual, expected, rtol: float, name: str) -> None:
    """Fail unless the relative norm error is below rtol; show where it is worst.

    The message lists the first elements (row-major) whose difference exceeds
    rtol times the largest reference magnitude, then the largest differences.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        raise AssertionError(f"{name}: shape {actual.shape}, expected {expected.shape}")
    a64, e64 = actual.astype(np.float64), expected.astype(np.float64)
    if not np.isfinite(a64).all() and np.isfinite(e64).all():
        bad = np.argwhere(~np.isfinite(a64))[:_SHOWN]
        raise AssertionError(f"{name}: non-finite values at {', '.join(_at(i) for i in bad)}")
    error = relative_error(a64, e64)
    if error <= rtol:
        return
    diff = np.abs(a64 - e64)
    limit = rtol * max(np.abs(e64).max(initial=0.0), np.finfo(np.float64).tiny)
    first = np.argwhere(diff > limit)[:_SHOWN]
    worst = np.argsort(diff, axis=None)[::-1][:_SHOWN]
    lines = [f"{name}: relative error {error:.3e} > {rtol:.1e} "
             f"(largest difference {diff.max():.3e}, {int((diff > limit).sum())} of {diff.size} elements off)"]
    lines.append("  first mismatches:")
    lines += [f"    {_at(tuple(i))}: {a64[tuple(i)]:.9g} vs {e64[tuple(i)]:.9g}" for i in first]
    lines.append("  largest differences:")
    for flat in worst:
        i = np.unravel_index(flat, diff.shape)
        lines.append(f"    {_at(i)}: {a64[i]:.9g} vs {e64[i]:.9g} (diff {diff[i]:.3e})")
    raise AssertionError("\n".join(lines))


def _at(index) -> str:
    return "[" + ", ".join(str(int(j)) for j in index) + "]"
