"""A network without a loss (an inference graph, as an ONNX import's) is valid for
`info` and `compile`; `train` and `test` refuse it with a positioned error that asks
for a loss. Wider score maps before a `softmax_loss` stay a positioned error."""
from __future__ import annotations

import json

import pytest

from netdsl.cli import main
from netdsl.data.synthetic import make_shapes

NO_LOSS = """input image : 3 x 32 x 32
conv1 = conv(image, 8, 3, pad=1) -> relu
fc1 = fc(conv1, 10)
probs = softmax(fc1)
"""


@pytest.fixture()
def no_loss(tmp_path):
    path = tmp_path / "noloss.net"
    path.write_text(NO_LOSS)
    return path


def test_info_accepts_it_and_names_its_output(no_loss, capsys):
    assert main(["info", str(no_loss)]) == 0
    out = capsys.readouterr().out
    assert "probs" in out and "softmax" in out
    assert "parameters            82,154" in out  # 8*3*9+8 + 8192*10+10
    assert "outputs               `probs` (no loss" in out
    assert "parameter gradients" not in out and "momentum" not in out  # an inference step's memory


@pytest.mark.parametrize("target", ["c", "cuda"])
def test_compile_plans_the_forward_pass_alone(no_loss, tmp_path, capsys, target):
    out = tmp_path / "out"
    assert main(["compile", str(no_loss), "-o", str(out), "--target", target]) == 0
    plan = json.loads((out / "plan.json").read_text())
    assert plan["forward"] and not plan["backward"] and not plan["update"]
    kernels = (out / ("kernels.c" if target == "c" else "kernels.cu")).read_text()
    assert "softmax_10_to_10_forward" in kernels


def _assert_asks_for_a_loss(err: str, path) -> None:
    first = err.splitlines()[0]
    assert first.startswith(f"{path}:4:9: error: the network has no loss layer, so it cannot be "), first
    assert "its output is `probs`" in first
    assert "hint: end it with a loss (softmax_loss), e.g. `loss = softmax_loss(scores, label)`" in err
    assert "Traceback" not in err


def test_train_asks_for_a_loss(no_loss, tmp_path, capsys):
    assert main(["train", str(no_loss), "--out", str(tmp_path / "run"), "--backend", "reference"]) == 2
    err = capsys.readouterr().err
    _assert_asks_for_a_loss(err, no_loss)
    assert "cannot be trained" in err
    assert not (tmp_path / "run").exists()


def test_test_asks_for_a_loss(no_loss, tmp_path, capsys):
    from netdsl.train.launch import network_from_source
    net = network_from_source(NO_LOSS, str(no_loss), {})
    net.executor(backend="reference", batch=1).save(no_loss.with_suffix(".npz"))
    data = make_shapes(tmp_path / "shapes", classes=2, train_per_class=1, val_per_class=1, size=32, seed=0)
    assert main(["test", "--checkpoint", str(no_loss.with_suffix(".npz")), "--data", str(data),
                 "--backend", "reference", "--no-progress"]) == 2
    err = capsys.readouterr().err
    _assert_asks_for_a_loss(err, no_loss)
    assert "cannot be tested" in err


def test_several_losses_without_a_main_one_are_still_refused(tmp_path, capsys):
    path = tmp_path / "two.net"
    path.write_text("input image : 3 x 8 x 8\ninput label : 4 classes\nf = fc(image, 4)\n"
                    "a = softmax_loss(f, label, weight=0.5)\nb = softmax_loss(f, label, weight=0.5)\n")
    assert main(["info", str(path)]) == 2
    assert "none is the main loss" in capsys.readouterr().err


@pytest.mark.parametrize("head, ok", [("conv(image, 5, size=3, pad=1) -> global_avgpool", True),
                                      ("conv(image, 5, size=1) -> avgpool(8)", True),
                                      ("conv(image, 5, size=3, pad=1)", False),
                                      ("conv(image, 5, size=3, pad=1) -> avgpool(4)", False)])
def test_softmax_loss_takes_c_x_1_x_1_scores_only(tmp_path, capsys, head, ok):
    path = tmp_path / "head.net"
    path.write_text(f"input image : 3 x 8 x 8\ninput label : 5 classes\nscores = {head}\n"
                    "loss = softmax_loss(scores, label)\n")
    assert main(["info", str(path)]) == (0 if ok else 2)
    err = capsys.readouterr().err
    if not ok:
        first = err.splitlines()[0]
        assert first.startswith(f"{path}:4:8: error: softmax_loss `loss`: the scores must be a vector of class "
                                "scores (or C x 1 x 1), and they are 5x"), first
        assert "hint: pool or flatten first" in err
