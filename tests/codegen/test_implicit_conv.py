"""Implicit-GEMM convolutions (CUDA, tf32 and bf16 products): the products read
their column tiles straight from the images, so no im2col kernel runs.
Run under the emulator against the float64 numpy reference at the precision's
tolerance (3u, as test_mma_layers.py), on the shapes that stress the loader's
addressing: AlexNet conv1's 11x11 stride 4 pad 2 on 3 channels (spatially
shrunk), 5x5 pad 2, 3x3 pad 1, grouped, unpadded 1x1 and 3x3 stride 2, dilated,
rectangular, and sizes that fill no tile. The weight gradient reads the images the
same way (B transposed), in split-K slices where the chooser cuts k; at stride 1 the
data gradient is the forward product of the output gradient with flipped weights,
so no column buffer is planned at all, and both products write NCHW through their
epilogue (the forward one adding the bias), so nothing is regrouped. fp32 keeps the explicit columns (the
chooser's rule, docs/gpu.md) and is checked too. The epilogue's fused activation:
test_epilogue_activations.py."""
from __future__ import annotations

import shutil
from dataclasses import dataclass

import numpy as np
import pytest
from cuda_emulator import Emulator
from kernel_cases import KernelCase
from kernel_checks import fresh_buffers, reference
from test_mma_gemm import UNIT_ROUNDOFF
from tolerances import FLOAT32_RTOL, assert_close

from netdsl.codegen import TARGETS, render_module

PRECISIONS = ("fp32",) + tuple(UNIT_ROUNDOFF)
ORDERS = {"forward": (), "reversed": ("NETDSL_REVERSED",)}
SHAPES = {
    "alexnet_conv1": ({"filters": 8, "size": 11, "stride": 4, "pad": 2}, (3, 31, 27)),
    "5x5_pad2": ({"filters": 6, "size": 5, "stride": 1, "pad": 2}, (4, 9, 11)),
    "3x3_pad1": ({"filters": 5, "size": 3, "stride": 1, "pad": 1}, (3, 13, 7)),
    "grouped": ({"filters": 6, "size": 3, "stride": 1, "pad": 1, "groups": 2}, (4, 7, 9)),
    "odd_stride2": ({"filters": 3, "size": 3, "stride": 2, "pad": 1, "groups": 3}, (3, 5, 3)),
    # without padding the loader tests only the column (window_y < 0 past the product's edge)
    "1x1": ({"filters": 4, "size": 1, "stride": 1, "pad": 0}, (5, 6, 7)),
    "3x3_stride2_pad0": ({"filters": 3, "size": 3, "stride": 2, "pad": 0}, (3, 9, 8)),
    # the data gradient's flipped padding: dilation x (size - 1) - pad = 2 here, 0 for "1x1"
    "3x3_dilated": ({"filters": 4, "size": 3, "stride": 1, "pad": 1, "dilation": 2}, (3, 8, 10)),
    "5x3_pad_2_1": ({"filters": 5, "size": [5, 3], "stride": 1, "pad": [2, 0]}, (2, 9, 6)),
    # at batch 3 the weight gradient's 1,500 columns run as 2 slices: the second starts mid-image
    "split_k": ({"filters": 4, "size": 3, "stride": 1, "pad": 1}, (2, 20, 25)),
}


@dataclass(frozen=True)
class ConvCase(KernelCase):
    shape: str = ""

    def __str__(self) -> str:
        return f"implicit-{self.shape}-b{self.batch}"

    @property
    def node(self) -> str:
        return f"test.implicit_{self.shape}@b{self.batch}"

    @property
    def args(self) -> dict:
        from netdsl.codegen import complete_args
        return complete_args("conv", SHAPES[self.shape][0])

    @property
    def in_shapes(self):
        return [SHAPES[self.shape][1]]


CASES = [ConvCase("conv", 0, batch, shape) for shape in SHAPES for batch in (1, 3)]


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("no g++ to emulate CUDA with")
    folder = tmp_path_factory.mktemp("implicit_conv")
    found = {}
    for precision in PRECISIONS:
        sources = {str(case): case.render("cuda", precision) for case in CASES}
        text = render_module(list(sources.values()), "cuda")
        for order, defines in ORDERS.items():  # blocks and threads first to last, then last to first
            emulator = Emulator(text, folder, defines)
            found |= {(name, precision, order): (emulator.launch, source) for name, source in sources.items()}
    return found


def test_a_case_splits_k_mid_image():
    source = next(c for c in CASES if c.shape == "split_k" and c.batch == 3).render("cuda", "tf32")
    assert "sum_partials" in [k.purpose for k in source.backward]
    product = next(k for k in source.backward if k.purpose == "weight_grad")
    values = {a.name: a.value for a in product.args}
    assert values["batch"] == 2 and values["stride_b"] % (20 * 25), values


def test_the_rule():
    cuda = TARGETS["cuda"]
    assert [cuda.implicit_conv(p) for p in PRECISIONS] == [False, True, True]
    assert not TARGETS["c"].implicit_conv("tf32")


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_implicit_conv(emulated, case, precision, order):
    run, source = emulated[str(case), precision, order]
    implicit = precision != "fp32"
    unit_stride = case.args["stride"] == 1
    kernels = [k.purpose for k in source.kernels]
    assert ("im2col" not in kernels) == implicit, kernels
    assert ("col2im" not in kernels) == (implicit and unit_stride), kernels
    assert ("cols" not in source.buffers) == (implicit and unit_stride), sorted(source.buffers)
    # the tensor-core products write y (with its bias) and dx in NCHW order themselves
    assert ("regroup_output" not in kernels) == implicit and "regroup_dx" not in kernels, kernels
    epilogues = {k.purpose for k in source.kernels if "_nchw_" in k.name}
    assert epilogues == ({"forward_product"} | ({"data_grad"} if unit_stride else set()) if implicit else set())
    products = {k.purpose: k.name for k in source.kernels if k.shape == "gemm"}
    implicit_products = {"forward_product", "weight_grad"} | ({"data_grad"} if unit_stride else set())
    assert {p for p, name in products.items() if "_conv_" in name} == (implicit_products if implicit else set())
    buffers = fresh_buffers(source, case)
    for kernel in source.forward:
        run(kernel, buffers, case.scalars())
    if "cols" in buffers:  # an implicit forward never touches the columns: they are still the poison
        assert np.isnan(buffers["cols"]).all() == implicit
    for kernel in source.backward:
        run(kernel, buffers, case.scalars())
    y, dxs, dparams = reference(case, np.float64)
    rtol = 3 * UNIT_ROUNDOFF[precision] if implicit else FLOAT32_RTOL
    assert_close(buffers["y"].reshape(np.shape(y)), y, rtol, f"{case} y")
    assert_close(buffers["dx0"].reshape(dxs[0].shape), dxs[0], rtol, f"{case} dx0")
    for name, expected in dparams.items():
        assert_close(buffers[f"d{name}"].reshape(expected.shape), expected, rtol, f"{case} d{name}")

