"""Every user error: `file:line:col: message`, the source line, a caret under
the spot, a hint, exit status 2 and no traceback."""
from __future__ import annotations

import re

import pytest

from netdsl.cli import main

HEAD = "input image : 3 x 32 x 32\ninput label : 10 classes\n"

# (name, body after HEAD, expected line, expected column, words the message must contain)
CASES = [
    ("missing paren", "c1 = conv(image, 8, size=3\nc2 = fc(c1, 10)\n", 4, 1, "missing `)`"),
    ("stray token", "c1 = conv(image, 8, size=3) )\n", 3, 29, "unexpected `)`"),
    ("unterminated block", "tower on gpu0, gpu1 {\n  c1 = conv(image, 8, size=3)\n", 3, 21, "unterminated block"),
    ("unknown kind", "c1 = convv(image, 8, size=3)\n", 3, 6, "did you mean `conv`"),
    ("unknown argument", "c1 = conv(image, 8, size=3, strde=2)\n", 3, 29, "unknown argument `strde`"),
    ("missing required", "c1 = conv(image, 8)\n", 3, 6, "missing required argument `size`"),
    ("wrong type", "c1 = conv(image, 8, size=1.5)\n", 3, 26, "wants a whole number"),
    ("undefined name", "c1 = conv(imag, 8, size=3)\n", 3, 11, "did you mean `image`"),
    ("duplicate name", "c1 = conv(image, 8, size=3)\nc1 = fc(c1, 10)\n", 4, 1, "duplicate name `c1`"),
    ("kernel too large", "c1 = conv(image, 8, size=40)\n", 3, 6, "larger than its 32x32 input"),
    ("pool too large", "c1 = maxpool(image, 33)\n", 3, 6, "larger than its 32x32 input"),
    ("channel mismatch", "c1 = fc(image, 7)\nloss = softmax_loss(c1, label)\n", 4, 8, "channel mismatch"),
    ("concat mismatch", "a = conv(image, 4, size=3)\nb = conv(image, 4, size=5)\nc = concat(a, b)\n", 5, 5,
     "cannot concatenate"),
    ("cross-device read without all", "tower on gpu0, gpu1 { c1 = conv(image, 8, size=3) }\nf = fc(c1, 10)\n", 4, 8,
     "write `all c1`"),
    ("unmarked plain cross-device read", "c1 = conv(image, 8, size=3) on gpu0\nf = fc(c1, 10) on gpu1\n", 4, 5,
     "without a cross-device link"),
    ("all outside a tower", "c1 = conv(image, 8, size=3)\nf = fc(all c1, 10)\n", 4, 12, "`all` gathers"),
    ("unknown device", "c1 = conv(image, 8, size=3) on tpu0\n", 3, 32, "unknown device `tpu0`"),
    ("used before definition", "a = fc(b, 3)\nb = fc(image, 3)\n", 3, 8, "used before its definition"),
    ("value out of range", "c1 = conv(image, 0, size=3)\n", 3, 18, "must be greater than 0"),
    ("conv bias word", "c1 = conv(image, 8, size=3, bias=off)\n", 3, 34, "or `none` (no bias)"),
    ("bad dropout rate", "c1 = fc(image, 4) -> dropout(1.5)\n", 3, 30, "less than 1"),
    ("unknown optimiser", "c1 = fc(image, 10)\ntrain { optimizer = sgdd(lr=0.1) }\n", 4, 21, "unknown optimizer `sgdd`"),
    ("unknown train setting", "c1 = fc(image, 10)\ntrain { batchsize = 3 }\n", 4, 9, "unknown train setting"),
    ("train value type", "c1 = fc(image, 10)\ntrain { batch = relu }\n", 4, 17, "wants a whole number"),
    ("unknown augmentation", "c1 = fc(image, 10)\ntrain { augment = [hflipp] }\n", 4, 20, "did you mean `hflip`"),
    ("bad character", "c1 = conv(image, 8, size=3) $\n", 3, 29, "unexpected character"),
    ("unknown defaults argument", "defaults conv { sise = 3 }\nc1 = conv(image, 8, size=3)\n", 3, 17,
     "unknown argument `sise`"),
    ("loss without labels", "c1 = fc(image, 10) -> softmax_loss\n", 3, 23, "takes 2 inputs"),
]


