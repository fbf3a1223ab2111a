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
    # each kernel carries a comment naming its layer, kind and source line
    assert "/* conv1.conv (conv, line 21): forward_images */" in c
    assert "/* conv1.conv (conv, line 21): im2col */" in cu
    assert "void conv1_conv_forward_images(" in c and "__global__" in cu and "__global__" not in c
    plan = json.loads((out / "plan.json").read_text())
    assert plan["batch"] == 128 and set(plan["schedule"]) == {"gpu0"}
    assert plan["fusion"]["conv2.conv"] == {"members": ["conv2.conv", "conv2.act"], "writes": ["conv2.act"]}
    memory = json.loads((out / "memory.json").read_text())
    gpu0 = memory["devices"]["gpu0"]
    assert gpu0["arena_bytes"] < gpu0["sum_bytes"] and gpu0["buffers"]
    assert "c: 41 kernels for 13 layers in kernels.c" in printed
    assert "gpu0: planned peak" in printed and "for every buffer apart" in printed
    assert json.loads((out / "graph.json").read_text())["network"] == "cifar"


def test_register_table(compiled):
    code, out, printed = compiled
    if not nvcc.available():
        print("nvcc is not on PATH: the cubins and register table are not checked")
        pytest.skip("nvcc not on PATH")
    assert (out / "kernels.sm_80.cubin").stat().st_size > 0 and (out / "kernels.sm_90.cubin").stat().st_size > 0
    header = next(line for line in printed.splitlines() if line.startswith("kernel "))
    assert "sm_80 regs" in header and "sm_90 regs" in header
    row = next(line for line in printed.splitlines() if line.startswith("conv1_conv_im2col "))
    assert all(cell.isdigit() for cell in row.split()[1:])
    assert "sm_80: 43 kernels" in printed and "sm_90: 43 kernels" in printed


def test_dump_after_a_plan_pass(tmp_path, capsys):
    assert main(["compile", str(EXAMPLES / "lenet.net"), "-o", str(tmp_path), "--dump-after", "fuse_epilogues"]) == 0
    out = capsys.readouterr().out
    assert "# graph after fuse_epilogues" in out and "c1.conv:backward" in out
    assert not (tmp_path / "plan.json").exists(), "files of the plan only with --target"


def test_nvcc_rejecting_the_module_fails_the_command(tmp_path, monkeypatch, capsys):
    def reject(source, out_dir, *rest):
        raise nvcc.NvccError("nvcc failed for sm_80:\nkernels.cu(1): error: something")

    monkeypatch.setattr(nvcc, "available", lambda: True)
    monkeypatch.setattr(nvcc, "compile_cubins", reject)
    assert main(["compile", str(EXAMPLES / "lenet.net"), "-o", str(tmp_path), "--target", "cuda"]) == 1
    assert "the generated CUDA does not compile" in capsys.readouterr().err
    assert (tmp_path / "kernels.cu").exists() and not (tmp_path / "kernels.c").exists()
