"""The matrix products' precision: a train setting (`precision = auto | fp32 | tf32 |
bf16`, or `--set precision=...`), resolved per target before lowering and recorded on
the Plan; `auto` is TF32 on cuda (PyTorch's default for convolutions), FP32 on C."""
from __future__ import annotations

from pathlib import Path

import pytest

from netdsl import precision
from netdsl.cli import main
from netdsl.compiler import compile_graph
from netdsl.passes import plan_step

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("asked, cuda, c", [("auto", "tf32", "fp32"), ("fp32", "fp32", "fp32"),
                                            ("tf32", "tf32", "fp32"), ("bf16", "bf16", "fp32")])
def test_the_setting_resolves_per_target_and_the_plan_records_it(asked, cuda, c):
    g = compile_graph(EXAMPLES / "lenet.net", overrides={"precision": asked}, training=True)
    assert g.graph["train"].precision.name == asked
    assert plan_step(g, 2, "cuda").precision == cuda
    assert plan_step(g, 2, "c").precision == c


def test_an_explicit_precision_wins_over_the_train_block():
    g = compile_graph(EXAMPLES / "lenet.net", overrides={"precision": "bf16"}, training=True)
    assert plan_step(g, 2, "cuda", precision="fp32").precision == "fp32"


def test_a_file_may_set_it_in_its_train_block(tmp_path):
    source = (EXAMPLES / "lenet.net").read_text().replace("train {", "train {\n  precision = bf16", 1)
    assert "precision = bf16" in source
    path = tmp_path / "net.net"
    path.write_text(source)
    assert compile_graph(path, training=True).graph["train"].precision.name == "bf16"


def test_the_c_kernels_do_not_depend_on_the_setting():
    texts = set()
    for asked in precision.CHOICES:
        g = compile_graph(EXAMPLES / "lenet.net", overrides={"precision": asked}, training=True)
        texts.add("".join(m.text for m in plan_step(g, 2, "c").modules))
    assert len(texts) == 1


def test_the_run_says_what_it_computes():
    assert precision.describe("auto", "cuda", "cuda") == "precision: tf32 matrix products (auto on the cuda backend)"
    assert precision.describe("bf16", "c", "cpu") == \
        "precision: fp32 matrix products (bf16 asked; the cpu backend computes in fp32 only)"
    assert precision.describe("bf16", "cuda", "cuda") == "precision: bf16 matrix products"


def test_an_unknown_precision_is_a_positioned_error(capsys):
    assert main(["info", str(EXAMPLES / "lenet.net"), "--set", "precision=tf16"]) == 2
    err = capsys.readouterr().err
    assert "unknown precision `tf16`" in err and "did you mean `bf16`" in err and "auto, fp32, tf32, bf16" in err
