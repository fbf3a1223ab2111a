"""Loss and error curves of a run, as PNG files beside its metrics."""
from __future__ import annotations

from pathlib import Path

CURVES = {
    "loss.png": ("loss", None, [("train_loss", "train", "o-"), ("val_loss", "validation", "s-")]),
    "error.png": ("error rate", (0, 1), [("train_top1_error", "train top-1", "o-"),
                                         ("val_top1_error", "validation top-1", "s-"),
                                         ("val_top5_error", "validation top-5", "^-")]),
}


def plot_curves(history: list[dict], run_dir: Path) -> list[Path]:
    if not history:
        return []
    import matplotlib
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    written = []
    for name, (ylabel, ylim, series) in CURVES.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for key, label, style in series:
            ax.plot(epochs, [h[key] for h in history], style, label=label)
        ax.set(xlabel="epoch", ylabel=ylabel, title=ylabel)
        if ylim:
            ax.set_ylim(*ylim)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        written.append(run_dir / name)
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    return written
