"""The split-K and row-slice rules (netdsl/codegen/split_k.py) and where the CUDA convolution uses them.

The emulated kernel tests compare the split weight gradient with the
reference; these check the rule's bounds and that those tests do reach a split.
"""
from __future__ import annotations

import itertools

import pytest
from kernel_cases import all_cases

from netdsl.codegen import render_layer
from netdsl.codegen.split_k import (BLOCKS, MAX_SLICES, MAX_WORKSPACE, MIN_DEPTH, MIN_ROW_SLICE, RESIDENT_ROW_BLOCKS,
                                    TILE, row_slices, split_k)


@pytest.mark.parametrize(("m", "n", "k", "slices"), [
    (48, 363, 128 * 55 * 55, 44),   # AlexNet conv1, one tower: 6 tiles -> 44 slices of 8,800
    (128, 1200, 128 * 27 * 27, 6),  # conv2: 38 tiles want 7; 93,312 = 2^7 x 3^6 divides by 6
    (192, 1728, 128 * 13 * 13, 4),  # conv4
    (384, 3456, 128 * 13 * 13, 1),  # one-GPU conv4: 324 tiles already fill two waves
    (3, 18, 1000, 1),               # under two slices of MIN_DEPTH
    (3, 18, 2061, 3),               # 4 wanted, 2,061 = 3^2 x 229: the largest divisor under it
    (3, 18, 2053, 1),               # a prime k: one slice
])
def test_slices_of_known_products(m, n, k, slices):
    assert split_k(m, n, k) == slices


def test_slices_are_equal_deep_and_bounded():
    for m, n, k in itertools.product((1, 48, 200, 1000), (9, 363, 4000), (1, 511, 1024, 4801, 387_200, 10**7 + 19)):
        s = split_k(m, n, k)
        assert k % s == 0, (m, n, k, s)
        assert s == 1 or (k // s >= MIN_DEPTH and s <= MAX_SLICES and s * m * n <= MAX_WORKSPACE), (m, n, k, s)
        tiles = -(-m // TILE) * -(-n // TILE)
        assert s == 1 or (s - 1) * tiles < BLOCKS, "never more slices than two waves need"


def test_the_emulated_cases_reach_a_split_at_both_batches():
    split = {case.batch for case in all_cases()
             if case.kind == "conv" and any(k.purpose == "sum_partials" for k in case.render("cuda").backward)}
    assert split == {1, 3}


def test_grouped_and_c_convolutions_keep_one_product():
    args = {"filters": 4, "size": 3, "stride": 1, "pad": 1}
    shape = (4, 40, 40)
    for target, groups in (("cuda", 2), ("c", 1)):
        source = render_layer("conv", "g", 1, args | {"groups": groups}, [shape], (4, 40, 40), 8, target)
        purposes = [k.purpose for k in source.backward]
        assert "sum_partials" not in purposes and purposes.count("weight_grad") <= 1, (target, purposes)
    cuda = render_layer("conv", "g", 1, args | {"groups": 1}, [shape], (4, 40, 40), 8, "cuda")
    assert "sum_partials" in [k.purpose for k in cuda.backward]


@pytest.mark.parametrize(("rows", "cols", "slices"), [
    (48, 128 * 55 * 55, 22),    # AlexNet conv1's bias gradient, one tower: 1,056 blocks of 17,600
    (128, 128 * 27 * 27, 9),    # conv2: 9 x 128 fill the resident blocks
    (192, 128 * 13 * 13, 4),    # conv4: 6 wanted; 21,632 = 2^7 x 13^2
    (2048, 4096, 1),            # already enough rows
    (3, 1000, 1),               # under two slices of MIN_ROW_SLICE
    (3, 35 * 45, 3),            # the emulated case at batch 1: 3 of the 3 wanted
])
def test_row_slices_of_known_sums(rows, cols, slices):
    assert row_slices(rows, cols) == slices


def test_row_slices_are_equal_long_enough_and_bounded():
    for rows, cols in itertools.product((1, 3, 48, 192, 5000), (1, 600, 1575, 21_632, 387_200, 10**7 + 19)):
        s = row_slices(rows, cols)
        assert cols % s == 0, (rows, cols, s)
        assert s == 1 or (cols // s >= MIN_ROW_SLICE and s <= MAX_SLICES), (rows, cols, s)
        assert s == 1 or (s - 1) * rows < RESIDENT_ROW_BLOCKS, "never more slices than the resident blocks need"


def test_the_emulated_cases_reach_a_sliced_bias_gradient_at_both_batches():
    sliced = {case.batch for case in all_cases()
              if case.kind == "conv" and "bias_sum" in [k.purpose for k in case.render("cuda").backward]}
    assert sliced == {1, 3}
