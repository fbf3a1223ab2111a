"""Lowering: each distinct kernel body rendered once and shared by the layers
that compute the same thing, and the only pass that renders."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import netdsl.codegen.render as render
from netdsl.compiler import compile_graph
from netdsl.passes import plan_step
from netdsl.step import Call

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def alexnet_graph():
    return compile_graph(ROOT / "examples" / "alexnet.net", training=True)


def test_each_body_is_rendered_once(alexnet_graph, monkeypatch):
    calls = []
    real = render.render_layer
    module = importlib.import_module("netdsl.passes.lower")  # the package exports a function of that name
    monkeypatch.setattr(module, "render_layer", lambda *a: calls.append(a) or real(*a))
    plan = plan_step(alexnet_graph, 2, "c", lambda d: "host")
    layers = [n for n, d in alexnet_graph.nodes(data=True) if d.is_layer and d.kind != "transfer"]
    assert len(calls) < len(layers) / 1.4  # the towers share
    assert len({c[1] for c in calls}) == len(calls)  # one rendering per body name
    by_node = {}
    for step in plan.forward:
        if isinstance(step, Call):
            by_node.setdefault(step.node, []).append(step.kernel.name)
    assert by_node["conv1.conv@gpu0"] == by_node["conv1.conv@gpu1"]
    assert by_node["conv2.conv@gpu0"] == by_node["conv2.conv@gpu1"]
    names = {k.name for m in plan.modules for k in m.kernels}
    assert not any(re.search(r"gpu\d|conv\d_", name) for name in names), "a kernel is named after a layer"


def test_only_lowering_renders():
    for path in (ROOT / "netdsl" / "passes").glob("*.py"):
        if path.name != "lower.py":
            assert "codegen" not in path.read_text(), f"{path.name} imports the renderer"
