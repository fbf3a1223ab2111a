"""Input sizes from params and bracketed arithmetic: `--set size=N` changes the
input and every shape, parameter count and multiply-add after it exactly as
writing N would; a size that is not a positive whole number, or names no
param, is a positioned error; the examples' literal sizes read as before; and
what reads the input size later (data preparation, runs, ONNX export, the
PyTorch twin) gets the
evaluated number."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from tolerances import FLOAT32_RTOL, assert_close

from netdsl import ast
from netdsl.cli import main
from netdsl.compiler import Network, compile_graph
from netdsl.data.synthetic import make_shapes
from netdsl.errors import NetDslError
from netdsl.graph_ops import image_input
from netdsl.parse import parse_file, parse_text
from netdsl.train.datasets import data_plan, input_size
from netdsl.train.launch import checkpoint_network

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# The fc's weights and the pooled map both depend on the input's side.
BODY = """input label : 10 classes
c = conv(image, 6, size=5, stride=2, pad=1) -> relu -> maxpool(2)
d = conv(c, 8, size=3, pad=1) -> relu
f = fc(d, 10)
loss = softmax_loss(f, label)
train { batch = 4; epochs = 1; seed = 1; optimizer = sgd(lr=0.01); schedule = constant
        augment = [random_crop(side, from=side), scale(0.01)]; test = center_crop }
