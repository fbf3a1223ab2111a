"""`--set LAYER.ARG=value` reaches one layer's arguments: LAYER as `netdsl info`
prints it without `@device`, so every tower copy follows; a block's layers by
their full name, one use at a time; the value wins over the call and `defaults`."""
from __future__ import annotations

from pathlib import Path

from netdsl.cli import main
from netdsl.compiler import compile_graph

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_every_tower_copy_follows_and_only_the_named_layer():
    g = compile_graph(EXAMPLES / "alexnet.net", overrides={"conv1.conv.stride": "3", "fc6.dropout.rate": "0.3"})
    for device in ("gpu0", "gpu1"):
        assert g.nodes[f"conv1.conv@{device}"].args["stride"] == 3
        assert g.nodes[f"conv1.conv@{device}"].shape == (48, 73, 73)  # (224 + 4 - 11) // 3 + 1
        assert g.nodes[f"conv1.maxpool@{device}"].args["stride"] == 2
        assert g.nodes[f"fc6.dropout@{device}"].args["rate"] == 0.3
        assert g.nodes[f"fc7.dropout@{device}"].args["rate"] == 0.5


def test_the_value_wins_over_a_positional_argument_and_defaults():
    g = compile_graph(EXAMPLES / "lenet.net", overrides={"c1.conv.filters": "8", "c1.conv.init": "gauss(0.1)"})
    conv = g.nodes["c1.conv"]
    assert conv.args["filters"] == 8 and conv.shape[0] == 8 and conv.args["init"].value == 0.1
    assert g.nodes["c3.conv"].args["init"].value == 0.05  # the defaults still hold elsewhere


def test_a_block_layer_is_set_in_one_use():
    g = compile_graph(EXAMPLES / "resnet18.net", overrides={"layer1.basic.c1.batchnorm.eps": "0.001"})
    assert g.nodes["layer1.basic.c1.batchnorm"].args["eps"] == 0.001
    assert g.nodes["layer1.basic2.c1.batchnorm"].args["eps"] == 1e-5


def test_block_dot_layer_reaches_every_use():
    # `basic.c1.batchnorm`: the layer as named inside the block, in each of its four uses
    g = compile_graph(EXAMPLES / "resnet18.net", overrides={"basic.c1.batchnorm.eps": "0.001"})
    eps = {n: d.args["eps"] for n, d in g.nodes(data=True) if d.is_layer and d.kind == "batchnorm"}
    assert [n for n, e in eps.items() if e == 0.001] == [
        "layer1.basic.c1.batchnorm", "layer1.basic2.c1.batchnorm", "layer2.basic.c1.batchnorm",
        "layer3.basic.c1.batchnorm", "layer4.basic.c1.batchnorm"]
    assert eps["layer2.down.c1.batchnorm"] == eps["layer1.basic.c2.batchnorm"] == 1e-5  # other blocks, layers


def test_a_bad_block_path_lists_the_blocks_layers(capsys):
    err = errors(capsys, "basic.c9.conv.stride=2", file="resnet18.net")
    assert err.startswith("error: --set: block `basic` has no layer `c9.conv` (did you mean `c2.conv`?)")
    assert "c1.batchnorm, c1.conv, c1.relu, c2.add, c2.batchnorm, c2.conv, c2.relu" in err
    err = errors(capsys, "basic.c1.conv.strde=2", file="resnet18.net")
    assert "basic.c1.conv (conv, in every use of block `basic`) has no argument `strde`" in err
    assert "`basic` is a block, not a layer" in errors(capsys, "basic.stride=2", file="resnet18.net")
    err = errors(capsys, "layer9.conv.stride=2", file="resnet18.net")
    assert "or BLOCK.LAYER.ARGUMENT, the layer named as inside the block, for every use of basic, down" in err


def errors(capsys, *settings, file="alexnet.net") -> str:
    argv = ["info", str(EXAMPLES / file)]
    for setting in settings:
        argv += ["--set", setting]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_an_unknown_argument_lists_the_kinds(capsys):
    err = errors(capsys, "conv1.conv.strid=2")
    assert "conv1.conv (conv) has no argument `strid` (did you mean `stride`?)" in err
    assert "hint: conv takes: filters, size, stride, pad" in err


def test_a_statement_name_points_at_its_layers(capsys):
    err = errors(capsys, "conv1.stride=2")
    assert "`conv1` is a statement of several layers" in err
    assert "hint: name the layer: conv1.conv.stride, conv1.maxpool.stride" in err


def test_an_unknown_layer_lists_the_layers(capsys):
    err = errors(capsys, "conv9.conv.stride=2")
    assert "unknown name `conv9.conv.stride` (did you mean" in err
    assert "LAYER.ARGUMENT for these layers" in err and "conv1.conv, conv1.act, conv1.norm" in err
    assert "@gpu0" not in err.split("hint:")[1]


def test_a_bad_value_is_positioned_in_the_setting(capsys):
    err = errors(capsys, "conv1.conv.stride=0")
    assert err.startswith("<--set conv1.conv.stride>:1:1: error: `stride` of conv must be greater than 0")


def test_a_bad_param_value_is_reported_where_it_was_given(capsys):
    # `--set pool=0` makes every maxpool's size 0: the command line is blamed, with its value,
    # and a note points at the file's use of the param (not the file's own value, 3)
    err = errors(capsys, "pool=0")
    first, _, notes = err.partition("\n")
    assert first == "<--set pool>:1:1: error: `size` of maxpool must be greater than 0, but --set pool gives 0", err
    assert "hint: the file's value is replaced by `--set pool`" in err
    assert f"{EXAMPLES / 'alexnet.net'}:" in notes and ": note: `size` of maxpool reads `pool` here" in notes
