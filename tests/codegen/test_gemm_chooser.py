"""Which matrix-product routine and tile a call gets, per target and precision."""
from __future__ import annotations

import itertools

import pytest

from netdsl.codegen import TARGETS
from netdsl.codegen.targets import GEMM_MIN_BLOCKS, GEMM_TILES, MMA_TILES

CUDA, C = TARGETS["cuda"], TARGETS["c"]


@pytest.mark.parametrize("m, n, batch, tile", [
    (4096, 4096, 1, (128, 128)),  # 1,024 blocks of 128 x 128
    (2048, 2048, 1, (64, 128)),   # 256 blocks of 128 x 128 are under two waves, 512 of 64 x 128 are not
    (1024, 1024, 1, (64, 64)),    # none reaches two waves: the smallest tile, for the most blocks
    (48, 363, 2, (64, 64)),       # conv1's weight gradient, two towers: m = 48 skips the 128-row tile
    (48, 100_000, 1, (64, 128)),  # small m, many columns: the wide 64-row tile has the blocks
    (1, 1, 1, (64, 64)),
])
def test_tensor_core_tile_rule(m, n, batch, tile):
    for precision in ("tf32", "bf16"):
        variant, launch = CUDA.gemm(False, True, m, n, batch, precision=precision, k=100)
        assert (variant.tile_m, variant.tile_n) == tile
        assert variant.precision == precision and variant.name == f"netdsl_{precision}gemm_nt_{tile[0]}x{tile[1]}"
        assert launch.grid == (-(-n // tile[1]), -(-m // tile[0]), batch)
        assert launch.threads == 32 * MMA_TILES[tile][0] * MMA_TILES[tile][1]


def test_fp32_keeps_the_simt_kernel_and_its_rule():
    for m, n, batch in [(4096, 4096, 1), (48, 363, 2), (48, 100_000, 1), (96, 363, 2)]:
        variant, launch = CUDA.gemm(True, False, m, n, batch, k=387_200)
        tile_m, tile_n = variant.tile_m, variant.tile_n
        first = next((t for t in GEMM_TILES if -(-m // t[0]) * -(-n // t[1]) * batch >= GEMM_MIN_BLOCKS),
                     GEMM_TILES[-1])
        assert (tile_m, tile_n) == first
        assert variant.precision == "fp32" and variant.name == f"netdsl_sgemm_tn_{tile_m}x{tile_n}"
        assert launch.threads == (tile_m // 8) * (tile_n // 8)


def test_names_are_unique_per_variant():
    variants = {CUDA.gemm(ta, tb, 1, 1, 1, tile=tile, precision=p)[0]
                for p in ("fp32", "tf32", "bf16") for ta, tb in itertools.product((False, True), repeat=2)
                for tile in (GEMM_TILES if p == "fp32" else MMA_TILES)}
    assert len({v.name for v in variants}) == len(variants) == 4 * (len(GEMM_TILES) + 2 * len(MMA_TILES))


def test_forced_tiles_and_unknown_precisions():
    assert CUDA.gemm(False, False, 9, 9, 1, tile=(64, 128), precision="bf16")[0].tile_m == 64
    with pytest.raises(ValueError):
        CUDA.gemm(False, False, 9, 9, 1, tile=(64, 128), precision="fp32")  # no SIMT 64 x 128
    with pytest.raises(ValueError):
        CUDA.gemm(False, False, 9, 9, 1, precision="fp16")


def test_c_target_ignores_precision():
    assert C.gemm(False, True, 9, 9, 1, precision="bf16") == C.gemm(False, True, 9, 9, 1)