"""
NO_CROP = BODY.replace("random_crop(side, from=side), ", "")
PARAM = "param side = 32\ninput image : 3 x side x side\n" + BODY


def literal(side: int) -> str:
    return f"param side = {side}\ninput image : 3 x {side} x {side}\n" + BODY


def figures(g) -> dict[str, tuple]:
    return {n: (d.shape, d.params, d.macs) for n, d in g.nodes(data=True) if d.role.forward}


def parameters(g) -> int:
    return sum(math.prod(s) for _, d in g.nodes(data=True) for s in d.params.values())


@pytest.mark.parametrize("side", [32, 20, 17])
def test_set_size_gives_the_network_written_with_that_number(side):
    g = compile_graph(text=PARAM, file="p.net", overrides={"side": str(side)})
    written = compile_graph(text=literal(side), file="l.net")
    assert g.nodes["image"].shape == (3, side, side)
    assert figures(g) == figures(written)
    assert parameters(g) == parameters(written)


def test_the_set_changes_shapes_and_counts_downstream():
    small = compile_graph(text=PARAM, file="p.net", overrides={"side": "16"})
    large = compile_graph(text=PARAM, file="p.net")
    # conv 5x5 stride 2 pad 1 then 2x2 pooling: 32 -> 15 -> 7, 16 -> 7 -> 3
    assert large.nodes["d.conv"].shape == (8, 7, 7) and small.nodes["d.conv"].shape == (8, 3, 3)
    assert large.nodes["f"].params["weight"] == (10, 8 * 7 * 7) and small.nodes["f"].params["weight"] == (10, 72)
    assert parameters(large) - parameters(small) == 10 * 8 * (49 - 9)


def test_info_with_set_prints_what_the_literal_file_prints(tmp_path, capsys):
    (tmp_path / "p.net").write_text(PARAM)
    (tmp_path / "l.net").write_text(literal(24))
    assert main(["info", str(tmp_path / "p.net"), "--set", "side=24"]) == 0
    with_set = capsys.readouterr().out
    assert main(["info", str(tmp_path / "l.net")]) == 0
    written = capsys.readouterr().out
    strip = lambda text: text.split("\n", 1)[1]  # noqa: E731 (the first line names the file)
    assert "3x24x24" in with_set and strip(with_set) == strip(written)


def test_bracketed_arithmetic_and_params_naming_params():
    text = "param s = 8\nparam wide = s + 4\ninput image : 3 x (2 * s) x wide\n" + NO_CROP
    g = compile_graph(text=text, file="a.net")
    assert g.nodes["image"].shape == (3, 16, 12)
    g = compile_graph(text=text, file="a.net", overrides={"s": "10"})
    assert g.nodes["image"].shape == (3, 20, 14)
    g = compile_graph(text=text, file="a.net", overrides={"wide": "(3 * 5)"})
    assert g.nodes["image"].shape == (3, 16, 15)
    nested = "param s = 8\ninput image : (1 + 2) x ((s + 2) / 2 * 4) x (s - 1)\n" + NO_CROP
    assert compile_graph(text=nested, file="n.net").nodes["image"].shape == (3, 20, 7)


def test_a_bracketed_name_is_a_size_and_a_bare_name_alone_stays_a_label():
    program = ast_of("param n = 6\ninput v : (n)\ninput label : classes\ninput l2 : n classes\n")
    v, label, l2 = (s for s in program.statements if isinstance(s, ast.InputDecl))
    assert v.shape == (ast.Name("n", None),) and v.classes is None
    assert label.shape is None and label.classes == "classes"
    assert l2.shape is None and l2.classes == "n"


def ast_of(text: str):
    return parse_text(text, "t.net")


# (what, text of the image input line(s), --set, line, column, message words, hint words)
ERRORS = [
    ("unknown param", "param side = 16\ninput image : 3 x sid x side\n", {}, 2, 19,
     "size 2 of input `image`: unknown param `sid` (did you mean `side`?)", "param sid = 224"),
    ("unknown inside brackets", "input image : 3 x (2 * side) x 4\n", {}, 1, 24,
     "unknown param `side`", "declare it above the input"),
    ("zero after arithmetic", "param s = 16\ninput image : 3 x s x (s - 16)\n", {}, 2, 24,
     "size 3 of input `image` must be a positive whole number, but `s - 16` is 0", "values that make it 1 or more"),
    ("negative from --set", "param s = 16\ninput image : 3 x s x s\n", {"s": "-4"}, 2, 19,
     "but `s` is -4 (with --set s=-4)", "1 or more"),
    ("real number from --set", "param s = 16\ninput image : 3 x s x s\n", {"s": "2.5"}, 2, 19,
     "but `s` is `2.5` (with --set s=2.5)", "a size is a whole number"),
    ("literal zero", "input image : 3 x 0 x 8\n", {}, 1, 19,
     "size 2 of input `image` must be a positive whole number, not 0", "a size is a whole number"),
    ("inexact division", "param s = 16\ninput image : 3 x (s / 3) x s\n", {}, 2, 20,
     "`s / 3` is 16/3, not a whole number", "divides whole numbers exactly"),
    ("glued x", "param s = 16\ninput image : 3xs x s\n", {}, 2, 15,
     "`3xs`: `x` between sizes is a word of its own", "`3 x s`"),
    ("glued numbers", "input image : 3x16x16\n", {}, 1, 15,
     "`3x16x16`: `x` between sizes is a word of its own", "`3 x 16 x 16`"),
    ("arithmetic outside brackets", "param s = 8\ninput image : 3 x s * 2 x s\n", {}, 2, 21,
     "unexpected `*` in the sizes of an input", "in brackets"),
    ("a shape function", "input image : 3 x (channels(image)) x 4\n", {}, 1, 20,
     "`channels(...)` reads a tensor's shape", "in brackets"),
    ("too large", "input image : 3 x (65536 * 65536) x 4\n", {}, 1, 20,
     "size 2 of input `image` is too large", "at most"),
]


@pytest.mark.parametrize("what,head,sets,line,column,message,hint", ERRORS, ids=[e[0] for e in ERRORS])
def test_a_bad_size_is_a_positioned_error_with_a_hint(what, head, sets, line, column, message, hint):
    with pytest.raises(NetDslError) as err:
        compile_graph(text=head + NO_CROP, file="bad.net", overrides=sets)
    e = err.value
    assert (e.pos.file, e.pos.line, e.pos.column) == ("bad.net", line, column), str(e)
    assert message in e.message and hint in (e.hint or ""), str(e)


def test_the_command_prints_file_line_col_and_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.net"
    path.write_text(PARAM)
    assert main(["info", str(path), "--set", "side=0"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2:19: error: size 2 of input `image` must be a positive whole number, but `side` is 0" in err
    assert "hint:" in err and "Traceback" not in err


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.net")), ids=lambda p: p.name)
def test_every_example_reads_its_literal_sizes_as_before(example):
    written = re.search(r"^input \w+ : ([\d x]+?)\s*(#|$)", example.read_text(), re.M).group(1)
    sizes = tuple(int(n) for n in written.split(" x "))
    decl = next(s for s in parse_file(example).statements if isinstance(s, ast.InputDecl) and s.shape)
    assert all(isinstance(s, ast.Num) for s in decl.shape) and tuple(s.value for s in decl.shape) == sizes
    g = compile_graph(example)
    shape = g.nodes[image_input(g)].shape
    assert shape == sizes and all(type(n) is int for n in shape)


def test_data_preparation_reads_the_evaluated_size():
    net = Network(compile_graph(text=PARAM, file="p.net", overrides={"side": "20"}, training=True))
    assert input_size(net) == (3, 20, 20)
    prepared, train, test = data_plan(net)  # random_crop(side, from=side) follows the param too
    assert prepared == 20 and train.crop == test.crop == 20


def test_a_run_with_set_size_trains_and_keeps_the_size(tmp_path, capsys):
    data = make_shapes(tmp_path / "shapes", classes=10, train_per_class=2, val_per_class=1, size=24, seed=1)
    path = tmp_path / "p.net"
    path.write_text(PARAM)
    run = tmp_path / "run"
    assert main(["train", str(path), "--data", str(data), "--out", str(run), "--backend", "reference",
                 "--no-progress", "--set", "side=12"]) == 0
    capsys.readouterr()
    config = json.loads((run / "config.json").read_text())
    assert config["overrides"] == {"side": "12"}
    checkpoint = next(run.glob("*.npz"))
    net, _ = checkpoint_network(str(checkpoint))
    assert net.graph.nodes["image"].shape == (3, 12, 12) and net.graph.nodes["f"].params["weight"] == (10, 32)


def test_onnx_export_takes_the_evaluated_size():
    onnx = pytest.importorskip("onnx", reason="the `onnx` extra is not installed")
    from netdsl.inspect.onnx_export import onnx_model
    net = Network(compile_graph(text=PARAM, file="p.net", overrides={"side": "20"}, training=True))
    ex = net.executor(backend="reference", batch=1)
    model = onnx_model(net.graph, dict(ex.params))
    onnx.checker.check_model(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [3, 20, 20]


def test_the_torch_twin_runs_at_the_evaluated_size():
    torch = pytest.importorskip("torch")
    from netdsl.inspect.torch_twin import TorchTwin
    net = Network(compile_graph(text=PARAM, file="p.net", overrides={"side": "20"}, training=True))
    ex = net.executor(backend="reference", batch=2)
    images = np.random.default_rng(0).standard_normal((2, 3, 20, 20)).astype(np.float32)
    twin = TorchTwin(net.graph, dict(ex.params)).forward(torch.from_numpy(images)).detach().numpy()
    assert twin.shape == (2, 10)
    assert_close(twin, ex.forward(images), FLOAT32_RTOL, "scores")
