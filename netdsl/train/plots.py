"""Loss and error curves of a run, as PNG files beside its metrics.

Epochs are whole numbers, so the x axis gets integer ticks only, and its
limits are padded by half an epoch: a one-epoch run is a point at epoch 1,
not a line on an axis matplotlib would draw from 0.96 to 1.04. Error rates
are fractions in the metrics and percentages on the axis."""
from __future__ import annotations

from pathlib import Path

CURVES = {
    "loss.png": ("cross-entropy loss (nats per image)", None,
                 [("train_loss", "train", "o-"), ("val_loss", "validation", "s-")]),
    "error.png": ("top-k error (% of images)", (0, 1), [("train_top1_error", "train top-1", "o-"),
                                                         ("val_top1_error", "validation top-1", "s-"),
                                                         ("val_top5_error", "validation top-5", "^-")]),
}


def pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    return plt


def epoch_axis(ax, epochs: list[int]) -> None:
    """Integer epoch ticks, limits half an epoch beyond the first and last."""
    from matplotlib.ticker import MaxNLocator
    first, last = (min(epochs), max(epochs)) if epochs else (1, 1)
    ax.set_xlim(first - 0.5, last + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=10, min_n_ticks=1))
    ax.set_xlabel("epoch (passes over the training set)")


def percent_axis(ax, ylim=(0, 1)) -> None:
    from matplotlib.ticker import PercentFormatter
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    if ylim:
        ax.set_ylim(*ylim)


def value_axis(ax, values: list[float]) -> None:
    """A flat or single-valued series still gets a readable range around it."""
    finite = [v for v in values if v == v and abs(v) != float("inf")]
    if not finite:
        return
    low, high = min(finite), max(finite)
    if high - low < 1e-3 * max(abs(high), 1e-3):
        pad = max(abs(high) * 0.1, 0.05)
        ax.set_ylim(low - pad, high + pad)


def curve_figure(history: list[dict], name: str):
    """The figure of one of CURVES for a run's history (the caller closes it)."""
    plt = pyplot()
    ylabel, ylim, series = CURVES[name]
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    values = []
    for key, label, style in series:
        ys = [h[key] for h in history]
        values += ys
        ax.plot(epochs, ys, style, label=label)
    epoch_axis(ax, epochs)
    ax.set(ylabel=ylabel, title=ylabel.split(" (")[0])
    if ylim:
        percent_axis(ax, ylim)
    else:
        value_axis(ax, values)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_curves(history: list[dict], run_dir: Path) -> list[Path]:
    if not history:
        return []
    plt = pyplot()
    written = []
    for name in CURVES:
        fig = curve_figure(history, name)
        written.append(run_dir / name)
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    return written
