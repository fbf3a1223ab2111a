"""Ensembles on `netdsl test` and `netdsl predict`, and `netdsl test
--transform`, against probabilities computed here from the executors'
own forward passes."""
from __future__ import annotations

import numpy as np
import pytest
from networks import make_run

import netdsl  # noqa: F401
from netdsl.cli import main
from netdsl.data.prepare import prepare
from netdsl.data.synthetic import make_shapes
from netdsl.inspect.checkpoints import open_executor
from netdsl.inspect.ensemble import mean_of_probabilities, ensemble_errors
from netdsl.inspect.transforms import TRANSFORMS, transformed
from netdsl.layers.softmax_loss import log_softmax


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def data(tmp_path):
    return make_shapes(tmp_path / "shapes", classes=5, train_per_class=2, val_per_class=4, size=16, seed=2)


def val_probabilities(run, data, transform="none"):
    """Softmax of the run's network on every validation image, the preprocessing written out here."""
    _, _, ex = open_executor(run, batch=2)
    prepared = prepare(data, size=16, progress=False)
    raw = prepared.val_images.astype(np.float32).transpose(0, 3, 1, 2)  # N x 3 x 16 x 16, full image = crop
    mean = prepared.mean.transpose(2, 0, 1)
    x = np.ascontiguousarray(TRANSFORMS[transform](raw)) - mean
    return np.exp(log_softmax(ex.forward(x).astype(np.float64))), prepared.val_labels


