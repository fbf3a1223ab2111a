"""The tensor-core matrix product (templates/_gemm_mma.j2) under the CPU
emulator, whose mma.sync, cvt and cp.async twins follow the PTX ISA
(emulated_ptx.h), on test_sgemm's awkward shapes: every tile, transpose,
odd sizes, batches with strides, unaligned leading dimensions, alpha / beta.

Each result is compared twice against float64 numpy:
- with the operands rounded in numpy (TF32 to nearest, ties away; BF16 to
  nearest even; written here from the formats' definitions, not from the
  emulator's bit tricks): only the FP32 accumulation differs, FLOAT32_RTOL;
- with the operands as given: the precision's tolerance, 3u, u the unit
  roundoff (2^-11 TF32, 2^-8 BF16). Each product a_k b_k carries a relative
  error d_a + d_b + d_a d_b with |d| <= u; for independent zero-mean data the
  errors of the k terms add like a random walk, as the terms themselves do,
  so the norm-wise relative error stays near sqrt(2) times the RMS of d
  (about 0.6u measured) whatever k is, and one product alone is at most
  2u + u^2 < 3u. FP32 accumulation adds about sqrt(k) 2^-24, negligible
  here. docs/gpu.md gives the derivation.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from cuda_emulator import Emulator
from kernel_cases import gemm_variants
from test_sgemm import SHAPES, TRANSPOSES, call
from tolerances import FLOAT32_RTOL, assert_close, relative_error

from netdsl.codegen import render_module
from netdsl.codegen.targets import MMA_TILES

UNIT_ROUNDOFF = {"tf32": 2.0 ** -11, "bf16": 2.0 ** -8}
SIGNIFICANT_BITS = {"tf32": 11, "bf16": 8}
PRECISIONS = tuple(UNIT_ROUNDOFF)


def rounded(precision):
    """x rounded to the format's significant bits: TF32 (cvt.rna) ties away from zero, BF16 ties to even."""
    bits = SIGNIFICANT_BITS[precision]

    def apply(x):
        mantissa, exponent = np.frexp(x)  # x = mantissa 2^exponent, 0.5 <= |mantissa| < 1
        scaled = mantissa * 2.0 ** bits
        if precision == "tf32":
            whole = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
        else:
            whole = np.round(scaled)  # numpy rounds halves to even
        return np.ldexp(whole, exponent - bits)
    return apply


