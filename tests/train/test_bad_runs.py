"""Damaged or foreign run files: one clear message, exit 2, nothing in the run
directory changed, and best.npz offered when it is intact."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from netdsl.cli import main

from runfiles import TINY, copy_run, snapshot, train_run, write_net


@pytest.fixture(scope="module")
def finished(small_shapes, tmp_path_factory):
    folder = tmp_path_factory.mktemp("finished")
    assert train_run(write_net(folder), small_shapes, folder / "run") == 0
    return folder / "run"


def rewrite_without(path, key):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files if k != key}
    with open(path, "wb") as out:
        np.savez(out, **arrays)


def flip_a_bit(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "random": lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)),
    "bit-flipped": flip_a_bit,
    "missing an entry": lambda p: rewrite_without(p, "velocity/f.weight"),
    "missing a weight": lambda p: rewrite_without(p, "param/c.conv.weight"),
    "missing the step counter": lambda p: rewrite_without(p, "meta/steps"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_checkpoint_refused_on_resume_with_best_offered(finished, tmp_path, capsys, damage):
    run = copy_run(finished, tmp_path / "run")
    DAMAGE[damage](run / "checkpoint.npz")
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint ") and "Traceback" not in err
    assert f"{run / 'best.npz'} (after epoch 1) is intact" in err
    assert snapshot(run) == before


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped", "missing the step counter"])
def test_damaged_checkpoint_refused_by_predict_and_test(finished, tmp_path, capsys, small_shapes, damage):
    run = copy_run(finished, tmp_path / "run")
    DAMAGE[damage](run / "checkpoint.npz")
    image = next((small_shapes / "val").rglob("*.png"), None) or next((small_shapes / "val").rglob("*.jp*g"))
    assert main(["predict", str(run / "checkpoint.npz"), str(image), "--backend", "reference"]) == 2
    err = capsys.readouterr().err
    assert ("damaged" in err or "lacks" in err) and "best.npz" in err and "Traceback" not in err
    assert main(["test", "--checkpoint", str(run / "checkpoint.npz"), "--data", str(small_shapes),
                 "--backend", "reference"]) == 2
    assert capsys.readouterr().err.startswith(f"error: checkpoint {run / 'checkpoint.npz'}")


def test_checkpoint_of_another_network_names_the_first_differing_parameter(finished, tmp_path, capsys, small_shapes):
    other = tmp_path / "other"
    other.mkdir()
    wider = write_net(other, text=TINY.replace("conv(image, 4,", "conv(image, 6,"))
    assert train_run(wider, small_shapes, other / "run") == 0
    capsys.readouterr()
    run = copy_run(finished, tmp_path / "run")
    (run / "checkpoint.npz").write_bytes((other / "run" / "checkpoint.npz").read_bytes())
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "from another network: `c.conv.weight` is 6x3x3x3 there and 4x3x3x3 here" in err


@pytest.mark.parametrize("config", ["{not json", "[]", json.dumps({"file": "x"}), ""])
def test_garbage_config_json(finished, tmp_path, capsys, config):
    run = copy_run(finished, tmp_path / "run")
    (run / "config.json").write_text(config)
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "config.json is damaged" in err and "Traceback" not in err
    assert snapshot(run) == before


def test_half_written_last_metrics_line_is_dropped_and_the_run_goes_on(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "lr": 0.0')
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert "dropping a half-written last line" in capsys.readouterr().out
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]


def test_garbage_in_the_middle_of_metrics_is_an_error(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path / "run")
    lines = (run / "metrics.jsonl").read_text()
    (run / "metrics.jsonl").write_text("garbage\n" + lines)
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    assert "metrics.jsonl is damaged at line 1" in capsys.readouterr().err
    assert snapshot(run) == before


def test_leftover_temporary_checkpoint_is_removed_on_the_next_start(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path / "run")
    (run / "tmpab12cd.tmp.npz").write_bytes(b"PK\x03\x04 half a checkpoint")
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert not list(run.glob("*.tmp.npz"))
    assert "left by an interrupted save" in capsys.readouterr().out


def test_resume_extends_a_finished_run_with_epochs(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path / "run")
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0  # done is not failed: a script can tell
    out = capsys.readouterr().out
    assert out.startswith("nothing to do: ") and "already finished its 1 epochs (the last, epoch 1," in out
    assert snapshot(run) == before
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert "now for 2 epochs" in capsys.readouterr().out
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert json.loads((run / "config.json").read_text())["options"]["epochs"] == 2
    assert main(["train", "--resume", str(run), "--epochs", "1", "--no-progress"]) == 2
    assert "has already trained 2 epochs" in capsys.readouterr().err


@pytest.mark.parametrize("extra,named", [(["--batch", "4"], "--batch"), (["--set", "batch=4"], "--set"),
                                         (["--seed", "3"], "--seed"), (["FILE"], "FILE"), (["--out", "x"], "--out")])
def test_resume_refuses_what_it_cannot_apply(finished, tmp_path, capsys, extra, named):
    run = copy_run(finished, tmp_path / "run")
    extra = [str(tmp_path / "tiny.net") if e == "FILE" else e for e in extra]
    before = snapshot(run)
    assert main(["train", "--resume", str(run), *extra, "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"does not take {named}" in err
    assert snapshot(run) == before


def test_nan_hint_says_no_checkpoint_exists_yet(small_shapes, tmp_path, capsys):
    net = write_net(tmp_path, text=TINY.replace("lr=0.01", "lr=1e30"))
    assert train_run(net, small_shapes, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "became NaN or Inf" in err
    assert "no checkpoint was written yet" in err
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_test_command_uses_the_files_test_mode(small_shapes, tmp_path, capsys):
    net = write_net(tmp_path, test="ten_crop")
    assert train_run(net, small_shapes, tmp_path / "run") == 0
    capsys.readouterr()
    ckpt = str(tmp_path / "run" / "checkpoint.npz")
    assert main(["test", "--checkpoint", ckpt, "--data", str(small_shapes), "--backend", "reference"]) == 0
    assert "(ten-crop)" in capsys.readouterr().out
    assert main(["test", "--checkpoint", ckpt, "--data", str(small_shapes), "--backend", "reference",
                 "--no-ten-crop"]) == 0
    assert "(centre crop)" in capsys.readouterr().out


def test_temporary_file_never_replaces_a_checkpoint(finished):
    """The fixture's run: the temporary files of its saves were all renamed into place."""
    assert not list(finished.glob("*.tmp.npz")) and os.path.getsize(finished / "checkpoint.npz") > 0


