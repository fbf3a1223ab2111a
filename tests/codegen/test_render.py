"""The code generator's contract: what a rendered layer declares, and the
rules the generator itself keeps (a template per kind, no kind named in
Python, deterministic text)."""
from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
from kernel_cases import all_cases

from netdsl.codegen import SCALARS, TARGETS, Buffer, Declarations, Tensor, environment, render_layer, render_module
from netdsl.codegen.render import c_block, c_identifier, f32
from netdsl.layers import REGISTRY

CASES = [case for case in all_cases() if case.batch == 3]
CODEGEN = Path(__file__).resolve().parents[2] / "netdsl" / "codegen"


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("case", CASES, ids=str)
def test_declared_buffers_follow_the_layer(case, target):
    source = case.render(target)
    buffers = source.buffers
    for i, shape in enumerate(case.in_shapes):
        assert buffers[f"x{i}"].role == "input"
        if buffers[f"x{i}"].dtype == "float32":
            assert buffers[f"x{i}"].size == case.batch * math.prod(shape)
            assert buffers[f"dx{i}"] == Buffer(f"dx{i}", "grad_input", buffers[f"x{i}"].size)
    for name, shape in case.layer.param_shapes(case.args, case.in_shapes).items():
        assert buffers[name] == Buffer(name, "param", math.prod(shape))
        assert buffers["d" + name] == Buffer("d" + name, "grad_param", math.prod(shape))
    assert buffers["y"].role == "output" and buffers["dy"].role == "grad_output"
    assert source.forward and source.backward


@pytest.mark.parametrize("case", CASES, ids=str)
def test_passes_write_only_what_they_own(case):
    source = case.render("c")
    # a training forward moves the running state (batchnorm's statistics); backward never does
    writable = {"forward": {"output", "saved", "scratch", "state"}, "backward": {"grad_input", "grad_param", "scratch"}}
    for which, roles in writable.items():
        for kernel in getattr(source, which):
            for arg in kernel.args:
                assert arg.scalar is None or SCALARS[arg.scalar] == arg.ctype
                if arg.buffer is not None and not arg.const:
                    assert arg.buffer.role in roles, f"{which} kernel {kernel.name} writes {arg.buffer}"


@pytest.mark.parametrize("case", CASES, ids=str)
def test_backward_keeps_only_what_forward_wrote_or_was_given(case):
    source = case.render("c")
    written = {arg.buffer.name for k in source.forward for arg in k.args if arg.buffer is not None and not arg.const}
    for name in source.kept_for_backward:
        assert source.buffers[name].role in {"input", "param"} or name in written
    saved = {name for name, buf in source.buffers.items() if buf.role == "saved"}
    assert saved <= set(source.kept_for_backward), "a saved buffer nobody reads"


def test_what_backward_keeps_is_what_its_maths_needs():
    def kept(kind, args, shape):
        return render_layer(kind, "n", 1, args, [shape], shape, 2, "c").kept_for_backward

    assert kept("relu", {}, (5,)) == ("y",)           # relu' is a function of the output
    assert kept("dropout", {"rate": 0.5}, (5,)) == ()  # the mask is redrawn
    assert kept("maxpool", {"size": 2}, (1, 4, 4)) == ("argmax",)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_kernel_names_its_node_and_line(case):
    source = case.render("cuda")
    for kernel in source.kernels:
        assert (kernel.node, kernel.kind, kernel.line) == (case.node, case.kind, 100 + case.index)
        if kernel.shape != "gemm":  # the shared matrix product is rendered once per module
            assert f"/* {case.node} ({case.kind}, line {100 + case.index}): {kernel.purpose} */" in source.text
            assert f" {kernel.name}(" in source.text


@pytest.mark.parametrize("c, cuda", [("_c.j2", "_cuda.j2"), ("gemm_c.j2", "gemm_cuda.j2")])
def test_the_two_dialects_offer_the_same_names(c, cuda):
    def exported(name):
        module = environment().get_template(name).module
        return sorted(n for n in dir(module) if not n.startswith("_"))

    assert exported(c) == exported(cuda)
    assert "kernel" in exported(c) or "sgemm" in exported(c)


def test_every_kind_has_a_template():
    templates = CODEGEN.parents[1] / "templates"
    assert sorted(k for k in REGISTRY if not (templates / f"{k}.j2").exists()) == []


def test_codegen_never_names_a_kind():
    """No string in the generator's code (docstrings aside) is a kind: `if kind == ...` has no place here."""
    strings = set()
    for path in CODEGEN.glob("*.py"):
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node)}
        strings |= {node.value for node in ast.walk(tree)
                    if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings}
    assert sorted(strings & set(REGISTRY)) == [], "kind-specific code belongs in the layer module or its template"


def test_rendering_is_deterministic():
    first = render_module([case.render("c") for case in CASES], "c")
    assert render_module([case.render("c") for case in CASES], "c") == first


def test_module_refuses_clashing_kernel_names():
    # Both names become the C identifier relu1_gpu0.
    twins = [render_layer("relu", node, 1, {}, [(4,)], (4,), 2, "c") for node in ("relu1@gpu0", "relu1.gpu0")]
    with pytest.raises(ValueError, match="clashes"):
        render_module(twins, "c")


def test_missing_arguments_are_reported():
    with pytest.raises(ValueError, match="missing argument.*filters"):
        render_layer("conv", "c1", 1, {"size": 3}, [(3, 8, 8)], (4, 6, 6), 1, "c")


def test_a_matrix_product_past_its_buffer_fails_at_render_time():
    declare = Declarations(TARGETS["c"], "fc", "n", 1, "n")
    small, big = (Tensor(Buffer(name, "scratch", size), (size,)) for name, size in (("a", 11), ("b", 100)))
    with pytest.raises(ValueError, match="has 11 elements"):
        declare.gemm("p", small, big, big, 3, 4, 4, lda=4, ldb=4, ldc=4)


def test_float_literals_read_back_as_the_same_float32():
    import numpy as np

    for value in (0.9, 1e-4, 2.0, 1 / 0.75, 5.9604644775390625e-08, -3.5, 0.0, 123456789.0):
        literal = f32(value)
        assert literal.endswith("f") and np.float32(float(literal[:-1])) == np.float32(value)


def test_identifiers_and_indentation():
    assert c_identifier("conv1.conv@gpu0") == "conv1_conv_gpu0"
    assert c_identifier("1x") == "n_1x"
    assert c_block("for (;;) {\nx = 1 +\n2;\n\n\n}\n") == "    for (;;) {\n        x = 1 +\n            2;\n    }"