def run(tmp_path, capsys, body, *extra):
    path = tmp_path / "bad.net"
    path.write_text(HEAD + body)
    code = main(["info", str(path), *extra])
    return code, capsys.readouterr().err, path


@pytest.mark.parametrize("body,line,col,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_is_positioned_with_caret_and_hint(tmp_path, capsys, body, line, col, words):
    code, err, path = run(tmp_path, capsys, body)
    assert code == 2
    assert "Traceback" not in err
    first = err.splitlines()[0]
    assert first.startswith(f"{path}:{line}:{col}: error: "), err
    assert words in err, err
    source_line = (HEAD + body).splitlines()[line - 1]
    lines = err.splitlines()
    shown = next(i for i, l in enumerate(lines) if l.endswith(source_line.expandtabs(1)) and "|" in l)
    caret = lines[shown + 1]
    gutter = lines[shown].index("|") + 2
    assert caret.index("^") - gutter == col - 1, err


def test_hint_present_where_it_helps(tmp_path, capsys):
    _, err, _ = run(tmp_path, capsys, "c1 = convv(image, 8, size=3)\n")
    assert "hint: known kinds:" in err


@pytest.mark.parametrize("setting,words", [
    ("actt=tanh", "unknown name `actt` (did you mean `act`?)"),
    ("act", "bad --set `act`"),
    ("optimizer.lrr=0.1", "unknown name `optimizer.lrr`"),
    ("batch=1.5", "wants a whole number"),
])
def test_bad_set(tmp_path, capsys, setting, words):
    code, err, _ = run(tmp_path, capsys, "param act = relu\nc1 = fc(image, 10) -> act\n", "--set", setting)
    assert code == 2 and words in err and "Traceback" not in err, err


def test_unknown_set_lists_known_names(tmp_path, capsys):
    _, err, _ = run(tmp_path, capsys, "param act = relu\nc1 = fc(image, 10) -> act\n", "--set", "nope=1")
    assert re.search(r"hint: names --set accepts here: act, batch", err), err


def test_concat_names_the_input_that_differs_and_suggests_padding(tmp_path, capsys):
    body = "a = conv(image, 4, size=3)\nb = conv(image, 4, size=5)\nc = concat(a, b)\n"
    code, err, path = run(tmp_path, capsys, body)
    assert code == 2 and err.startswith(f"{path}:5:5: error: concat `c`: cannot concatenate"), err
    assert "input 2 (4x28x28) differs from input 1 (4x30x30) (inputs: 1 `a`, 2 `b`)" in err
    assert "input 2 is 2 pixel(s) smaller than input 1" in err and "padding it (pad=1) keeps the size" in err
    # an odd gap needs one more row and column than a symmetric pad gives
    _, err, _ = run(tmp_path, capsys, "a = conv(image, 4, size=2)\nb = conv(image, 4, size=1)\nc = concat(a, b)\n")
    assert "input 1 is 1 pixel(s) smaller than input 2" in err and "(pad=0, and one more row and column)" in err
    # spatial sizes that no padding explains get the plain rule
    _, err, _ = run(tmp_path, capsys, "a = conv(image, 4, size=3)\nb = conv(image, 4, size=3, stride=2)\n"
                                      "c = concat(a, b)\n")
    assert "hint: inputs joined by `all` or listed together must have the same height and width\n" in err, err


def test_missing_file(capsys):
    assert main(["info", "/nonexistent/x.net"]) == 2
    assert "network file /nonexistent/x.net does not exist" in capsys.readouterr().err
