"""Blocks, `call * N` repetition and whole-number arithmetic: what they expand
to, how their layers are named, and errors that point at the line inside the
block and at the use."""
from __future__ import annotations

import math

import pytest

from netdsl.cli import main
from netdsl.compiler import compile_graph
from netdsl.errors import NetDslError
from netdsl.graph_ops import ordered_inputs

HEAD = "input image : 3 x 16 x 16\ninput label : 10 classes\n"
BASIC = """block basic(a, w, stride=1) {
  c1 = conv(a, w, size=3, stride=stride, pad=1) -> relu
  c2 = conv(c1, w, size=3, pad=1) -> add(a) -> relu
}
"""
TAIL = "f = fc(s, 10)\nloss = softmax_loss(f, label)\n"


def graph(body: str, **overrides):
    return compile_graph(text=HEAD + body + TAIL, file="b.net", overrides={k: str(v) for k, v in overrides.items()})


def layers(g) -> list[str]:
    return sorted(n for n, d in g.nodes(data=True) if d.is_layer)


def test_each_use_gets_its_own_layers_named_under_it():
    g = graph(BASIC + "stem = conv(image, 8, size=3, pad=1)\nb1 = basic(stem, 8)\ns = conv(b1, 8, size=1) -> basic(8)\n")
    assert {"b1.c1.conv", "b1.c1.relu", "b1.c2.conv", "b1.c2.add", "b1.c2.relu", "s.conv", "s.basic.c1.conv",
            "s.basic.c2.relu"} <= set(layers(g))
    # the block's input is the use's first argument, or the chain so far
    assert ordered_inputs(g, "b1.c1.conv") == ["stem"] and ordered_inputs(g, "b1.c2.add") == ["b1.c2.conv", "stem"]
    assert ordered_inputs(g, "s.basic.c2.add") == ["s.basic.c2.conv", "s.conv"]
    assert ordered_inputs(g, "f") == ["s.basic.c2.relu"]  # the output is the last statement's
    # own weights: two uses, two sets of parameters
    assert g.nodes["b1.c1.conv"].params == g.nodes["s.basic.c1.conv"].params == {"weight": (8, 8, 3, 3),
                                                                                        "bias": (8,)}


def test_parameters_defaults_and_keywords():
    pair = "block pair(a, w, stride=1, out=2 * w) { c1 = conv(a, w, size=3, stride=stride) -> conv(out, size=1) }\n"
    g = graph(pair + "s = conv(image, 4, size=1) -> pair(4, stride=2)\n")
    assert g.nodes["s.pair.c1.conv"].args["stride"] == 2 and g.nodes["s.pair.c1.conv2"].args["filters"] == 8
    g = graph(pair + "s = pair(image, w=3, out=5)\n")  # the input by position, the rest by keyword
    assert g.nodes["s.c1.conv"].args["filters"] == 3 and g.nodes["s.c1.conv2"].args["filters"] == 5
    # stride 2 with the identity shortcut: the residual add refuses the two shapes
    with pytest.raises(NetDslError, match="cannot add tensors of different shapes: 4x8x8 and 4x16x16"):
        graph(BASIC + "s = conv(image, 4, size=1) -> basic(4, stride=2)\n")

def test_repetition_is_the_call_written_out():
    text = BASIC + "param n = 3\ns = conv(image, 4, size=1) -> basic(4) * n\n"
    g = graph(text)
    written = graph(BASIC + "s = conv(image, 4, size=1) -> basic(4) -> basic(4) -> basic(4)\n")
    assert layers(g) == layers(written)
    assert ordered_inputs(g, "s.basic3.c1.conv") == ["s.basic2.c2.relu"]
    assert "s.basic4.c1.conv" in layers(graph(text, n=4)) and "s.basic2.c1.conv" not in layers(graph(text, n=1))
    # a repeated call with an input reads it once: later copies read the copy before
    g = graph(BASIC + "s = basic(image, 3) * 2\n")
    assert ordered_inputs(g, "s.basic2.c1.conv") == ["s.basic.c2.relu"]
    g = graph("s = conv(image, 4, size=3, pad=1) * 2 -> relu * 0\n")
    assert layers(g) == ["f", "loss", "s.conv", "s.conv2"]


