"""The shared-memory permutation of the tensor-core product is free of bank
conflicts on fragment reads: the template's own `smem_column` expressions,
evaluated here for every lane of a warp, put each read's words in 32
distinct banks (4-byte banks, 32 of them). The emulator already shows that
writes and reads agree on the permutation (any mismatch gives wrong
products); this is the part only timing on a GPU could otherwise tell."""
from __future__ import annotations

import pytest

from netdsl.codegen.render import environment

DEPTH = 16


def column(k_inner: bool):
    text = str(environment().get_template("_gemm_mma.j2").module.smem_column(k_inner, "row", "col"))
    # the C expression uses only ^ & | << >> and parentheses, which Python ranks the same way
    return lambda row, col: eval(text, {}, {"row": row, "col": col})


def address(k_inner, width, mn, k):
    """Word offset of logical (mn, k) in one stage: [mn][16] k-inner, else [16][width]."""
    col = column(k_inner)
    return mn * DEPTH + col(mn, k) if k_inner else k * width + col(k, mn)


@pytest.mark.parametrize("width", (64, 128))
def test_elementwise_reads_hit_distinct_banks(width):
    """Operands stored [k][mn] are read a word a lane: (k + t, mn + g) for fragment rows g, g + 8 and
    k offsets 0, 4, 8, 12 (TF32 registers and BF16 halves alike)."""
    for base in range(0, width, 16):
        for rows in (0, 8):
            for k in range(0, DEPTH, 4):
                words = [address(False, width, base + rows + (lane >> 2), k + (lane & 3)) for lane in range(32)]
                assert len({w % 32 for w in words}) == 32, (base, rows, k)


@pytest.mark.parametrize("width", (64, 128))
def test_ldmatrix_phases_hit_distinct_banks(width):
    """ldmatrix reads 8 rows of 16 bytes per phase (one matrix): rows base .. base + 7 of a k-inner stage
    at one 4-word chunk of k must cover all 32 banks, each row's chunk 16-byte aligned."""
    for base in range(0, width, 8):
        for k in range(0, DEPTH, 4):
            starts = [address(True, width, base + row, k) for row in range(8)]
            assert all(start % 4 == 0 for start in starts)
            assert len({(start + w) % 32 for start in starts for w in range(4)}) == 32, (base, k)


@pytest.mark.parametrize("k_inner, width", [(True, 64), (False, 64), (False, 128)])
def test_permutation_moves_whole_chunks_within_a_row(k_inner, width):
    """cp.async writes 16-byte chunks: the permutation must keep 4-word chunks whole and aligned, and stay a
    permutation of each row."""
    col = column(k_inner)
    row_words = DEPTH if k_inner else width
    for row in range(width if k_inner else DEPTH):
        mapped = [col(row, c) for c in range(row_words)]
        assert sorted(mapped) == list(range(row_words))
        assert all(mapped[c] - mapped[c - c % 4] == c % 4 for c in range(row_words))
