"""Mistakes that used to surface late (an epoch into training) or as a Python
exception: each is now a positioned error from `netdsl info`, exit 2."""
from __future__ import annotations

import pytest

from netdsl.cli import main

HEAD = "input image : 3 x 32 x 32\ninput label : 10 classes\n"
NET = HEAD + "f = fc(image, 10)\nloss = softmax_loss(f, label)\n"  # lines 1-4; line 5 is the case's

# (name, text, line, column, words the message must contain)
CASES = [
    ("step every 0", NET + "train { schedule = step(every=0) }", 5, 31, "`every` of step() must be 1 or more"),
    ("negative lr", NET + "train { optimizer = sgd(lr=-1) }", 5, 28, "`lr` of sgd()"),
    ("infinite lr", NET + "train { optimizer = sgd(lr=1e400) }", 5, 28, "number too large"),
    ("negative momentum", NET + "train { optimizer = sgd(momentum=-0.5) }", 5, 34, "`momentum` of sgd()"),
    ("negative weight decay", NET + "train { optimizer = sgd(weight_decay=-1) }", 5, 38, "`weight_decay`"),
    ("plateau patience 0", NET + "train { schedule = plateau(patience=0) }", 5, 37, "`patience` of plateau()"),
    ("scale 0", NET + "train { augment = [scale(0)] }", 5, 26, "`factor` of scale()"),
    ("seed -1", NET + "train { seed = -1 }", 5, 16, "`seed` must be between 0"),
    ("pca_lighting -1", NET + "train { augment = [pca_lighting(-1)] }", 5, 33, "`std` of pca_lighting()"),
    ("crop larger than input", NET + "train { augment = [random_crop(40, from=48)] }", 5, 20,
     "random_crop(40) does not fit the network's 32x32 input"),
    ("crop from smaller than crop", NET + "train { augment = [random_crop(32, from=30)] }", 5, 20,
     "random_crop(from=30) is smaller"),
    ("negative init std", NET + "defaults fc { init = gauss(-0.1) }", 5, 28, "gauss() needs a spread of 0 or more"),
    ("negative uniform limit", NET + "g = fc(image, 3, init=uniform(-1))", 5, 31, "uniform() needs a spread"),
    ("two unweighted losses", NET + "l2 = softmax_loss(f, label)", 5, 6, "a second loss `l2` without a weight"),
    ("two image inputs", HEAD + "input im2 : 3 x 32 x 32\nf = fc(image, 10)\nloss = softmax_loss(f, label)", 3, 7,
     "a second image input `im2`"),
    # limits
    ("401-digit number", NET + "train { batch = " + "9" * 401 + " }", 5, 17, "number too large"),
    ("batch 1e30", NET + "train { batch = 1e30 }", 5, 17, "too large"),
    ("huge batch", NET + "train { batch = 100000000 }", 5, 17, "`batch` must be between 1 and 65,536"),
    ("filters 1e30", NET + "c = conv(image, 1e30, size=3)", 5, 17, "too large"),
    ("tensor beyond memory", NET + "c = conv(image, 100000000, size=3)", 5, 5, "more than fits in memory"),
    ("lists nested 600 deep", NET + "param p = " + "[" * 600 + "]" * 600, 5, 75, "nested more than 64 deep"),
    ("calls nested 600 deep", NET + "param p = " + "g(" * 600 + ")" * 600, 5, 140, "nested more than 64 deep"),
    # valid-looking files that broke
    ("loss of scores twice", HEAD + "f = fc(image, 10)\nloss = softmax_loss(f, f)\n", 4, 8, "reads `f` twice"),
    ("loss without a label", HEAD + "f = fc(image, 10)\ng = fc(image, 10)\nloss = softmax_loss(f, g)\n", 5, 8,
     "needs a label input"),
    ("param naming a number used as a kind", HEAD + "param act = 5\nf = fc(image, 10) -> act\n", 4, 22,
     "unknown layer kind `5` (the value of param `act`)"),
    ("reserved x", HEAD + "x = fc(image, 10)\nloss = softmax_loss(x, label)\n", 3, 1, "`x` is a reserved word"),
]


@pytest.mark.parametrize("text,line,col,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_info_rejects_with_position(tmp_path, capsys, text, line, col, words):
    path = tmp_path / "bad.net"
    path.write_text(text + "\n")
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    first = err.splitlines()[0]
    assert first.startswith(f"{path}:{line}:{col}: error: "), first
    assert words in first


def test_a_copy_through_transfer_concatenates_twice(tmp_path, capsys):
    path = tmp_path / "ok.net"
    path.write_text(HEAD + "p = conv(image, 4, size=3)\nq = transfer(p)\nc = concat(p, q)\n"
                    "f = fc(c, 10)\nloss = softmax_loss(f, label)\n")
    assert main(["info", str(path)]) == 0
    assert "8x30x30" in capsys.readouterr().out


def test_byte_order_mark_is_accepted(tmp_path, capsys):
    path = tmp_path / "bom.net"
    path.write_bytes("\ufeff".encode() + NET.encode())
    assert main(["info", str(path)]) == 0
    assert "softmax_loss" in capsys.readouterr().out


def test_long_source_line_is_cut_in_the_message(tmp_path, capsys):
    path = tmp_path / "long.net"
    path.write_text(NET + "f2 = fc(image, 10" + " " * 1_000_000 + ", $)\n")
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:5:") and "unexpected character" in err
    assert len(err) < 2000


def test_default_crop_mismatch_is_reported_before_training(tmp_path, capsys):
    """No written augment: the paper's random_crop(224) is checked when training starts, by name."""
    path = tmp_path / "small.net"
    path.write_text(NET)
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--no-progress", "--backend", "reference"]) == 2
    err = capsys.readouterr().err
    assert "random_crop(224" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
