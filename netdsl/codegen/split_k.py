"""How many slices of k a matrix product runs as (split-K), for templates.

A product with a small m x n output and a long k, such as a convolution's
weight gradient (k = batch x output pixels: 387,200 for AlexNet's conv1 at
batch 128), yields a handful of tiles, so a few blocks run k alone while the
GPU idles. Cutting k into S slices of equal depth gives S times the blocks,
each writing its partial product to a workspace; a flat kernel then adds the
S partials in slice order, so the result never depends on scheduling (no
atomics on floats).

The rule, in one place: S is the largest divisor of k that is at most
  - enough slices for the output's 64 x 64 tiles to fill two waves of an
    H100/H200 (2 x 132 SMs), since the matrix product picks 64 x 64 tiles
    when 128 x 128 ones would not yield that many blocks;
  - k / 512, so every slice still streams a deep run of k per block;
  - 64, and a workspace of S x m x n floats within 16 MiB.
Divisors keep the slices equal, so one batched product covers them all (the
product takes one k for every batch item, and a last slice of another depth
would need a second product reading at an offset into its operands). The k of
a convolution, batch x pixels, has small factors whenever the batch does.
"""
from __future__ import annotations

import math

BLOCKS = 2 * 132
TILE = 64
MIN_DEPTH = 512
MAX_SLICES = 64
MAX_WORKSPACE = 1 << 22  # floats


def split_k(m: int, n: int, k: int) -> int:
    """Slices of k for an m x n x k product: 1 where one product already fills the GPU."""
    tiles = math.ceil(m / TILE) * math.ceil(n / TILE)
    wanted = min(math.ceil(BLOCKS / tiles), k // MIN_DEPTH, MAX_SLICES, MAX_WORKSPACE // (m * n))
    return max((s for s in range(1, wanted + 1) if k % s == 0), default=1)


# A row sum's blocks stream memory at one load per thread in flight, so it needs every
# block the GPU can hold at once to near the DRAM rate: 8 blocks of 256 threads on each
# of an H100/H200's 132 SMs.
RESIDENT_ROW_BLOCKS = 8 * 132
MIN_ROW_SLICE = 512  # elements per block: two loads per thread of a 256-thread block at least


def row_slices(rows: int, cols: int) -> int:
    """Equal slices each of `rows` sums of `cols` elements is cut into, a block per slice.

    A convolution's bias gradient sums each filter's row of the output gradient,
    batch x pixels long (48 rows of 387,200 for AlexNet's conv1 at batch 128): a block
    per row leaves most of the GPU idle and each block waits on its loads one after
    another. S slices give rows x S blocks writing partial sums, which a flat kernel
    adds in slice order (deterministic, as split_k's partial products). S is the
    largest divisor of cols that is at most enough for RESIDENT_ROW_BLOCKS blocks,
    cols / MIN_ROW_SLICE and MAX_SLICES."""
    wanted = min(math.ceil(RESIDENT_ROW_BLOCKS / rows), cols // MIN_ROW_SLICE, MAX_SLICES)
    return max((s for s in range(1, wanted + 1) if cols % s == 0), default=1)
