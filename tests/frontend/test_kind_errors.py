"""The errors of the kinds MobileNets, EfficientNets, squeeze-and-excitation
blocks and adaptive heads need: each `file:line:col: message`, the source
line with a caret under the call, a hint, exit status 2 and no traceback."""
from __future__ import annotations

import pytest

from netdsl.cli import main

HEAD = "input image : 3 x 32 x 32\ninput label : 10 classes\n"

# (name, body after HEAD, line, column, words in the message, words in the hint)
CASES = [
    ("clip ends reversed", "c1 = conv(image, 4, size=3) -> clip(2, -1)\n", 3, 32, "`min` must be less than `max`",
     "hard-tanh is clip(-1, 1)"),
    ("clip ends equal", "c1 = conv(image, 4, size=3) -> clip(0.5, 0.5)\n", 3, 32, "`min` must be less than `max`",
     "relu6 clip(0, 6)"),
    ("clip without max", "c1 = conv(image, 4, size=3) -> clip(0)\n", 3, 32, "missing required argument `max`",
     "clip(min, max)"),
    ("mul of different maps", "a = conv(image, 4, size=3)\nb = conv(image, 4, size=5)\nc = mul(a, b)\n", 5, 5,
     "cannot multiply tensors of shapes 4x30x30 and 4x28x28", "make one of them C x 1 x 1"),
    ("mul scale of other channels", "a = conv(image, 4, size=3)\ns = global_avgpool(image)\nc = mul(a, s)\n", 5, 5,
     "cannot multiply tensors of shapes 4x30x30 and 3x1x1", "one value per channel"),
    ("mul of one input", "a = conv(image, 4, size=3) -> mul\n", 3, 31, "takes 2 inputs", "mul"),
    ("add scale of other channels", "a = conv(image, 4, size=3)\ns = global_avgpool(image)\nc = add(a, s)\n", 5, 5,
     "cannot add tensors of different shapes", "project"),
    ("adaptive pool to nothing", "c1 = conv(image, 4, size=3) -> adaptive_avgpool(0)\n", 3, 49,
     "`out` of adaptive_avgpool must be greater than 0", "output height and width"),
    ("adaptive pool to a bad pair", "c1 = conv(image, 4, size=3) -> adaptive_maxpool(out=[6, -1])\n", 3, 53,
     "`out` of adaptive_maxpool must be greater than 0", "output height and width"),
    ("adaptive pool of a vector", "f = fc(image, 8) -> adaptive_maxpool(2)\n", 3, 21,
     "adaptive_maxpool needs a C x H x W input", "cannot follow a fully connected layer"),
]


@pytest.mark.parametrize("body,line,col,words,hint", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_kind_error_is_positioned_with_a_hint(tmp_path, capsys, body, line, col, words, hint):
    path = tmp_path / "bad.net"
    path.write_text(HEAD + body)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines[0].startswith(f"{path}:{line}:{col}: error: ") and words in lines[0], err
    source_line = (HEAD + body).splitlines()[line - 1]
    shown = next(i for i, text in enumerate(lines) if text.endswith(source_line) and "|" in text)
    assert lines[shown + 1].index("^") - (lines[shown].index("|") + 2) == col - 1, err
    assert any(text.startswith("hint: ") and hint in text for text in lines), err
