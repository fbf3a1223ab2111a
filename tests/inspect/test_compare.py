"""`netdsl compare`: runs labelled by what differs, a table of best error and
time to a target, curves of every run on shared axes."""
from __future__ import annotations

import numpy as np
from networks import make_run
from pictures import read_png

from netdsl.cli import main
from netdsl.inspect.compare import compare_figure, label_runs, read_run, summary


def history(errors, seconds=10.0, rate=50.0):
    return [{"epoch": i + 1, "lr": 0.01, "train_loss": 2.0 - 0.1 * i, "val_loss": 2.1 - 0.1 * i,
             "train_top1_error": e - 0.02, "val_top1_error": e, "val_top5_error": e / 2, "images_per_s": rate,
             "seconds": seconds} for i, e in enumerate(errors)]


def test_runs_are_labelled_by_their_differences_and_timed_to_the_target(tmp_path, capsys):
    relu = make_run(tmp_path / "relu", overrides={"act": "relu"}, history=history([0.6, 0.3, 0.2, 0.15], 10, 80))
    tanh = make_run(tmp_path / "tanh", overrides={"act": "tanh"}, history=history([0.7, 0.5, 0.4, 0.26], 12, 60))
    out = tmp_path / "cmp.png"
    assert main(["compare", str(relu), str(tanh), "-o", str(out), "--target", "0.25"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    relu_row = next(l for l in lines if l.startswith("act=relu"))
    tanh_row = next(l for l in lines if l.startswith("act=tanh"))
    # relu reaches 25% at epoch 3, after 3 x 10 s; tanh never does
    assert "15.00% (  4)" in relu_row and " 3 " in relu_row and "30.0 s" in relu_row and "80.0" in relu_row
    assert "26.00% (  4)" in tanh_row and "not reached" in tanh_row
    read_png(out, 800, 300)

    runs = label_runs([read_run(relu), read_run(tanh)])
    fig = compare_figure(runs, 0.25)
    loss_ax, error_ax = fig.axes
    assert loss_ax.get_xlim() == error_ax.get_xlim() == (0.5, 4.5)
    labels = [l.get_label() for l in error_ax.get_lines()]
    assert labels == ["act=relu train", "act=relu validation", "act=tanh train", "act=tanh validation",
                      "target 25%"]
    np.testing.assert_allclose(error_ax.get_lines()[3].get_ydata(), [0.7, 0.5, 0.4, 0.26])


def test_a_default_against_an_override_and_identical_runs(tmp_path):
    plain = make_run(tmp_path / "plain", history=history([0.5]))
    pooled = make_run(tmp_path / "pool", overrides={"act": "tanh"}, seed=1, history=history([0.4]))
    runs = label_runs([read_run(plain), read_run(pooled)])
    # the default relu is read from the source, not left blank
    assert [r.label for r in runs] == ["act=relu seed=0", "act=tanh seed=1"]
    twin = make_run(tmp_path / "twin", history=history([0.45]))
    assert [r.label for r in label_runs([read_run(plain), read_run(twin)])] == ["plain", "twin"]
    assert summary(runs[0], 0.25)["epochs_to_target"] is None


def test_a_run_without_metrics_is_a_named_error(tmp_path, capsys):
    empty = make_run(tmp_path / "empty")
    assert main(["compare", str(empty), "-o", str(tmp_path / "x.png")]) == 2
    assert "no finished epoch" in capsys.readouterr().err


def test_compare_of_a_missing_run_does_not_talk_of_resuming(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nonexistent")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'nonexistent'} does not exist") and "--resume" not in err
