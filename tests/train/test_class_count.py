"""The class count as a param (`input label : classes`, `--set classes=N`) and
from the data (`input label : auto`), with the run keeping the count it used."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from netdsl.cli import main
from netdsl.compiler import compile_graph
from netdsl.errors import NetDslError
from netdsl.data.synthetic import make_shapes

from runfiles import TINY, train_run, write_net

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AUTO = (TINY.replace("input label : 10 classes", "param classes = 10\ninput label : auto")
        .replace("f = fc(c, 10)", "f = fc(c, classes)").replace("TEST", "center_crop"))


def label_and_output(g) -> tuple[int, int]:
    return g.nodes["label"].shape[0], g.nodes["f"].shape[0]


def test_a_param_sizes_the_label_and_set_changes_it():
    text = AUTO.replace("input label : auto", "input label : classes")
    assert label_and_output(compile_graph(text=text, file="p.net")) == (10, 10)
    assert label_and_output(compile_graph(text=text, file="p.net", overrides={"classes": "3"})) == (3, 3)
    assert label_and_output(compile_graph(text=AUTO, file="a.net")) == (10, 10)  # no data: the file's value


def test_alexnet_keeps_its_1000_classes_and_parameter_count_and_takes_set_classes():
    g = compile_graph(EXAMPLES / "alexnet.net")
    params = sum(int(__import__("math").prod(s)) for n in g for s in g.nodes[n].params.values())
    assert g.nodes["label"].shape == (1000,) and params == 60_965_224
    g = compile_graph(EXAMPLES / "alexnet.net", overrides={"classes": "3"})
    assert g.nodes["label"].shape == (3,) and g.nodes["fc8"].shape == (3,)


@pytest.mark.parametrize("text,message", [
    ("input label : auto", "`input label : auto` needs a `param classes`"),
    ("input label : n", "`input label : n` needs a `param n`"),
    ("param n = 0\ninput label : n", "the class count `n` must be a positive whole number, not 0"),
])
def test_a_label_count_that_names_nothing_is_a_positioned_error(text, message):
    source = TINY.replace("input label : 10 classes", text).replace("TEST", "center_crop")
    with pytest.raises(NetDslError) as err:
        compile_graph(text=source, file="bad.net")
    assert err.value.message == message and err.value.pos is not None


def test_auto_sizes_the_network_from_the_training_folder(tmp_path, capsys):
    data = make_shapes(tmp_path / "five", classes=5, train_per_class=4, val_per_class=1, size=32, seed=1)
    net, run = write_net(tmp_path, text=AUTO), tmp_path / "run"
    assert train_run(net, data, run) == 0
    captured = capsys.readouterr()
    assert "input label : auto: 5 classes, from " in captured.out and "warning" not in captured.err
    config = json.loads((run / "config.json").read_text())
    assert config["overrides"] == {"classes": "5"} and len(config["classes"]) == 5
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0  # the same network again: nothing to do
    assert "nothing to do" in capsys.readouterr().out
    assert main(["test", "--checkpoint", str(run / "best.npz"), "--data", str(data), "--backend", "reference"]) == 0
    assert "5 validation images" in capsys.readouterr().out
    # an explicit --set wins over the folder, and a disagreement is said
    assert train_run(net, data, tmp_path / "set", "--set", "classes=8") == 0
    assert "the data has 5 classes but the network's label input has 8" in capsys.readouterr().err
