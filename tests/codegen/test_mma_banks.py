"""The shared-memory permutation of the tensor-core product is free of bank
conflicts on fragment reads: the template's own `smem_column` expressions, evaluated
here for every lane of a warp, put each read's words in 32 distinct banks
(4-byte banks, 32 of them; 8-byte reads are served per half warp). The
emulator already shows that writes and reads agree on the permutation (any
mismatch gives wrong products); this is the part only timing on a GPU could
otherwise tell."""
from __future__ import annotations

import itertools

import pytest

from netdsl.codegen.render import environment

DEPTH = 16


def column(k_inner: bool, bf16: bool):
    text = str(environment().get_template("_gemm_mma.j2").module.smem_column(k_inner, bf16, "row", "col"))
    # the C expression uses only ^ & | << >> and parentheses, which Python ranks the same way
    return lambda row, col: eval(text, {}, {"row": row, "col": col})


def address(k_inner, bf16, width, mn, k):
    """Word offset of logical (mn, k) in one stage: [mn][16] k-inner, else [16][width]."""
    col = column(k_inner, bf16)
    return mn * DEPTH + col(mn, k) if k_inner else k * width + col(k, mn)


def reads(bf16, k_inner, width, base, kk):
    """Per fragment register, each lane's words, as the template indexes them (operand rows
    g, g + 8 from `base`; TF32 k offsets t, t + 4; BF16 pairs 2t, 2t + 1 and + 8)."""
    for rows, ks in itertools.product((0, 8), (0, 4) if not bf16 else (0, 8)):
        lanes = []
        for lane in range(32):
            g, t = lane >> 2, lane & 3
            mn = base + g + rows
            if bf16:
                k = kk + 2 * t + ks
                lanes.append([address(k_inner, True, width, mn, k), address(k_inner, True, width, mn, k + 1)])
            else:
                lanes.append([address(k_inner, False, width, mn, kk + t + ks)])
        yield lanes


@pytest.mark.parametrize("bf16", (False, True), ids=("tf32", "bf16"))
@pytest.mark.parametrize("k_inner", (True, False), ids=("k_inner", "mn_inner"))
@pytest.mark.parametrize("width", (64, 128))
def test_fragment_reads_hit_distinct_banks(bf16, k_inner, width):
    for base in range(0, width, 16):
        for kk in range(0, DEPTH, 16 if bf16 else 8):
            for lanes in reads(bf16, k_inner, width, base, kk):
                if bf16 and k_inner:  # one float2 a lane: two half-warp wavefronts of 16 x 2 words
                    groups = [sum(lanes[:16], []), sum(lanes[16:], [])]
                    assert all(lane[1] == lane[0] + 1 and lane[0] % 2 == 0 for lane in lanes), "float2 misaligned"
                elif bf16:  # two separate 4-byte reads
                    groups = [[lane[0] for lane in lanes], [lane[1] for lane in lanes]]
                else:
                    groups = [[lane[0] for lane in lanes]]
                for words in groups:
                    assert len({w % 32 for w in words}) == 32, (base, kk, sorted(w % 32 for w in words))


@pytest.mark.parametrize("k_inner, width", [(True, 64), (False, 64), (False, 128)])
def test_permutation_moves_whole_chunks_within_a_row(k_inner, width):
    """cp.async writes 16-byte chunks: the permutation must keep 4-word chunks whole and aligned, and stay a
    permutation of each row."""
    for bf16 in (False, True):
        col = column(k_inner, bf16)
        row_words = DEPTH if k_inner else width
        for row in range(width if k_inner else DEPTH):
            mapped = [col(row, c) for c in range(row_words)]
            assert sorted(mapped) == list(range(row_words))
            assert all(mapped[c] - mapped[c - c % 4] == c % 4 for c in range(row_words))


@pytest.mark.parametrize("width", (64, 128))
def test_ldmatrix_phases_hit_distinct_banks(width):
    """ldmatrix reads 8 rows of 16 bytes per phase (one matrix): rows base .. base + 7 of a k-inner stage
    at one 4-word chunk of k must cover all 32 banks."""
    for base in range(0, width, 8):
        for k in range(0, DEPTH, 4):
            words = [address(True, False, width, base + row, k) + w for row in range(8) for w in range(4)]
            assert all(address(True, False, width, base + row, k) % 4 == 0 for row in range(8))
            assert len({w % 32 for w in words}) == 32, (base, k)