def test_ensemble_averages_the_members_softmax(tmp_path, data, capsys):
    a, b = make_run(tmp_path / "a", seed=1), make_run(tmp_path / "b", seed=2)
    pa, labels = val_probabilities(a, data)
    pb, _ = val_probabilities(b, data)
    mean = (pa + pb) / 2
    result = ensemble_errors([str(a / "best.npz"), str(b / "best.npz")], str(data), backend="reference")
    ensemble = result["ensemble"]
    assert ensemble["images"] == 20
    assert ensemble["top1_error"] == pytest.approx(float((mean.argmax(1) != labels).mean()))
    assert ensemble["loss"] == pytest.approx(float(-np.log(mean[np.arange(20), labels]).mean()), rel=1e-5)
    assert result["members"][0][1]["loss"] == pytest.approx(float(-np.log(pa[np.arange(20), labels]).mean()),
                                                            rel=1e-5)
    # the two members disagree somewhere, or the test would not tell averaging from picking one
    assert not np.allclose(pa, pb, atol=1e-3)

    assert main(["test", "--checkpoint", str(a / "best.npz"), "--checkpoint", str(b / "best.npz"),
                 "--data", str(data), "--backend", "reference"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("20 validation images (centre crop)")
    assert [l.split()[0] for l in lines[2:]] == [str(a / "best.npz"), str(b / "best.npz"), "ensemble"]
    assert f"{ensemble['top1_error']:.2%}" in lines[-1]
    # one checkpoint is the plain test command, unchanged
    assert main(["test", "--checkpoint", str(a / "best.npz"), "--data", str(data), "--backend", "reference"]) == 0
    assert "top-1 error" in capsys.readouterr().out


def test_transform_rotates_the_image_not_the_mean(tmp_path, data, capsys):
    run = make_run(tmp_path / "r", seed=3)
    for name in ("hflip", "rotate90"):
        p, labels = val_probabilities(run, data, name)
        result = ensemble_errors([str(run / "best.npz")], str(data), transform=name, backend="reference")
        member = result["members"][0][1]
        assert result["ensemble"] is None and name in result["mode"]
        assert member["loss"] == pytest.approx(float(-np.log(p[np.arange(20), labels]).mean()), rel=1e-5)
    upright, _ = val_probabilities(run, data)
    assert not np.allclose(upright, p, atol=1e-4)  # rotation changed what the network saw
    assert main(["test", "--checkpoint", str(run / "best.npz"), "--data", str(data), "--transform", "rotate180",
                 "--backend", "reference"]) == 0
    assert "transform rotate180" in capsys.readouterr().out


def test_transformed_keeps_the_mean_upright():
    r = np.random.default_rng(0)
    x, m = r.standard_normal((2, 3, 5, 5)).astype(np.float32), r.standard_normal((3, 5, 5)).astype(np.float32)
    (out, _), = transformed([(x - m, None)], "rotate90", m)
    np.testing.assert_allclose(out, np.rot90(x, 1, axes=(2, 3)) - m, atol=1e-6)


def test_mean_of_probabilities_is_log_of_the_mean():
    r = np.random.default_rng(1)
    logps = [log_softmax(r.standard_normal((4, 7)) * 30) for _ in range(3)]
    np.testing.assert_allclose(mean_of_probabilities(logps), np.log(np.mean([np.exp(l) for l in logps], axis=0)),
                               rtol=1e-10)


def test_predict_with_two_checkpoints_reports_members_and_ensemble(tmp_path, data, capsys):
    a, b = make_run(tmp_path / "a", seed=1), make_run(tmp_path / "b", seed=2)
    np.save(a / "mean.npy", prepare(data, size=16, progress=False).mean)
    np.save(b / "mean.npy", prepare(data, size=16, progress=False).mean)
    image = next((data / "val" / "s0001").iterdir())
    assert main(["predict", str(a / "best.npz"), str(b / "best.npz"), str(image), "--backend", "reference"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(image) and lines[1] == "  ensemble of 2:"
    ranked = [float(l.split("%")[0]) for l in lines[2:7]]
    assert ranked == sorted(ranked, reverse=True) and 99.9 <= sum(ranked) <= 100.01  # 5 classes: all of them
    assert lines[7] == "  members (top-1):" and len(lines) == 10
    assert str(a / "best.npz") in lines[8] and str(b / "best.npz") in lines[9]


SIX_CLASSES = """network six
input image : 3 x 16 x 16
input label : 6 classes
f = fc(image, 6)
loss = softmax_loss(f, label)
train { batch = 2; epochs = 1; augment = []; test = center_crop }
"""


def never_evaluated(*args, **kwargs):
    raise AssertionError("a member was evaluated before the ensemble was checked")


@pytest.mark.parametrize("command", ["test", "predict"])
def test_mixed_ensemble_is_refused_before_any_evaluation(tmp_path, data, capsys, monkeypatch, command):
    import netdsl.inspect.ensemble as ensemble
    monkeypatch.setattr(ensemble, "member_log_probabilities", never_evaluated)
    monkeypatch.setattr(ensemble, "predict_ensemble", never_evaluated)
    a, b = make_run(tmp_path / "a", seed=1), make_run(tmp_path / "b", SIX_CLASSES, seed=2)
    image = next((data / "val" / "s0001").iterdir())
    argv = (["test", "--checkpoint", str(a / "best.npz"), "--checkpoint", str(b / "best.npz"), "--data", str(data)]
            if command == "test" else ["predict", str(a / "best.npz"), str(b / "best.npz"), str(image)])
    assert main(argv + ["--backend", "reference"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"error: {b / 'best.npz'} and {a / 'best.npz'} cannot form an ensemble: 6 classes against 5"
    assert "Traceback" not in err


def test_ensemble_of_same_count_but_other_class_names_is_refused(tmp_path, data, capsys):
    a, b = make_run(tmp_path / "a", seed=1), make_run(tmp_path / "b", seed=2)
    import json
    config = json.loads((b / "config.json").read_text())
    config["classes"][3] = "zebra"
    (b / "config.json").write_text(json.dumps(config))
    assert main(["test", "--checkpoint", str(a / "best.npz"), "--checkpoint", str(b / "best.npz"),
                 "--data", str(data), "--backend", "reference"]) == 2
    assert "cannot form an ensemble: class 3 is `zebra` against `s0003`" in capsys.readouterr().err


def test_test_refuses_a_net_file_it_would_not_use(tmp_path, data, capsys):
    run = make_run(tmp_path / "r", seed=3)
    other = tmp_path / "other.net"
    other.write_text(SIX_CLASSES)
    assert main(["test", str(other), "--checkpoint", str(run / "best.npz"), "--data", str(data),
                 "--backend", "reference"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: test takes the network from the checkpoint's run directory, not from {other}")


def test_transform_with_ten_crop_is_refused_and_one_checkpoint_gets_one_line(tmp_path, data, capsys):
    run = make_run(tmp_path / "r", seed=3)
    base = ["test", "--checkpoint", str(run / "best.npz"), "--data", str(data), "--backend", "reference"]
    assert main(base + ["--transform", "rotate90", "--ten-crop"]) == 2
    assert "--transform rotate90 and --ten-crop cannot be combined" in capsys.readouterr().err
    assert main(base + ["--transform", "rotate90"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("20 validation images (centre crop, transform rotate90): loss ")
    result = ensemble_errors([str(run / "best.npz")], str(data), transform="rotate90", backend="reference")
    assert f"top-1 error {result['members'][0][1]['top1_error']:.2%}" in out[0]


def test_test_matches_classes_by_name_not_by_sorted_index(tmp_path, data, capsys):
    """A test folder holding the classes in another order (here: two of them, under other sorted
    positions) is scored by name: its labels become the checkpoint's indices of those names."""
    import shutil
    run = make_run(tmp_path / "r", seed=3)
    subset = tmp_path / "subset"
    for split in ("train", "val"):
        for name in ("s0002", "s0004"):
            shutil.copytree(data / split / name, subset / split / name)
    p, folder_labels = val_probabilities(run, subset)  # the folder's labels: 0 and 1
    labels = np.array([2, 4])[folder_labels]  # the checkpoint's indices of s0002 and s0004
    result = ensemble_errors([str(run / "best.npz")], str(subset), backend="reference")
    picked = p[np.arange(len(labels)), labels]
    assert result["members"][0][1]["images"] == len(labels) == 8
    assert result["members"][0][1]["loss"] == pytest.approx(float(-np.log(picked).mean()), rel=1e-5)
    assert main(["test", "--checkpoint", str(run / "best.npz"), "--data", str(subset), "--backend", "reference"]) == 0
    assert f"top-1 error {float((p.argmax(1) != labels).mean()):.2%}" in capsys.readouterr().out
    (subset / "train" / "zebra").mkdir()
    shutil.copy(next((subset / "train" / "s0002").iterdir()), subset / "train" / "zebra" / "z.png")
    assert main(["test", "--checkpoint", str(run / "best.npz"), "--data", str(subset), "--backend", "reference"]) == 2
    err = capsys.readouterr().err
    assert "has 1 class(es) that " in err and "was not trained on: zebra" in err
