"""The examples against the AlexNet paper's figures, and every example's sanity."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from netdsl.cli import main
from netdsl.compiler import compile_graph
from netdsl.report import summarise

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def stmt_output(g, stmt: str) -> list[tuple[int, ...]]:
    """Output shapes of a statement's last layer, one per tower copy."""
    entry = g.graph["tensors"][stmt]
    return [g.nodes[n].shape for n in entry["nodes"].values()]


def merged(g, stmt):
    shapes = stmt_output(g, stmt)
    return (sum(s[0] for s in shapes),) + tuple(shapes[0][1:])


def test_two_gpu_alexnet_matches_the_paper():
    g = compile_graph(EXAMPLES / "alexnet.net")
    s = summarise(g, batch=128)
    assert s.parameters == 60_965_224
    assert s.macs == 724_406_816
    conv_out = {stmt: merged(g, f"{stmt}") for stmt in ("conv1", "conv2", "conv3", "conv4", "conv5")}
    # The paper quotes layer outputs before pooling: conv1 55x55x96, conv2 27x27x256.
    assert merged(g, "conv1")[0] == 96 and g.nodes["conv1.conv@gpu0"].shape == (48, 55, 55)
    assert g.nodes["conv2.conv@gpu0"].shape == (128, 27, 27)
    assert conv_out["conv3"] == (384, 13, 13) and conv_out["conv4"] == (384, 13, 13)
    assert g.nodes["conv5.conv@gpu0"].shape == (128, 13, 13)
    assert merged(g, "fc6") == (4096,) and merged(g, "fc7") == (4096,) and merged(g, "fc8") == (1000,)


def test_cross_gpu_links_are_conv3_fc6_fc7_fc8():
    g = compile_graph(EXAMPLES / "alexnet.net")
    links = summarise(g, batch=1).links
    assert sorted({stmt for stmt, *_ in links}) == ["conv3", "fc6", "fc7", "fc8"]
    per_image = {(stmt, src, dst): b for stmt, src, dst, b in links}
    assert per_image[("conv3", "gpu1", "gpu0")] == 128 * 13 * 13 * 4
    assert per_image[("fc6", "gpu0", "gpu1")] == 128 * 6 * 6 * 4
    assert per_image[("fc8", "gpu1", "gpu0")] == 2048 * 4
    assert ("fc8", "gpu0", "gpu1") not in per_image
    # conv4 and conv5 read only their own tower: no transfer feeds them
    for stmt in ("conv2", "conv4", "conv5"):
        for dev in ("gpu0", "gpu1"):
            preds = list(g.predecessors(f"{stmt}.conv@{dev}"))
            assert all(g.nodes[p].kind != "transfer" and g.nodes[p].device == dev for p in preds)


def test_one_gpu_alexnet():
    g = compile_graph(EXAMPLES / "alexnet-1gpu.net")
    s = summarise(g, batch=1)
    assert s.parameters == 62_378_344 and not s.links
    assert {g.nodes[n].device for n in g if g.nodes[n].is_layer} == {"gpu0"}


def test_set_swaps_activation_and_pooling():
    g = compile_graph(EXAMPLES / "alexnet.net", overrides={"act": "tanh", "pool": "2"})
    assert g.nodes["conv1.act@gpu0"].kind == "tanh"
    assert g.nodes["conv1.maxpool@gpu0"].args["size"] == 2
    assert g.nodes["conv1.maxpool@gpu0"].shape == (48, 27, 27)
    assert summarise(g, 1).parameters == 60_965_224


def test_set_overrides_train_settings():
    g = compile_graph(EXAMPLES / "alexnet.net", overrides={"batch": "64", "optimizer.lr": "0.02"})
    train = g.graph["train"]
    assert train.batch == 64 and train.optimizer.kwargs == {"lr": 0.02, "momentum": 0.9, "weight_decay": 0.0005}


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.net")), ids=lambda p: p.name)
def test_every_example_compiles_and_ends_in_a_loss(example):
    """One main loss; side losses (googlenet.net's classifiers) have a weight."""
    g = compile_graph(example)
    losses = [n for n in g if g.nodes[n].kind == "softmax_loss"]
    assert [n for n in losses if g.nodes[n].args.get("weight") is None] == ["loss"]
    assert all(g.out_degree(n) == 0 for n in losses)


def test_info_prints_table_and_totals(capsys):
    assert main(["info", str(EXAMPLES / "alexnet.net"), "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "60,965,224" in out and "724,406,816" in out
    assert "conv1.conv@gpu0" in out and "48x55x55" in out
    assert "234,496 bytes per image each way" in out


@pytest.mark.parametrize("example,parameters", [
    ("resnet50.net", "25,557,032"), ("mobilenet_v2.net", "3,504,872"), ("googlenet.net", "13,004,888"),
    ("se_resnet.net", "280,958")])
def test_info_prints_the_published_parameter_counts(capsys, example, parameters):
    assert main(["info", str(EXAMPLES / example), "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^parameters +{parameters}$", out, re.M), out[-600:]


def test_compile_writes_json_and_dot(tmp_path, capsys):
    assert main(["compile", str(EXAMPLES / "alexnet.net"), "-o", str(tmp_path), "--dump-after", "expand_towers"]) == 0
    out = capsys.readouterr().out
    assert "# graph after expand_towers" in out and "conv1.conv@gpu1" in out
    data = json.loads((tmp_path / "graph.json").read_text())
    names = {n["name"]: n for n in data["nodes"]}
    assert names["conv3.cat@gpu0"]["inputs"] == ["conv2.maxpool@gpu0", "conv2.maxpool@gpu1->gpu0"]
    assert names["conv2.maxpool@gpu1->gpu0"]["bytes"] == 86_528
    dot = (tmp_path / "graph.dot").read_text()
    assert dot.count("subgraph cluster_") == 3  # host, gpu0, gpu1
    assert dot.count("color=red") == 7


def test_dump_after_unknown_pass(capsys):
    assert main(["compile", str(EXAMPLES / "lenet.net"), "--dump-after", "fuse"]) == 2
    assert "unknown pass" in capsys.readouterr().err
