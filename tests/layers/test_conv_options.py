"""conv's options as a file writes them: pairs, `pad=same`, dilation and groups,
their shapes and counts, and a positioned error for each misuse."""
from __future__ import annotations

import pytest

from netdsl.cli import main
from netdsl.compiler import compile_graph

HEAD = "input image : 4 x 9 x 8\ninput label : 3 classes\n"
TAIL = "s = fc(h, 3)\nloss = softmax_loss(s, label)\n"


def conv_node(args: str, params: str = ""):
    g = compile_graph(text=HEAD + params + f"h = conv(image, {args})\n" + TAIL)
    return g.nodes["h"]


@pytest.mark.parametrize("args,shape,weight,macs", [
    ("6, size=3", (6, 7, 6), (6, 4, 3, 3), 6 * 7 * 6 * 4 * 9),
    ("6, size=[3, 3]", (6, 7, 6), (6, 4, 3, 3), 6 * 7 * 6 * 4 * 9),  # a square pair is the int
    ("6, size=[1, 7], stride=[2, 1], pad=[0, 3]", (6, 5, 8), (6, 4, 1, 7), 6 * 5 * 8 * 4 * 7),
    ("6, size=3, dilation=2", (6, 5, 4), (6, 4, 3, 3), 6 * 5 * 4 * 4 * 9),  # a 5x5 extent
    ("6, size=3, pad=same, dilation=[2, 1]", (6, 9, 8), (6, 4, 3, 3), 6 * 9 * 8 * 4 * 9),
    ("8, size=3, pad=1, groups=2", (8, 9, 8), (8, 2, 3, 3), 8 * 9 * 8 * 2 * 9),
    ("4, size=3, groups=4", (4, 7, 6), (4, 1, 3, 3), 4 * 7 * 6 * 1 * 9),  # depthwise
])
def test_shapes_parameters_and_multiply_adds(args, shape, weight, macs):
    node = conv_node(args)
    assert node.shape == shape and node.params["weight"] == weight and node.macs == macs


def test_a_param_may_hold_a_pair():
    assert conv_node("6, size=k, pad=same", "param k = [1, 5]\n").shape == (6, 9, 8)


# (argument list, expected column, words the message must contain)
ERRORS = [
    ("6, size=3, groups=4", 5, "6 filters do not divide into 4 groups"),
    ("6, size=3, groups=3", 5, "4 input channels do not divide into 3 groups"),
    ("4, size=3, pad=same, stride=2", 5, "`pad=same` needs stride 1"),
    ("4, size=2, pad=same", 5, "needs an odd kernel extent"),
    ("4, size=[1, 2, 3]", 25, "a pair has two whole numbers"),
    ("4, size=[3, 0]", 25, "must be greater than 0"),
    ("4, size=3, pad=[1, -1]", 32, "must be 0 or more"),
    ("4, size=3, pad=valid", 32, "or `same`, not `valid`"),
    ("4, size=3, pad=1.5", 32, "wants a whole number or a pair"),
    ("4, size=3, dilation=5", 5, "dilated to 11x11) is larger than its 9x8 input"),
]


@pytest.mark.parametrize("args,col,words", ERRORS, ids=[e[0] for e in ERRORS])
def test_misuse_is_a_positioned_error(tmp_path, capsys, args, col, words):
    path = tmp_path / "bad.net"
    path.write_text(HEAD + f"h = conv(image, {args})\n" + TAIL)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"bad.net:3:{col}: error:" in err and words in err and "Traceback" not in err
