"""Loss and error curves of a run, as PNG files beside its metrics."""
from __future__ import annotations

from pathlib import Path


def plot_curves(history: list[dict], run_dir: Path) -> list[Path]:
    if not history:
        return []
    import matplotlib
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    written = []
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], "s-", label="validation")
    ax.set(xlabel="epoch", ylabel="loss", title="loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    written.append(run_dir / "loss.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h["train_top1_error"] for h in history], "o-", label="train top-1")
    ax.plot(epochs, [h["val_top1_error"] for h in history], "s-", label="validation top-1")
    ax.plot(epochs, [h["val_top5_error"] for h in history], "^-", label="validation top-5")
    ax.set(xlabel="epoch", ylabel="error", title="error rate", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    written.append(run_dir / "error.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)
    return written