def test_a_statement_used_zero_times_passes_its_input_through():
    stem = "param n = 1\nstem = conv(image, 4, size=3, pad=1)\n"
    g = graph(BASIC + stem + "s = basic(stem, 4) * n\n", n=0)  # `--set n=0` switches the block off
    assert layers(g) == ["f", "loss", "stem"] and ordered_inputs(g, "f") == ["stem"]
    assert g.nodes["f"].params["weight"] == (10, 4 * 16 * 16)  # shapes follow the tensor passed on
    assert "s.c1.conv" in layers(graph(BASIC + stem + "s = basic(stem, 4) * n\n"))
    g = graph("s = relu(image) * 0 -> conv(8, size=3) * 0\n")  # every call of the chain off
    assert layers(g) == ["f", "loss"] and ordered_inputs(g, "f") == ["image"]
    # inside a block: a stage of zero units gives the block's input as its output
    stage = BASIC + "block stage(a, w, n) { units = basic(a, w) * n }\nt = conv(image, 4, size=1)\n"
    g = graph(stage + "s = stage(t, 4, 0) -> relu\n")
    assert ordered_inputs(g, "s.relu") == ["t"] and not any(".units" in n for n in layers(g))


def test_arithmetic_wherever_a_number_goes():
    g = graph("param w = 6\ns = conv(image, 2 * w, size=w / 2, pad=(w - 2) / 4) -> maxpool(w - 4)\n"
              "train { batch = 4 * w + 1 }\n")
    args = g.nodes["s.conv"].args
    assert (args["filters"], args["size"], args["pad"]) == (12, 3, 1)
    assert g.nodes["s.maxpool"].args["size"] == 2 and g.graph["train"].batch == 25
    assert graph("s = conv(image, 8 - 2 - 1, size=3)\n").nodes["s"].args["filters"] == 5  # left to right
    assert graph("param w = 8\ns = conv(image, w, size=3)\n", w="2 * 3").nodes["s"].args["filters"] == 6


def test_blocks_nest_and_take_blocks_and_kinds_as_arguments():
    text = BASIC + """block stage(a, w, n, unit=basic) { first = unit(a, w, stride=1) -> unit(w) * (n - 1) }
block act2(a, act=relu) { y = conv(a, 4, size=1) -> act }
s = conv(image, 4, size=1) -> stage(4, 2) -> act2(act=tanh)
"""
    g = graph(text)
    assert ordered_inputs(g, "s.stage.first.unit.c1.conv") == ["s.conv"]
    assert "s.stage.first.unit2.c2.relu" in g
    assert g.nodes["s.act2.y.act"].kind == "tanh"  # named as written, so `--set`s keep the names


def test_blocks_inside_towers():
    text = BASIC + "tower on gpu0, gpu1 { t = conv(image, 4, size=1) -> basic(4) }\ns = concat(all t)\n"
    g = graph(text)
    assert {"t.basic.c2.relu@gpu0", "t.basic.c2.relu@gpu1"} <= set(g)
    assert g.nodes["t.basic.c1.conv@gpu1"].device == "gpu1"


def run(tmp_path, capsys, body):
    path = tmp_path / "bad.net"
    path.write_text(HEAD + body + TAIL)
    code = main(["info", str(path)])
    return code, capsys.readouterr().err, path


# (name, body, (line, col) of the error, words, (line, col) of each note, innermost first)
INSIDE = [
    ("unknown argument inside", BASIC.replace("pad=1) -> add", "pda=1) -> add") + "s = basic(image, 3)\n",
     (5, 28), "unknown argument `pda` of conv", [(7, 5)]),
    ("shapes of the residual add", BASIC + "s = basic(image, 8)\n", (5, 38), "cannot add tensors of different shapes: 8x16x16 and 3x16x16", [(7, 5)]),
    ("division with a remainder", BASIC.replace("c1 = conv(a, w,", "c1 = conv(a, w / 3,") + "s = basic(image, 8)\n",
     (4, 16), "`8 / 3` is 8/3, not a whole number", [(7, 5)]),
    ("undefined name inside", BASIC.replace("add(a)", "add(b)") + "s = basic(image, 3)\n", (5, 42),
     "undefined name `b`", [(7, 5)]),
    ("nested use", BASIC.replace("size=3, stride", "size=0, stride") +
     "block two(a, w) { o = basic(a, w) -> basic(w) }\ns = conv(image, 3, size=1) -> two(3)\n", (4, 24),
     "must be greater than 0", [(7, 23), (8, 31)]),
]


