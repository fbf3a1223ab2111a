"""The matrix products' precision: a train setting (`precision = auto | fp32 | tf32 |
bf16`, or `--set precision=...`), resolved per target before lowering and recorded on
the Plan; `auto` is TF32 on cuda (PyTorch's default for convolutions), FP32 on C."""
from __future__ import annotations

from pathlib import Path

import numpy as np
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


@pytest.mark.parametrize("format_", ["tf32", "bf16"])
def test_the_references_operand_rounding_is_the_formats(format_):
    """netdsl.precision.round_operand (bit arithmetic, what the reference executor multiplies)
    against the arithmetic definition tests/codegen/test_mma_gemm.py checks by hand: random
    float32 values over many magnitudes, exact ties of the format, and infinities."""
    import sys
    sys.path.insert(0, str(EXAMPLES.parent / "tests" / "codegen"))
    from test_mma_gemm import rounded

    gen = np.random.default_rng(3)
    values = (gen.standard_normal(20000) * 10.0 ** gen.integers(-20, 20, 20000)).astype(np.float32)
    bits = 10 if format_ == "tf32" else 7
    ties = np.float32(1.0 + 2.0 ** -(bits + 1)) * np.float32([1, -1, 3, -3, 0.75])
    values = np.concatenate([values, ties])
    expected = rounded(format_)(values.astype(np.float64))
    np.testing.assert_array_equal(precision.round_operand(values, format_), expected.astype(np.float32))
    np.testing.assert_array_equal(precision.round_operand(values.astype(np.float64), format_), expected)
    assert np.isinf(precision.round_operand(np.float32([np.inf]), format_)).all()
    assert precision.round_operand(values, "fp32") is values
