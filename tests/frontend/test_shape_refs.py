"""`channels(x)`, `height(x)`, `width(x)` in layer arguments: each use of a
block gets its own input's numbers, top-level arithmetic reads shapes that
follow `--set`, towers read their own copy (`all x`: every copy), and a
depthwise block built on `groups=channels(a)` computes what PyTorch's grouped
conv2d computes, forward and backward, and trains a step on the reference
backend. Errors point at the name inside the call."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tolerances import FLOAT32_RTOL, FLOAT64_RTOL, assert_close

from netdsl.compiler import compile_graph
from netdsl.errors import NetDslError
from netdsl.runtime.reference import ReferenceExecutor

HEAD = "param side = 16\ninput image : 3 x side x side\ninput label : 5 classes\n"
TAIL = "f = fc(t, 5)\nloss = softmax_loss(f, label)\n"

# A depthwise separable block: one 3x3 filter per input channel (`mult` of them), then
# a 1x1 conv to twice the input's channels. `a`'s channel count differs per use.
DEPTHWISE = """block dw(a, mult=1) {
  d = conv(a, mult * channels(a), size=3, pad=1, groups=channels(a)) -> relu
  p = conv(d, 2 * channels(a), size=1)
}
"""
TWO_USES = DEPTHWISE + "s = conv(image, 4, size=1) -> dw\nt = dw(s, mult=2)\n"
TRAIN = "train { batch = 2; seed = 3; optimizer = sgd(lr=0.01, momentum=0, weight_decay=0) }\n"


def graph(body: str, **overrides):
    return compile_graph(text=HEAD + body + TAIL, file="r.net", overrides={k: str(v) for k, v in overrides.items()})


def test_each_use_of_a_block_reads_its_own_input_channels():
    g = graph(TWO_USES)
    first, second = g.nodes["s.dw.d.conv"], g.nodes["t.d.conv"]
    assert (first.args["groups"], first.args["filters"], first.params["weight"]) == (4, 4, (4, 1, 3, 3))
    assert (second.args["groups"], second.args["filters"], second.params["weight"]) == (8, 16, (16, 1, 3, 3))
    assert g.nodes["s.dw.p"].shape == (8, 16, 16) and g.nodes["t.p"].shape == (16, 16, 16)


def test_heights_and_widths_follow_set_and_arithmetic_at_top_level():
    body = ("c = conv(image, 6, size=3, stride=2, pad=1)\n"
            "t = avgpool(c, height(c) / 2, stride=width(c) / 2) -> conv(channels(c) * 2 + 1, size=1)\n")
    g = graph(body)
    assert g.nodes["t.avgpool"].args["size"] == 4 and g.nodes["t.conv"].shape == (13, 2, 2)
    g = graph(body, side=32)
    assert g.nodes["t.avgpool"].args["size"] == 8 and g.nodes["t.conv"].shape == (13, 2, 2)


def test_a_param_may_read_a_shape_where_it_is_used():
    g = graph("param half = channels(s) / 2\ns = conv(image, 12, size=1)\nt = conv(s, half, size=1)\n")
    assert g.nodes["t"].args["filters"] == 6


def test_a_vector_has_channels_only():
    g = graph("v = fc(image, 7)\nt = fc(v, channels(v) * 3)\n")
    assert g.nodes["t"].shape == (21,)


def test_a_tower_reads_its_own_copy_and_all_every_copy():
    body = ("tower on gpu0, gpu1 { u = conv(image, 4, size=1) -> conv(channels(image) + 2, size=1)\n"
            "  w = conv(u, channels(u) * 2, size=1) }\n"
            "t = conv(all w, channels(all w), size=1) on gpu0\n")
    g = graph(body)
    assert g.nodes["w@gpu0"].args["filters"] == g.nodes["w@gpu1"].args["filters"] == 10
    assert g.nodes["t"].args["filters"] == 20


def test_set_layer_argument_may_read_a_shape():
    g = compile_graph(text=HEAD + TWO_USES + TAIL, file="r.net", overrides={"t.p.filters": "channels(s) + 1"})
    assert g.nodes["t.p"].shape == (9, 16, 16)


# (what, body, line, column, message, hint) for errors; HEAD is three lines long.
ERRORS = [
    ("unknown tensor", "t = conv(image, channels(imag), size=1)\n", 4, 26,
     "undefined name `imag` (did you mean `image`?)", "defined above it"),
    ("used before it exists", "t = conv(image, channels(later), size=1)\nlater = conv(image, 2, size=1)\n", 4, 26,
     "`later` is used before its definition at line 5", "move this one below it"),
    ("its own statement", "t = conv(image, 4, size=1) -> conv(height(t), size=1)\n", 4, 43,
     "`t` is used before its definition at line 4", "file order"),
    ("a param is no tensor", "t = conv(image, channels(side), size=1)\n", 4, 26,
     "channels(side): `side` is a param, not a tensor", "reads the shape of an input"),
    ("a vector has no width", "v = fc(image, 7)\nt = conv(image, width(v), size=1)\n", 5, 23,
     "width(v): `v` is a vector of 7 values, with no width", "channels(v) is its length"),
    ("two arguments", "t = conv(image, channels(image, 2), size=1)\n", 4, 17,
     "channels() takes one tensor", "write channels(x)"),
    ("a number", "t = conv(image, height(3), size=1)\n", 4, 24,
     "height() takes a tensor's name", "write height(x)"),
    ("in a repetition count", "t = conv(image, 4, size=1) * channels(image)\n", 4, 30,
     "a repetition count (`* N`) wants a whole number, got `channels(...)`", "in a layer's arguments"),
    ("its value is checked as written", "t = conv(image, channels(image) * 2, size=1, groups=4)\n", 4, 5,
     "6 filters do not divide into 4 groups", None),
    ("a tower's tensor from outside", "tower on gpu0, gpu1 { u = conv(image, 4, size=1) }\n"
     "t = conv(image, channels(u), size=1)\n", 5, 26, "exists once per device of its tower", "write `all u`"),
]


@pytest.mark.parametrize("what,body,line,column,message,hint", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_point_at_the_reference(what, body, line, column, message, hint):
    with pytest.raises(NetDslError) as err:
        graph(body)
    e = err.value
    assert (e.pos.file, e.pos.line, e.pos.column) == ("r.net", line, column), str(e)
    assert message in e.message and (hint is None or hint in (e.hint or "")), str(e)


def test_an_error_inside_a_block_notes_the_use():
    body = "block b(a) { y = conv(a, channels(z), size=1) }\nt = b(image)\n"
    with pytest.raises(NetDslError) as err:
        graph(body)
    text = str(err.value)
    assert "r.net:4:35: error: undefined name `z`" in text and "r.net:5:5: note: in block `b` used here" in text


# ---------------------------------------------------------------- numbers against PyTorch

def torch_network(params: dict, images: np.ndarray) -> tuple[torch.Tensor, dict]:
    """TWO_USES + TAIL written directly in PyTorch: conv2d with groups for the depthwise steps."""
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    x = torch.tensor(images, dtype=torch.float64)

    def conv(x, name, pad=0, groups=1):
        return F.conv2d(x, p[f"{name}.weight"], p[f"{name}.bias"], padding=pad, groups=groups)

    s = conv(x, "s.conv")
    s = conv(torch.relu(conv(s, "s.dw.d.conv", 1, groups=4)), "s.dw.p")
    t = conv(torch.relu(conv(s, "t.d.conv", 1, groups=8)), "t.p")
    return t.flatten(1) @ p["f.weight"].T + p["f.bias"], p


def test_the_depthwise_block_matches_pytorch_and_trains_a_step():
    g = compile_graph(text=HEAD + TWO_USES + TAIL + TRAIN, file="r.net", overrides={"side": "7"}, training=True)
    rng = np.random.default_rng(0)
    images, labels = rng.standard_normal((2, 3, 7, 7)), np.array([1, 4])
    for dtype, rtol in ((np.float32, FLOAT32_RTOL), (np.float64, FLOAT64_RTOL * 1e3)):
        ex = ReferenceExecutor(g, 2, seed=3, dtype=dtype)
        # Weights of a size that keeps every layer's output of order one.
        ex.set_params({k: rng.standard_normal(v.shape) / np.sqrt(max(v[0].size, 1)) for k, v in ex.params.items()})
        scores, p = torch_network(dict(ex.params), images)
        assert_close(ex.forward(images.astype(dtype)), scores.detach().numpy(), rtol, f"scores ({dtype.__name__})")
    # One training step (float64): plain SGD moves every weight by lr times PyTorch's gradient.
    loss = F.cross_entropy(scores, torch.tensor(labels), reduction="mean")
    loss.backward()
    before = {k: v.copy() for k, v in ex.params.items()}
    result = ex.step(images, labels)
    assert result["loss"] == pytest.approx(loss.item(), rel=1e-9)
    for name in ("s.dw.d.conv.weight", "t.d.conv.weight", "t.p.weight", "f.weight"):
        assert_close((before[name] - ex.params[name]) / 0.01, p[name].grad.numpy(), 1e-8, name)
    assert ex.evaluate(images, labels)["loss"] < result["loss"]


def test_the_documented_example_compiles_at_any_size():
    language = (Path(__file__).resolve().parents[2] / "docs" / "language.md").read_text()
    example = language.split("A depthwise separable block written once")[1].split("```\n")[1]
    head = "param size = 224\ninput image : 3 x size x size\ninput label : 10 classes\n"
    for side, pooled in ((224, 112), (160, 80)):
        g = compile_graph(text=head + example + "f = fc(pool, 10)\nloss = softmax_loss(f, label)\n", file="d.net",
                          overrides={"size": str(side)})
        assert g.nodes["s.dw.d.conv"].args["groups"] == 32 and g.nodes["t.d.conv"].args["groups"] == 64
        assert g.nodes["t.d.conv"].args["filters"] == 128 and g.nodes["t.p"].shape == (128, pooled, pooled)
        assert g.nodes["pool"].args["size"] == pooled and g.nodes["pool"].shape == (128, 1, 1)