@pytest.mark.parametrize("body,at,words,notes", [c[1:] for c in INSIDE], ids=[c[0] for c in INSIDE])
def test_errors_inside_a_block_point_at_the_line_and_the_use(tmp_path, capsys, body, at, words, notes):
    code, err, path = run(tmp_path, capsys, body)
    assert code == 2 and "Traceback" not in err, err
    assert err.startswith(f"{path}:{at[0]}:{at[1]}: error: ") and words in err, err
    assert err.count("error:") == 1
    shown = [line.split(": note: ")[0] for line in err.splitlines() if ": note: " in line]
    assert shown == [f"{path}:{line}:{col}" for line, col in notes], err
    assert "note: in block `" in err
    # each note quotes the use's line with a caret under it
    lines = err.splitlines()
    for i, line in enumerate(lines):
        if ": note: " in line:
            source = (HEAD + body + TAIL).splitlines()[int(line.split(":")[1]) - 1]
            assert lines[i + 1].endswith(source) and "^" in lines[i + 2]


@pytest.mark.parametrize("body,at,words", [
    (BASIC + "s = basic(image)\n", (7, 5), "missing required argument `w` of block `basic`"),
    (BASIC + "s = basic(image, 3, 1, 2)\n", (7, 24), "takes at most 2 argument(s) after its input"),
    (BASIC + "s = basic(image, 3, strid=2)\n", (7, 21), "did you mean `stride`"),
    (BASIC + "s = basic(3)\n", (7, 5), "block `basic` needs an input"),
    ("block b(a) { o = b(a) }\ns = b(image)\n", (3, 18), "block `b` uses itself"),
    ("block conv(a) { o = relu(a) }\ns = relu(image)\n", (3, 7), "is a layer kind"),
    ("block b(a=1) { o = relu(a) }\ns = b(image)\n", (3, 11), "names its input and takes no default"),
    ("block b(a, w) { w = relu(a) }\ns = b(image, 1)\n", (3, 17), "duplicate name `w` in block `b`"),
    ("block b(a) { }\ns = b(image)\n", (3, 7), "has no statements"),
    ("block b(a) { o = relu(a) }\nb = relu(image)\ns = b(b)\n", (4, 1), "duplicate name `b`"),
    ("s = conv(image, 4, size=3) * -1\n", (3, 30), "0 or more"),
    ("s = concat(image, image) * 0\n", (3, 1), "repeats its only call 0 times, so it passes its input through, "
                                                "but its first call reads 2 tensors"),
    ("s = concat(image, image) * 0 -> relu * 0\n", (3, 1), "repeats each of its 2 calls 0 times"),
    (BASIC + "s = basic(imag, 3) * 0\n", (7, 11), "undefined name `imag` (did you mean `image`?)"),
    ("s = conv(image, 4 / 0, size=3)\n", (3, 17), "divides by zero"),
    ("s = conv(image, 2 * 1.5, size=3)\n", (3, 21), "arithmetic takes whole numbers"),
    ("s = conv(image, 2 * q, size=3)\n", (3, 21), "`q` is not a param"),
    ("param block = 3\ns = relu(image)\n", (3, 7), "reserved word"),
])
def test_errors_at_the_use_or_the_definition(tmp_path, capsys, body, at, words):
    code, err, path = run(tmp_path, capsys, body)
    assert code == 2 and "Traceback" not in err, err
    assert err.startswith(f"{path}:{at[0]}:{at[1]}: error: ") and words in err, err


def test_resnet20_counts_follow_the_blocks_per_stage():
    from pathlib import Path
    example = Path(__file__).resolve().parents[2] / "examples" / "resnet20-cifar.net"

    def count(**sets):
        g = compile_graph(example, overrides={k: str(v) for k, v in sets.items()})
        convs = [n for n, d in g.nodes(data=True) if d.is_layer and d.kind == "conv"]
        return len(convs), sum(math.prod(s) for _, d in g.nodes(data=True) if d.is_layer
                               for s in d.params.values())
    assert count() == (21, 273_258)  # 19 convs of the paper's 20 layers, the 2 projections; the fc
    assert count(n=18)[0] == 6 * 18 + 1 + 2  # ResNet-110
