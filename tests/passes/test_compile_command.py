"""`netdsl compile --target`: kernels, plan and memory files, the summary,
and with nvcc on PATH the cubins with their register table."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from netdsl.cli import main
from netdsl.codegen import nvcc

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# conv1's forward product: 3 x 32 x 32 images, 5 x 5 pad 2, written as 32 x 32 x 32 NCHW plus bias
CONV1_PRODUCT = "netdsl_tf32gemm_nn_64x128_conv_3_32_32_5_5_1_1_2_2_1_1_32_32_nchw_1024_32768_bias"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """(exit status, output folder, printed text) of one run; nvcc, where present, is slow."""
    out = tmp_path_factory.mktemp("cifar")
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        code = main(["compile", str(EXAMPLES / "cifar.net"), "-o", str(out), "--target", "all"])
    return code, out, text.getvalue()


def test_writes_kernels_plan_and_memory(compiled):
    code, out, printed = compiled
    assert code == 0
    c, cu = (out / "kernels.c").read_text(), (out / "kernels.cu").read_text()
    # kernels are named by what they compute, never by a layer: shared bodies, safe identifiers
    assert "void conv_3x32x32_to_32x32x32_forward_images(" in c
    # cuda's default precision is tf32: convolutions are implicit GEMMs on tensor cores writing
    # NCHW with the bias added, so there is no im2col and no regrouping of the output
    assert "conv_3x32x32_to_32x32x32_flip_weights(" in cu and "__global__" in cu and "__global__" not in c
    assert f"{CONV1_PRODUCT}(" in cu and "_im2col(" not in cu and "_regroup_output(" not in cu
    assert "conv1" not in "".join(line for line in c.splitlines() if line.startswith("void "))
    for target in ("c", "cuda"):
        plan = json.loads((out / f"plan.{target}.json").read_text())
        assert plan["batch"] == 128 and plan["target"] == target
        calls = [s for s in plan["forward"] if s["op"] == "call"]
        assert calls[0]["node"] == "conv1.conv" and "value:image" in calls[0]["args"]
        assert any("value:conv1.conv" in s["args"] for s in calls if s["node"] == "conv1.conv")
        memory = json.loads((out / f"memory.{target}.json").read_text())
        (device,) = memory["devices"].values()
        assert device["arena_bytes"] < device["sum_bytes"] and device["tensors"]
        # the figure printed is the arena's
        assert f"{device['arena_bytes']:,} bytes" in printed
    assert "kernels from" in printed and "distinct bodies for 13 layers" in printed
    assert "activations" in printed and "optimiser state (momentum)" in printed
    assert json.loads((out / "graph.json").read_text())["network"] == "cifar"


def test_register_table(compiled):
    code, out, printed = compiled
    if not nvcc.available():
        print("nvcc is not on PATH: the cubins and register table are not checked")
        pytest.skip("nvcc not on PATH")
    assert (out / "kernels.sm_80.cubin").stat().st_size > 0 and (out / "kernels.sm_90.cubin").stat().st_size > 0
    header = next(line for line in printed.splitlines() if line.startswith("kernel "))
    assert "sm_80 regs" in header and "sm_90 regs" in header
    row = next(line for line in printed.splitlines()
               if line.startswith(CONV1_PRODUCT + " "))
    assert all(cell.isdigit() for cell in row.split()[1:])


def test_dump_after_a_plan_pass(tmp_path, capsys):
    assert main(["compile", str(EXAMPLES / "lenet.net"), "-o", str(tmp_path), "--dump-after", "add_updates"]) == 0
    out = capsys.readouterr().out
    assert "# graph after add_updates" in out and "c1.conv:backward" in out
    assert not (tmp_path / "plan.json").exists(), "files of the plan only with --target"
    assert main(["compile", str(EXAMPLES / "lenet.net"), "-o", str(tmp_path), "--target", "c",
                 "--dump-after", "schedule"]) == 0
    out = capsys.readouterr().out
    assert "# plan after schedule" in out and "value:c1.conv <- " in out


def test_nvcc_rejecting_the_module_fails_the_command(tmp_path, monkeypatch, capsys):
    def reject(source, out_dir, *rest):
        raise nvcc.NvccError("nvcc failed for sm_80:\nkernels.cu(1): error: something")

    monkeypatch.setattr(nvcc, "available", lambda: True)
    monkeypatch.setattr(nvcc, "compile_cubins", reject)
    assert main(["compile", str(EXAMPLES / "lenet.net"), "-o", str(tmp_path), "--target", "cuda"]) == 1
    assert "the generated CUDA does not compile" in capsys.readouterr().err
    assert (tmp_path / "kernels.cu").exists() and not (tmp_path / "kernels.c").exists()
