"""The two targets as data: which dialect and matrix-product templates they
use, how kernels are launched, and which matrix-product routine a call gets.

C runs each kernel as a plain function whose loops OpenMP spreads over the
cores, and hands matrix products to BLAS (`gemm_c.j2`); it ignores the
products' precision. CUDA launches a grid per kernel and computes matrix
products with the tiled SIMT kernel of `gemm_cuda.j2` (fp32) or the
tensor-core kernel of `_gemm_mma.j2` (tf32, bf16), picking the tile per call.
"""
from __future__ import annotations

from dataclasses import dataclass

from .plan import Activation, GemmVariant, Launch

# A flat kernel's block: 256 threads keeps eight warps per block and lets
# elementwise kernels reach full occupancy on sm_80 and sm_90.
FLAT_THREADS = 256
# Grid-stride loops cover any size, so the grid is capped where more blocks
# only add scheduling work (and stays inside gridDim.x's 65535 for rows).
MAX_BLOCKS = 65535
# Tiles of the CUDA matrix product, largest first: a tile is used when the
# call still yields this many blocks (about two waves on a 132-SM H100).
GEMM_TILES = ((128, 128), (64, 64))
GEMM_MIN_BLOCKS = 264
# The tensor-core product (templates/_gemm_mma.j2), largest tile first:
# (tile_m, tile_n) -> (warps along m, warps along n, stage depth along k, stages).
# Stages are 16 deep and as many as fit 48 KB of static shared memory (16 KB a
# stage at 128 x 128, 12 KB at 64 x 128; 64 x 64 stops at 4, 32 KB), so no
# launch needs the dynamic-shared-memory attribute. Warp tiles are 64 x 32 or
# 32 x 32: at most 64 accumulators and 24 fragment registers a thread.
MMA_TILES = {(128, 128): (2, 4, 16, 3), (64, 128): (2, 4, 16, 4), (64, 64): (2, 2, 16, 4)}
PRECISIONS = ("fp32", "tf32", "bf16")
# Precisions whose forward convolution is an implicit GEMM (see CudaTarget.implicit_conv).
IMPLICIT_PRECISIONS = ("tf32", "bf16")


def _transposes(trans_a: bool, trans_b: bool) -> str:
    return ("t" if trans_a else "n") + ("t" if trans_b else "n")


