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


def test_block_by_use_position_sets_that_use_only():
    # `basic[2]`: the second use of `basic` in file order, layer1's second (`layer1.basic2`)
    g = compile_graph(EXAMPLES / "resnet18.net", overrides={"basic[2].c1.batchnorm.eps": "0.001",
                                                            "basic[5].c2.batchnorm.momentum": "0.5"})
    eps = {n: d.args["eps"] for n, d in g.nodes(data=True) if d.is_layer and d.kind == "batchnorm"}
    assert [n for n, e in eps.items() if e == 0.001] == ["layer1.basic2.c1.batchnorm"]
    assert eps["layer1.basic.c1.batchnorm"] == eps["layer2.basic.c1.batchnorm"] == 1e-5  # the others as written
    momentum = {n: d.args["momentum"] for n, d in g.nodes(data=True) if d.is_layer and n.endswith("c2.batchnorm")}
    assert momentum == {"layer1.basic.c2.batchnorm": 0.1, "layer1.basic2.c2.batchnorm": 0.1,
                        "layer2.basic.c2.batchnorm": 0.1, "layer2.down.c2.batchnorm": 0.1,
                        "layer3.basic.c2.batchnorm": 0.1, "layer3.down.c2.batchnorm": 0.1,
                        "layer4.basic.c2.batchnorm": 0.5, "layer4.down.c2.batchnorm": 0.1}


NESTED = """network nested
input image : 3 x 8 x 8
input label : 4 classes
block unit(t, c) {
  y = conv(t, c, size=3, pad=1) -> relu
}
block pair(t) {
  a = unit(t, 4)
  b = unit(a, 4)
}
first = unit(image, 4)
p = pair(first) * 2
scores = fc(p, 4)
loss = softmax_loss(scores, label)
"""


def test_uses_inside_a_repeated_block_count_once_per_use_of_it(tmp_path):
    # unit's uses in file order: first, then the pair's a and b, once for each of the two pairs
    order = ["first", "p.pair.a", "p.pair.b", "p.pair2.a", "p.pair2.b"]
    for i, use in enumerate(order, 1):
        g = compile_graph(text=NESTED, file="nested.net", overrides={f"unit[{i}].y.conv.stride": "2"})
        strided = [n for n, d in g.nodes(data=True) if d.is_layer and d.kind == "conv" and d.args["stride"] == 2]
        assert strided == [f"{use}.y.conv"]


def test_a_bad_use_position_is_positioned_at_the_block_with_its_uses(capsys):
    for position in ("0", "6", "x", "-1"):
        err = errors(capsys, f"basic[{position}].c1.conv.stride=2", file="resnet18.net")
        first, hint = err.splitlines()[0], err.split("hint: ")[1].splitlines()[0]
        assert first == (f"{EXAMPLES / 'resnet18.net'}:15:7: error: --set: block `basic` is used 5 times; "
                         f"`basic[{position}]` is not one of its uses"), err
        assert hint.startswith("uses are numbered from 1 to 5 in file order: basic[1] is layer1.basic, "
                               "basic[2] is layer1.basic2, basic[3] is layer2.basic"), err
        assert f"{EXAMPLES / 'resnet18.net'}:26:10: note: basic[2]: layer1.basic2" in err


def test_a_bad_block_or_layer_in_a_use_path(capsys):
    err = errors(capsys, "basci[2].c1.conv.stride=2", file="resnet18.net")
    assert err.startswith("error: --set: `basci[2]`: there is no block `basci` (did you mean `basic`?)")
    assert "blocks here: basic, down" in err
    err = errors(capsys, "basic[2].c9.conv.stride=2", file="resnet18.net")
    assert err.startswith("error: --set: block `basic` has no layer `c9.conv` (did you mean `c2.conv`?)")
    assert "in that use, layer1.basic2): c1.batchnorm, c1.conv, c1.relu, c2.add" in err
    err = errors(capsys, "basic[2].c1.conv.strde=2", file="resnet18.net")
    assert ("basic[2].c1.conv (conv, in use 2 of block `basic`, layer1.basic2) has no argument `strde` "
            "(did you mean `stride`?)") in err