def test_expected_shapes_are_the_executors_parameters(tmp_path):
    from netdsl.compiler import load
    from netdsl.train.checkpoints import expected_shapes
    net = load(write_net(tmp_path))
    ex = net.executor(backend="reference", batch=2)
    assert expected_shapes(net.graph) == {k: v.shape for k, v in ex.params.items()}


def test_a_folder_smaller_than_a_batch_gives_a_hint_that_resume_can_follow(tmp_path, capsys):
    from netdsl.data.synthetic import make_shapes
    data = make_shapes(tmp_path / "few", classes=10, train_per_class=1, val_per_class=1, size=32, seed=1)
    run = tmp_path / "run"
    assert train_run(write_net(tmp_path), data, run) == 2  # 10 images, a batch of 16
    first = capsys.readouterr().err.split("error: ", 1)[1]
    assert first.startswith("the training split has 10 image(s), fewer than one batch of 16")
    assert "hint: start a new run with --batch 10 or less" in first and "--resume cannot change it" in first
    assert main(["train", "--resume", str(run), "--backend", "reference", "--no-progress"]) == 2
    again = capsys.readouterr().err.split("error: ", 1)[1]
    assert again.splitlines()[:2] == first.splitlines()[:2] and "use a smaller --batch" not in again


def test_training_on_fewer_classes_than_the_network_has_is_warned(tmp_path, capsys):
    from netdsl.data.synthetic import make_shapes
    data = make_shapes(tmp_path / "five", classes=5, train_per_class=4, val_per_class=1, size=32, seed=1)
    assert train_run(write_net(tmp_path), data, tmp_path / "run") == 0
    err = capsys.readouterr().err
    assert ("warning: the data has 5 classes but the network's label input has 10: 5 outputs can never be right"
            in err)
    assert "`input label : 5 classes` and an output layer of 5 in the file" in err