def _blocks(n: int, per_block: int) -> int:
    return max(1, min(MAX_BLOCKS, -(-n // per_block)))


@dataclass(frozen=True)
class Target:
    name: str
    dialect: str
    gemm_template: str

    def flat_launch(self, n: int) -> Launch:
        raise NotImplementedError

    def rows_launch(self, rows: int, cols: int) -> Launch:
        raise NotImplementedError

    def gemm(self, trans_a: bool, trans_b: bool, m: int, n: int, batch: int,
             tile: tuple[int, int] | None = None, precision: str = "fp32", k: int = 0,
             conv: tuple = (), scatter: tuple = (), bias: bool = False,
             activation: Activation | None = None) -> tuple[GemmVariant, Launch]:
        """`conv`: an implicit-GEMM convolution's geometry (GemmVariant.conv), only where implicit_conv holds;
        `scatter`: the NCHW epilogue (GemmVariant.scatter); `bias` and `activation`: added and applied
        as C is written (GemmVariant.bias); these three where product_epilogue holds."""
        raise NotImplementedError

    def implicit_conv(self, precision: str) -> bool:
        """Whether a convolution's forward product reads the images directly (implicit GEMM)
        instead of an im2col column buffer."""
        return False

    def product_epilogue(self, precision: str) -> bool:
        """Whether a matrix product can add a bias and apply an activation as it writes C
        (GemmVariant.bias, .activation), so a layer needs no bias or activation pass of its own."""
        return False


class CTarget(Target):
    def flat_launch(self, n):
        return Launch()

    def rows_launch(self, rows, cols):
        return Launch()

    def gemm(self, trans_a, trans_b, m, n, batch, tile=None, precision="fp32", k=0, conv=(), scatter=(), bias=False,
             activation=None):
        if conv or scatter or bias or activation:
            raise ValueError("the C target has no implicit-GEMM convolution or NCHW epilogue")
        name = f"netdsl_sgemm_{_transposes(trans_a, trans_b)}"
        return GemmVariant(name, trans_a, trans_b), Launch()


class CudaTarget(Target):
    def implicit_conv(self, precision):
        # The rule: the tensor-core products (tf32, bf16) load their B tiles through cp.async
        # with a zero-filling src-size, so the im2col addressing costs nothing extra there; the
        # fp32 SIMT product keeps its explicit columns.
        return precision in IMPLICIT_PRECISIONS

    def product_epilogue(self, precision):
        return precision in IMPLICIT_PRECISIONS  # the tensor-core kernel's epilogue (_gemm_mma.j2)

    def flat_launch(self, n):
        return Launch((_blocks(n, FLAT_THREADS), 1, 1), (FLAT_THREADS, 1, 1))

    def rows_launch(self, rows, cols):
        # One block per row; a narrow row gets a narrow block (whole warps, for the shuffles).
        threads = 32
        while threads < min(cols, FLAT_THREADS):
            threads *= 2
        return Launch((max(1, min(rows, MAX_BLOCKS)), 1, 1), (threads, 1, 1))

    def gemm(self, trans_a, trans_b, m, n, batch, tile=None, precision="fp32", k=0, conv=(), scatter=(), bias=False,
             activation=None):
        if conv and (precision not in IMPLICIT_PRECISIONS or trans_a):
            raise ValueError(f"an implicit-GEMM convolution is a {IMPLICIT_PRECISIONS} product with A untransposed")
        if (scatter or bias or activation) and not self.product_epilogue(precision):
            raise ValueError(f"the NCHW epilogue, a bias and an activation are in the {IMPLICIT_PRECISIONS} "
                             "products only")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown matrix-product precision {precision!r}; one of {PRECISIONS}")
        tiles = GEMM_TILES if precision == "fp32" else tuple(MMA_TILES)
        if tile is not None:
            if tuple(tile) not in tiles:
                raise ValueError(f"no {tile} tile; the CUDA {precision} matrix product has {tiles}")
            tile_m, tile_n = tile
        elif precision == "fp32":  # the SIMT rule, unchanged: the first tile with enough blocks, else the last
            for tile_m, tile_n in tiles:
                if -(-m // tile_m) * -(-n // tile_n) * batch >= GEMM_MIN_BLOCKS:
                    break
        else:
            tile_m, tile_n = choose_tile(tiles, m, n, batch)
        transposes = _transposes(trans_a, trans_b)
        if precision == "fp32":
            variant = GemmVariant(f"netdsl_sgemm_{transposes}_{tile_m}x{tile_n}", trans_a, trans_b, tile_m, tile_n)
        else:
            warps_m, warps_n, depth, stages = MMA_TILES[tile_m, tile_n]
            name = f"netdsl_{precision}gemm_{transposes}_{tile_m}x{tile_n}"
            if conv:  # the geometry is compiled in, so each geometry is a routine of its own
                name += "_conv_" + "_".join(map(str, conv))
            if scatter:  # so are the output layout's pixel count and image stride
                name += "_nchw_" + "_".join(map(str, scatter))
            name += ("_bias" if bias else "") + (f"_{activation.tag}" if activation else "")
            variant = GemmVariant(name, trans_a, trans_b, tile_m, tile_n, precision, warps_m, warps_n, depth,
                                  stages, tuple(conv), tuple(scatter), bias, activation)
        if batch > MAX_BLOCKS or -(-m // tile_m) > MAX_BLOCKS:
            raise ValueError(f"matrix product too large for one launch: {m} rows, batch {batch}")
        return variant, Launch((-(-n // tile_n), -(-m // tile_m), batch), (variant.threads, 1, 1))


def choose_tile(tiles, m: int, n: int, batch: int) -> tuple[int, int]:
    """The largest tile (in the order given) that still yields GEMM_MIN_BLOCKS blocks, about
    two waves on 132 SMs; else the smallest. Tiles taller than m + 63 are skipped first:
    m = 48 (conv1's weight gradient) in a 128-row tile would leave 62% of it empty."""
    fitting = [t for t in tiles if t[0] < m + 64] or [min(tiles)]
    for tile_m, tile_n in fitting:
        if -(-m // tile_m) * -(-n // tile_n) * batch >= GEMM_MIN_BLOCKS:
            return tile_m, tile_n
    return min(fitting, key=lambda t: t[0] * t[1])


TARGETS: dict[str, Target] = {
    "c": CTarget("c", "_c.j2", "gemm_c.j2"),
    "cuda": CudaTarget("cuda", "_cuda.j2", "gemm_cuda.j2"),
}
