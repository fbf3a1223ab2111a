"""What `netdsl compile` and `netdsl info` print about memory is what the
backends allocate, and kernel names never come from layer names."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl.cli import main
from netdsl.compiler import compile_graph
from netdsl.passes import plan_step
from netdsl.runtime import cbuild
from netdsl.runtime.cpu import Executor
from netdsl.runtime.select import c_compiler_available

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
needs_c = pytest.mark.skipif(not c_compiler_available() or cbuild.find_blas() is None,
                             reason="the cpu backend needs a C compiler and a CBLAS library")


def printed_arenas(text: str) -> dict[str, int]:
    return {device: int(n.replace(",", "")) for device, n in re.findall(r"^  (\w+): .* \(([\d,]+) bytes\)$", text, re.M)}


@needs_c
def test_compile_prints_the_arena_the_cpu_executor_allocates(tmp_path, capsys):
    assert main(["compile", str(EXAMPLES / "cifar.net"), "--target", "c", "--batch", "16", "-o", str(tmp_path)]) == 0
    printed = printed_arenas(capsys.readouterr().out)
    ex = Executor(netdsl.load(EXAMPLES / "cifar.net").graph, 16)
    assert printed == {"host": ex.arenas["host"].nbytes} == {"host": ex.plan.arenas["host"].nbytes}


def test_info_prints_the_arenas_of_the_cuda_plan(capsys):
    assert main(["info", str(EXAMPLES / "alexnet.net"), "--batch", "8"]) == 0
    printed = printed_arenas(capsys.readouterr().out)
    plan = plan_step(compile_graph(EXAMPLES / "alexnet.net", training=True), 8, "cuda")
    assert printed == {device: arena.nbytes for device, arena in plan.arenas.items()}
    assert set(printed) == {"gpu0", "gpu1"}


COLLIDING = """
input image : 3 x 8 x 8
input label : 4 classes
a = conv(image, 4, size=3) -> relu
a_conv = conv(image, 4, size=3)
both = concat(a, a_conv)
scores = fc(both, 4)
loss = softmax_loss(scores, label)
"""


@needs_c
def test_layers_whose_c_names_would_collide_train(tmp_path, capsys):
    """`a.conv` and `a_conv` once made the same C identifier; kernels are now named by
    what they compute, and both layers run (sharing one kernel body)."""
    path = tmp_path / "collide.net"
    path.write_text(COLLIDING)
    assert main(["compile", str(path), "--target", "c", "-o", str(tmp_path / "out")]) == 0
    g = compile_graph(path, training=True)
    ex = Executor(g, 2)
    calls = [s for s in ex.plan.forward if s.node in ("a.conv", "a_conv")]
    assert {s.node for s in calls} == {"a.conv", "a_conv"}
    assert len({s.kernel.name for s in calls}) == 1  # one body, two layers
    gen = np.random.default_rng(0)
    images = gen.standard_normal((2, 3, 8, 8)).astype(np.float32)
    first = ex.step(images, np.array([0, 1]))["loss"]
    for _ in range(5):
        last = ex.step(images, np.array([0, 1]))["loss"]
    assert np.isfinite(last) and last < first