def test_rounding_reference_is_the_formats():
    """The numpy rounding this file trusts, on values whose roundings are known by hand."""
    tf32, bf16 = rounded("tf32"), rounded("bf16")
    one = 1.0
    assert tf32(np.float64(one + 2 ** -11)) == one + 2 ** -10  # a tie, away from zero
    assert tf32(np.float64(-(one + 2 ** -11))) == -(one + 2 ** -10)
    assert tf32(np.float64(one + 2 ** -12)) == one
    assert bf16(np.float64(one + 2 ** -8)) == one  # a tie, to even
    assert bf16(np.float64(one + 3 * 2 ** -8)) == one + 2 ** -6
    assert bf16(np.float64(one + 2 ** -8 + 2 ** -20)) == one + 2 ** -7


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    """precision -> an emulator holding every variant of that precision at every tile."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to emulate CUDA with")
    folder = tmp_path_factory.mktemp("mma")
    return {p: Emulator(render_module([], "cuda", gemms=gemm_variants("cuda", tuple(MMA_TILES), p)), folder)
            for p in PRECISIONS}


def run(emulator, precision, tile, shape, trans_a, trans_b, alpha, beta):
    m, n, k, batch, extra, gap = shape
    kernel, buffers, exact, result = call("cuda", tile, m, n, k, batch, extra, gap, trans_a, trans_b, alpha, beta,
                                          precision)
    _, _, near, _ = call("cuda", tile, m, n, k, batch, extra, gap, trans_a, trans_b, alpha, beta, precision,
                         operand=rounded(precision))
    before = buffers["c"].copy()
    emulator.launch(kernel, buffers)
    ldc = n + extra
    written = np.zeros(buffers["c"].size, bool)
    for i in range(batch):
        start = i * (m * ldc + gap)
        written[start:start + m * ldc].reshape(m, ldc)[:, :n] = True
    np.testing.assert_array_equal(buffers["c"][~written], before[~written])
    return kernel, [result(i) for i in range(batch)], exact, near


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("tile", list(MMA_TILES), ids=lambda t: "x".join(map(str, t)))
@pytest.mark.parametrize("trans_a, trans_b", TRANSPOSES, ids=lambda t: "t" if t else "n")
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "m{}n{}k{}b{}".format(*s))
def test_mma_gemm_matches_numpy(emulated, precision, tile, trans_a, trans_b, shape):
    u = UNIT_ROUNDOFF[precision]
    for alpha, beta in ((1.0, 0.0), (0.5, 0.75)):
        kernel, results, exact, near = run(emulated[precision], precision, tile, shape, trans_a, trans_b, alpha, beta)
        assert kernel.name.startswith(f"netdsl_{precision}gemm_")
        for i, got in enumerate(results):
            where = f"C[{i}] alpha={alpha} beta={beta}"
            assert_close(got, near[i], FLOAT32_RTOL, f"{where}, against rounded operands")
            assert_close(got, exact[i], 3 * u, f"{where}, against exact operands")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_operands_are_rounded(emulated, precision):
    """The error against exact operands is the format's, not FP32's: the rounding really happens."""
    shape = (65, 129, 64, 1, 0, 0)
    _, results, exact, near = run(emulated[precision], precision, (64, 64), shape, False, True, 1.0, 0.0)
    error = relative_error(results[0], exact[0])
    assert 0.3 * UNIT_ROUNDOFF[precision] < error < 3 * UNIT_ROUNDOFF[precision], error


def test_fragment_layout_matters(tmp_path):
    """With A's fragment registers 1 and 2 exchanged in the emulated mma.sync, every variant goes wrong:
    the kernels index fragments exactly as the PTX layout says, and the tests would see if they did not."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to emulate CUDA with")
    for precision in PRECISIONS:
        variants = gemm_variants("cuda", ((64, 64),), precision)
        mutant = Emulator(render_module([], "cuda", gemms=variants), tmp_path, defines=("NETDSL_MMA_MUTANT",))
        for trans_a, trans_b in TRANSPOSES:
            _, results, exact, _ = run(mutant, precision, (64, 64), (33, 40, 24, 1, 0, 0), trans_a, trans_b,
                                       1.0, 0.0)
            assert relative_error(results[0], exact[0]) > 0.1, (precision, trans_a, trans_b)


def test_ldmatrix_lane_groups_matter(tmp_path):
    """TF32 operands stored along k ([mn][k] in shared memory: A untransposed, B transposed) reach their
    fragments through ldmatrix; with two of its matrices exchanged in the emulator those products go wrong,
    while tn, which reads both operands element by element, is untouched."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to emulate CUDA with")
    variants = gemm_variants("cuda", ((64, 64),), "tf32")
    mutant = Emulator(render_module([], "cuda", gemms=variants), tmp_path, defines=("NETDSL_LDMATRIX_MUTANT",))
    for trans_a, trans_b in TRANSPOSES:
        _, results, exact, _ = run(mutant, "tf32", (64, 64), (33, 40, 24, 1, 0, 0), trans_a, trans_b, 1.0, 0.0)
        error = relative_error(results[0], exact[0])
        if trans_a and not trans_b:
            assert error < 3 * UNIT_ROUNDOFF["tf32"]
        else:
            assert error > 0.1, (trans_a, trans_b)


def test_missing_wait_shows(tmp_path):
    """A pipeline that waits for one group too few reads a stage before its copies land: the emulator
    poisons cp.async destinations at issue, so the product turns to NaN instead of passing by luck."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to emulate CUDA with")
    variants = gemm_variants("cuda", ((128, 128),), "tf32")
    text = render_module([], "cuda", gemms=variants)
    waits = f"netdsl_cp_async_wait<{variants[0].stages - 2}>();  /* this thread's"
    assert text.count(waits) == 4
    hasty = Emulator(text.replace(waits, f"netdsl_cp_async_wait<{variants[0].stages - 1}>();  /*"), tmp_path)
    _, results, _, _ = run(hasty, "tf32", (128, 128), (40, 50, 70, 1, 0, 0), False, False, 1.0, 0.0)
    assert np.isnan(results[0]).any()
