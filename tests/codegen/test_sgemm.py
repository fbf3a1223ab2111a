"""The matrix-product routines on awkward shapes: sizes that fill no tile,
every transpose, batches with strides, leading dimensions wider than the
matrix (aligned for float4 loads or not), and alpha / beta.

C runs BLAS; CUDA runs both tiles of gemm_cuda.j2 through the CPU emulator,
which covers the vector and the guarded scalar loads and stores.
"""
from __future__ import annotations

import functools
import itertools
import shutil

import numpy as np
import pytest
from kernel_cases import gemm_variants
from cuda_emulator import Emulator
from tolerances import FLOAT32_RTOL, assert_close

from netdsl.codegen import TARGETS, Buffer, Declarations, Tensor, render_module
from netdsl.codegen.targets import GEMM_TILES
from netdsl.runtime import cbuild

# (m, n, k, batch, extra columns in each leading dimension, extra elements between batch items)
SHAPES = [
    (1, 1, 1, 1, 0, 0),
    (7, 5, 3, 1, 0, 0),
    (65, 129, 7, 1, 3, 0),
    (129, 65, 130, 1, 0, 0),   # k not a multiple of the 8-deep step
    (64, 64, 64, 2, 0, 0),     # whole tiles, aligned: the float4 paths
    (33, 68, 17, 3, 4, 1),     # batch items off 16-byte alignment by turns
    (1, 200, 33, 1, 1, 0),
    (36, 44, 13, 2, 3, 0),     # k + 3 = 16: float4 rows whose k runs out mid-vector
    (38, 42, 13, 1, 2, 0),     # m + 2, n + 2 = 40, 44: float4 rows whose m or n run out mid-vector
    (130, 1, 9, 2, 0, 5),
]
TRANSPOSES = list(itertools.product((False, True), repeat=2))
TILES = [(target, None) for target in ("c",)] + [("cuda", tile) for tile in GEMM_TILES]


def stored(rows, ld, batch, gap):
    """(batch stride, size) of an operand stored as `rows` rows of `ld` floats per item, `gap` floats apart."""
    stride = rows * ld + gap
    return stride, (batch - 1) * stride + rows * ld


def call(target, tile, m, n, k, batch, extra, gap, trans_a, trans_b, alpha, beta, precision="fp32", operand=None):
    """The kernel and its buffers for one product, plus the float64 reference result; `operand`
    (if given) maps the operands first, as a tensor-core product's rounding does."""
    gen = np.random.default_rng(m * 10007 + n * 101 + k + batch)
    a_rows, a_cols = (k, m) if trans_a else (m, k)
    b_rows, b_cols = (n, k) if trans_b else (k, n)
    lda, ldb, ldc = a_cols + extra, b_cols + extra, n + extra
    sa, size_a = stored(a_rows, lda, batch, gap)
    sb, size_b = stored(b_rows, ldb, batch, gap)
    sc, size_c = stored(m, ldc, batch, gap)
    buffers = {"a": np.full(size_a, np.nan, np.float32), "b": np.full(size_b, np.nan, np.float32),
               "c": np.full(size_c, np.nan, np.float32)}
    # Matrices get values; padding and gaps stay NaN, so a product term read from
    # outside a matrix shows. With beta = 0, C stays all NaN: it must never be read.
    for name, rows, cols, ld, stride in (("a", a_rows, a_cols, lda, sa), ("b", b_rows, b_cols, ldb, sb),
                                         ("c", m, n, ldc, sc)):
        if name == "c" and beta == 0:
            continue
        for i in range(batch):
            view = buffers[name][i * stride:i * stride + rows * ld].reshape(rows, ld)
            view[:, :cols] = gen.standard_normal((rows, cols))
    tensors = {name: Tensor(Buffer(name, "scratch", array.size), (array.size,)) for name, array in buffers.items()}
    declare = Declarations(TARGETS[target], "gemm", "test.gemm", 0, "test_gemm", precision)
    kernel = declare.gemm("product", tensors["a"], tensors["b"], tensors["c"], m, n, k, lda, ldb, ldc,
                          trans_a=trans_a, trans_b=trans_b, batch=batch, stride_a=sa, stride_b=sb, stride_c=sc,
                          alpha=alpha, beta=beta, tile=tile)

    def item(name, i, rows, ld, cols):
        start = i * (rows * ld + gap)
        return buffers[name][start:start + rows * ld].reshape(rows, ld)[:, :cols].astype(np.float64)

    rounded = operand or (lambda x: x)
    expected = []
    for i in range(batch):
        op_a = rounded(item("a", i, a_rows, lda, a_cols))
        op_b = rounded(item("b", i, b_rows, ldb, b_cols))
        old = np.zeros((m, n)) if beta == 0 else item("c", i, m, ldc, n)
        expected.append(alpha * (op_a.T if trans_a else op_a) @ (op_b.T if trans_b else op_b) + beta * old)
    return kernel, buffers, expected, (lambda i: item("c", i, m, ldc, n))


@pytest.fixture(scope="module")
def runners(tmp_path_factory):
    found = {}
    if cbuild.find_blas() is not None:
        library = cbuild.load(render_module([], "c", gemms=gemm_variants("c")))
        found["c", None] = functools.partial(cbuild.call, library)
    if shutil.which("g++"):
        variants = gemm_variants("cuda", GEMM_TILES)
        emulator = Emulator(render_module([], "cuda", gemms=variants), tmp_path_factory.mktemp("gemm"))
        for tile in GEMM_TILES:
            found["cuda", tile] = emulator.launch
    return found


@pytest.mark.parametrize("target, tile", TILES, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
@pytest.mark.parametrize("trans_a, trans_b", TRANSPOSES, ids=lambda t: "t" if t else "n")
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "m{}n{}k{}b{}".format(*s))
def test_sgemm_matches_numpy(runners, target, tile, trans_a, trans_b, shape):
    if (target, tile) not in runners:
        pytest.skip(f"no way to run the {target} matrix product here (BLAS or g++ missing)")
    m, n, k, batch, extra, gap = shape
    for alpha, beta in ((1.0, 0.0), (0.5, 0.75)):
        kernel, buffers, expected, result = call(target, tile, m, n, k, batch, extra, gap, trans_a, trans_b,
                                                 alpha, beta)
        before = buffers["c"].copy()
        runners[target, tile](kernel, buffers)
        for i in range(batch):
            assert_close(result(i), expected[i], FLOAT32_RTOL, f"C[{i}] alpha={alpha} beta={beta}")
        # Padding columns and gaps between batch items stay untouched.
        written = np.zeros(buffers["c"].size, bool)
        ldc = n + extra
        for i in range(batch):
            start = i * (m * ldc + gap)
            written[start:start + m * ldc].reshape(m, ldc)[:, :n] = True
        np.testing.assert_array_equal(buffers["c"][~written], before[~written])
