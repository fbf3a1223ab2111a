"""Epilogue fusion: which elementwise layers join their producer's kernel, and
that the annotation leaves the step's graph and numbers as they were."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netdsl.compiler import Network, compile_graph
from netdsl.layers import REGISTRY
from netdsl.passes.fuse import fusion_groups

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

HEAD = """network small
input image : 3 x 8 x 8
input label : 10 classes
"""
TAIL = """
out = fc(z, 10) on gpu0
loss = softmax_loss(out, label)
"""


def small(body: str):
    return compile_graph(text=HEAD + body + TAIL, file="small.net", plan=True, batch=2)


@pytest.fixture(scope="module")
def alexnet():
    return compile_graph(EXAMPLES / "alexnet.net", plan=True)


def test_alexnet_groups(alexnet):
    groups = fusion_groups(alexnet)
    for device in ("gpu0", "gpu1"):
        for conv in ("conv1", "conv2", "conv3", "conv4", "conv5"):
            assert groups[f"{conv}.conv@{device}"] == [f"{conv}.conv@{device}", f"{conv}.act@{device}"]
        for fc in ("fc6", "fc7"):
            members = [f"{fc}.fc@{device}", f"{fc}.act@{device}", f"{fc}.dropout@{device}"]
            assert groups[f"{fc}.fc@{device}"] == members
            # the ReLU's backward reads its own output, so the fused kernel still writes it
            assert alexnet.nodes[members[0]]["fused_writes"] == members[1:]
        # conv1's backward reads its input, not its output: only the activation is written
        assert alexnet.nodes[f"conv1.conv@{device}"]["fused_writes"] == [f"conv1.act@{device}"]
    assert len(groups) == 14, "fc8 has no activation; LRN and pooling are not elementwise"
    epilogue = alexnet.nodes["fc6.fc@gpu0"]["epilogue"]
    assert [(e["node"], e["kind"], e["args"]) for e in epilogue] == \
        [("fc6.act@gpu0", "relu", {}), ("fc6.dropout@gpu0", "dropout", {"rate": 0.5})]


def test_groups_stay_on_one_device_and_never_hold_a_transfer(alexnet):
    for head, members in fusion_groups(alexnet).items():
        assert {alexnet.nodes[m]["device"] for m in members} == {alexnet.nodes[head]["device"]}
        assert not any("transfer" in REGISTRY[alexnet.nodes[m]["kind"]].traits for m in members)
        assert all(alexnet.nodes[m]["fused_into"] == head for m in members[1:])
    absorbed = [n for n, d in alexnet.nodes(data=True) if d.get("fused_into")]
    assert all("elementwise" in REGISTRY[alexnet.nodes[n]["kind"]].traits for n in absorbed)


def test_a_second_reader_of_the_pre_activation_value_blocks_fusion():
    g = small("a = conv(image, 4, size=3)\nb = relu(a)\nz = concat(a, b)")
    assert "fused_into" not in g.nodes["b"] and not fusion_groups(g)


def test_no_fusion_across_a_transfer():
    g = small("a = conv(image, 4, size=3) on gpu0\nb = transfer(a) on gpu1\nc = relu(b) on gpu1\n"
              "z = transfer(c) on gpu0")
    assert g.nodes["b"]["source_device"] == "gpu0"
    assert not fusion_groups(g), "the ReLU reads a copy from another device"


def test_a_chain_of_elementwise_layers_joins_one_group():
    g = small("a = conv(image, 4, size=3) -> maxpool(2) -> relu\nz = tanh(a) -> dropout(0.5)")
    chain = ["a.maxpool", "a.relu", "z.tanh", "z.dropout"]
    assert fusion_groups(g) == {"a.maxpool": chain}
    # the max-pool's backward reads its saved argmax only; each activation's reads its output
    assert g.nodes["a.maxpool"]["fused_writes"] == chain[1:]


def test_fusion_changes_neither_the_graph_nor_the_numbers():
    plain = compile_graph(EXAMPLES / "lenet.net", training=True)
    planned = compile_graph(EXAMPLES / "lenet.net", plan=True, batch=2)
    assert set(plain.nodes) == set(planned.nodes) and set(plain.edges) == set(planned.edges)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    labels = np.array([3, 7])
    results = [Network(g).executor("reference", batch=2).gradients(images, labels) for g in (plain, planned)]
    assert results[0][0] == results[1][0]
    for name, grad in results[0][1].items():
        np.testing.assert_array_equal(grad, results[1][1][name])
