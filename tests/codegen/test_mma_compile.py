"""The tensor-core matrix products compile with nvcc for sm_80 and sm_90:
no warnings, no spills or stack frame, at most 128 registers a thread (so two
256-thread blocks fit an SM's 64K registers), static shared memory within
48 KB; and the PTX holds the instructions the kernels are meant to use.
"""
from __future__ import annotations

import re
import subprocess

import pytest
from kernel_cases import gemm_variants

from netdsl.codegen import epilogue_activation, render_module
from netdsl.codegen.nvcc import ARCHS, available, compile_cubins, parse_ptxas
from netdsl.codegen.targets import MMA_TILES, TARGETS

PRECISIONS = ("tf32", "bf16")
INSTRUCTIONS = {
    "tf32": ("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32", "cvt.rna.tf32.f32"),
    "bf16": ("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", "cvt.rn.bf16x2.f32"),
}
# Implicit-GEMM convolutions (the products reading the images): AlexNet's conv1 (11x11
# stride 4 pad 2 on 3 x 224 x 224), a 3x3 pad 1 layer, and the data gradient of AlexNet's
# conv2 (5x5 pad 2 on 128 x 27 x 27: dy's 128 channels, flipped padding 2), at every tile,
# as forward products (B untransposed) and weight gradients (B transposed), and as forward
# products through the NCHW epilogue with the bias and a fused activation (the longest epilogue);
# and a fully connected layer's product with the bias and the activation in its row-major epilogue.
# the epilogue's activation: sigmoid's expression (two expf and a division) is the longest offered
ACT = epilogue_activation("sigmoid", {})
CONVS = ((3, 224, 224, 11, 11, 4, 4, 2, 2, 1, 1, 55, 55), (192, 13, 13, 3, 3, 1, 1, 1, 1, 1, 1, 13, 13),
         (128, 27, 27, 5, 5, 1, 1, 2, 2, 1, 1, 27, 27))


def implicit_variants(precision):
    cuda = TARGETS["cuda"]
    plain = [cuda.gemm(False, trans_b, 64, 128 * 55 * 55, 1, tile, precision, conv[0] * conv[3] * conv[4],
                       conv=conv)[0]
             for tile in MMA_TILES for conv in CONVS for trans_b in (False, True)]
    epilogue = [cuda.gemm(False, False, 64, 128 * conv[11] * conv[12], 1, tile, precision,
                          conv[0] * conv[3] * conv[4], conv=conv, scatter=(conv[11] * conv[12], 64 * conv[11] * conv[12]),
                          bias=True, activation=ACT)[0]
                for tile in MMA_TILES for conv in CONVS]
    # a fully connected layer's forward product (x . W^T) adding the bias and applying the ReLU
    row_major = [cuda.gemm(False, True, 128, 2048, 1, tile, precision, 9216, bias=True, activation=ACT)[0]
                 for tile in MMA_TILES]
    return plain + epilogue + row_major


PIPELINE = ("cp.async.cg.shared.global", "cp.async.ca.shared.global", "cp.async.commit_group",
            "cp.async.wait_group")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(variants, ptxas resources, PTX per kernel for sm_80)."""
    if not available():
        pytest.skip("nvcc not on PATH: generated CUDA cannot be compiled here")
    variants = [v for p in PRECISIONS for v in gemm_variants("cuda", tuple(MMA_TILES), p) + implicit_variants(p)]
    folder = tmp_path_factory.mktemp("mma")
    source = folder / "mma.cu"
    source.write_text(render_module([], "cuda", gemms=variants))
    logs = compile_cubins(source, folder)
    ptx = folder / "mma.ptx"
    subprocess.run(["nvcc", "-ptx", "-arch=sm_80", str(source), "-o", str(ptx)], check=True, capture_output=True)
    bodies = dict(re.findall(r"\.entry (\w+)\((.*?)\n}\n", ptx.read_text(), re.S))
    return variants, parse_ptxas("\n".join(logs.values())), bodies


def test_implicit_convolutions_are_built(built):
    variants, _, bodies = built
    assert sum(1 for v in variants if v.conv) == len(PRECISIONS) * len(MMA_TILES) * len(CONVS) * 3
    assert sum(1 for v in variants if v.activation == ACT) == len(PRECISIONS) * len(MMA_TILES) * (len(CONVS) + 1)
    for v in variants:
        assert v.name in bodies


def test_every_variant_fits(built):
    variants, resources, _ = built
    for v in variants:
        for arch in ARCHS:
            r = resources[v.name, arch]
            assert not (r.spills or r.stack), (v.name, arch, r)
            assert r.registers <= 128, (v.name, arch, r.registers)
            assert r.shared <= 48 * 1024, (v.name, arch, r.shared)


def test_ptx_uses_tensor_cores_and_cp_async(built):
    variants, _, bodies = built
    for v in variants:
        body = bodies[v.name]
        for instruction in INSTRUCTIONS[v.precision] + PIPELINE:
            assert instruction in body, (v.name, instruction)
        # operands stored along k are read through ldmatrix, [k][mn] ones element by element
        along_k = not v.trans_a or v.trans_b
        assert ("ldmatrix.sync.aligned.m8n8.x4.shared.b16" in body) == along_k, v.name
        other = INSTRUCTIONS["bf16" if v.precision == "tf32" else "tf32"][0]
        assert other not in body and "wmma" not in body, v.name
