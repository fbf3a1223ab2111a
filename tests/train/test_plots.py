"""The run's curves: labelled axes with units, integer epoch ticks, and a
one-epoch run drawn as a point on a sensible axis."""
from __future__ import annotations

from pictures import read_png

from netdsl.train.plots import curve_figure, plot_curves


def record(epoch, loss, error):
    return {"epoch": epoch, "lr": 0.01, "train_loss": loss, "val_loss": loss * 1.1, "train_top1_error": error,
            "val_top1_error": error + 0.05, "val_top5_error": error / 2}


def test_one_epoch_is_a_point_with_integer_ticks_and_units():
    for name in ("loss.png", "error.png"):
        fig = curve_figure([record(1, 2.3, 0.8)], name)
        ax = fig.axes[0]
        low, high = ax.get_xlim()
        assert (low, high) == (0.5, 1.5)
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks == [1.0]
        assert "epoch" in ax.get_xlabel() and "(" in ax.get_ylabel()
        ylow, yhigh = ax.get_ylim()
        assert yhigh - ylow >= 0.1  # not a hair-thin range around a single value
        fig.clf()


def test_error_axis_is_in_percent_and_many_epochs_get_whole_number_ticks():
    history = [record(e, 2.3 / e, 0.9 - 0.05 * e) for e in range(1, 13)]
    fig = curve_figure(history, "error.png")
    ax = fig.axes[0]
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and all(l.endswith("%") for l in labels)
    assert all(float(t).is_integer() for t in ax.get_xticks())
    assert ax.get_xlim() == (0.5, 12.5)


def test_plot_curves_writes_two_readable_pictures(tmp_path):
    written = plot_curves([record(1, 2.3, 0.8), record(2, 1.9, 0.6)], tmp_path)
    assert [p.name for p in written] == ["loss.png", "error.png"]
    for path in written:
        read_png(path)
