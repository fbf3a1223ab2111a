"""netdsl train / test / predict end to end on generated folders."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from netdsl.cli import main
from netdsl.data.synthetic import make_shapes

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.slow
def test_cifar_learns_the_shapes_well_below_chance(tmp_path):
    # Ten balanced classes: chance is 90% top-1 error. 70% is twenty points
    # below it, about ten standard errors on 300 validation images: no run
    # that learned nothing gets there by luck. (Measured: about 50%.)
    data = make_shapes(tmp_path / "shapes", classes=10, train_per_class=200, val_per_class=30, size=32, seed=1)
    run = tmp_path / "run"
    code = main(["train", str(EXAMPLES / "cifar.net"), "--data", str(data), "--out", str(run), "--epochs", "4",
                 "--batch", "32", "--backend", "reference", "--no-progress"])
    assert code == 0
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    keys = {"epoch", "lr", "train_loss", "val_loss", "val_top1_error", "val_top5_error", "images_per_s", "seconds"}
    assert keys <= history[-1].keys()
    assert history[-1]["val_top1_error"] <= 0.70, history
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_train_writes_a_run_that_test_and_predict_read(small_shapes, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", str(EXAMPLES / "lenet.net"), "--data", str(small_shapes), "--out", str(run),
                 "--epochs", "1", "--batch", "16", "--backend", "reference", "--no-progress"])
    assert code == 0
    for name in ("checkpoint.npz", "best.npz", "loss.png", "error.png", "config.json", "metrics.jsonl"):
        assert (run / name).exists(), name

    capsys.readouterr()
    assert main(["test", "--checkpoint", str(run / "best.npz"), "--data", str(small_shapes),
                 "--backend", "reference"]) == 0
    out = capsys.readouterr().out
    assert "40 validation images (centre crop)" in out and "top-1 error" in out
    assert main(["test", "--checkpoint", str(run / "checkpoint.npz"), "--data", str(small_shapes), "--ten-crop",
                 "--backend", "reference"]) == 0
    assert "ten-crop" in capsys.readouterr().out

    image = next((small_shapes / "val" / "s0004").iterdir())  # a ring
    assert main(["predict", str(run / "checkpoint.npz"), str(image), "--backend", "reference"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(image) and len(lines) == 6
    probabilities = [float(l.split("%")[0]) for l in lines[1:]]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 100.01
    assert any(name in lines[1] for name in ("ring", "circle", "square", "triangle", "cross", "diamond",
                                             "hstripes", "vstripes", "checker", "dstripes"))


def test_corrupt_file_and_empty_class_warn_and_training_goes_on(small_shapes, tmp_path, capsys):
    data = tmp_path / "data"
    import shutil
    shutil.copytree(small_shapes, data)
    (data / "train" / "s0000" / "broken.jpeg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (data / "train" / "s0009").rename(data / "train" / "s0009-moved")
    shutil.rmtree(data / "train" / "s0009-moved")
    (data / "train" / "s0009").mkdir()  # an empty class folder
    shutil.rmtree(data / "val" / "s0009")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        code = main(["train", str(EXAMPLES / "cifar.net"), "--data", str(data), "--out", str(tmp_path / "run"),
                     "--epochs", "1", "--batch", "8", "--backend", "reference", "--no-progress"])
    assert code == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert any("broken.jpeg" in line for line in warned) and any("have no images" in line for line in warned), warned
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text())["epoch"] == 1


def test_diverging_run_stops_naming_the_layer(small_shapes, tmp_path, capsys):
    code = main(["train", str(EXAMPLES / "cifar.net"), "--data", str(small_shapes), "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--batch", "8", "--backend", "reference", "--no-progress",
                 "--set", "optimizer.lr=1e12"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "training stopped" in err and "became NaN or Inf" in err and "`" in err
    assert "optimizer.lr" in err


def test_mismatched_classes_are_reported(small_shapes, tmp_path, capsys):
    code = main(["train", str(EXAMPLES / "lenet.net"), "--set", "batch=4", "--data", str(small_shapes),
                 "--out", str(tmp_path / "run"), "--epochs", "1", "--backend", "reference", "--no-progress"])
    assert code == 0  # 10 shape classes fit lenet's 10 outputs
    path = tmp_path / "five.net"
    path.write_text((EXAMPLES / "lenet.net").read_text().replace("10 classes", "5 classes").replace("fc(f6, 10)",
                                                                                                 "fc(f6, 5)"))
    code = main(["train", str(path), "--data", str(small_shapes), "--out", str(tmp_path / "run5"), "--epochs", "1",
                 "--backend", "reference", "--no-progress"])
    assert code == 2 and "10 classes but the network's label input has 5" in capsys.readouterr().err


def test_existing_run_directory_is_not_overwritten(small_shapes, tmp_path, capsys):
    args = ["train", str(EXAMPLES / "lenet.net"), "--data", str(small_shapes), "--out", str(tmp_path / "run"),
            "--epochs", "1", "--batch", "8", "--backend", "reference", "--no-progress"]
    assert main(args) == 0
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [["make-dataset", "nope", "x"]])
def test_cli_rejects_unknown_dataset_kind(bad):
    with pytest.raises(SystemExit) as info:
        main(bad)
    assert info.value.code == 2
