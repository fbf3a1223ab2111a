"""Per-layer gradient flow: for every parameter tensor, the norm of its
gradient and the ratio of its update's norm to its weight's, per epoch.

The paper's readers asked whether the initial layers, which "get only a
diluted benefit from the error adjustments", would gain from dropout. These
two figures show how much each layer actually moves: an update/weight ratio
far below the others' (1e-3 is the usual healthy order) is a layer that
barely learns.

Measured from arrays every step already has, after its update: the gradient
as applied (after clipping), the momentum buffer (the update itself, since
w <- w + v) and the updated weight. Every executor reports them as
`last_norms`, {param: (||gradient||, ||update||, ||weight||)}, when its
`measure_norms` is set (the trainer sets it). The executors whose arrays are
host memory (reference, cpu) take three float32 dot products per tensor, no
extra pass (runtime/optimizer.step_norms). The cuda backend reduces them on
the device after the update (templates/watch.j2's netdsl_watch_flow: two
launches per GPU, the three sums of squares in double), and the 24 bytes per
tensor come back in the step's one read of its totals, so a step still waits
for the device once (runtime/cuda_watch.py). The trainer sums them over the
epoch's steps (the sums travel in the checkpoint's run state, so a resumed
epoch logs the same means) and metrics.jsonl gets the means:

    "gradient_norm": {param: mean over steps of ||dL/dw||}
    "update_ratio":  {param: mean over steps of ||v|| / ||w||}
"""
from __future__ import annotations

from pathlib import Path

from .plots import epoch_axis, pyplot


def accumulate(sums: dict, norms: dict | None) -> None:
    """Add one step's norms to the epoch's running sums (JSON-safe: they are checkpointed)."""
    if not norms:
        return
    flow = sums.setdefault("flow", {})
    for name, (grad, update, weight) in norms.items():
        entry = flow.setdefault(name, [0.0, 0.0, 0, 0])  # sum ||g||, sum ratio, steps, steps with a ratio
        entry[0] += grad
        entry[2] += 1
        if weight > 0:  # a bias still at zero has no ratio yet
            entry[1] += update / weight
            entry[3] += 1


def epoch_fields(sums: dict) -> dict:
    """The metrics.jsonl fields of an epoch's sums ({} when nothing was measured)."""
    flow = sums.get("flow")
    if not flow:
        return {}
    return {"gradient_norm": {k: v[0] / v[2] for k, v in flow.items() if v[2]},
            "update_ratio": {k: v[1] / v[3] for k, v in flow.items() if v[3]}}


PANELS = (("update_ratio", "||update|| / ||weight|| (mean over the epoch's steps)"),
          ("gradient_norm", "||gradient|| (mean over the epoch's steps)"))


def draw_flow(axes, history: list[dict], title: str = "") -> None:
    """The two panels of one run on `axes`: one line per parameter tensor, log scale."""
    epochs = [h["epoch"] for h in history if "update_ratio" in h]
    names = list(dict.fromkeys(k for h in history for k in h.get("gradient_norm", {})))
    layers = list(dict.fromkeys(n.rpartition(".")[0] for n in names))  # a layer's tensors share a colour
    for ax, (key, label) in zip(axes, PANELS):
        for name in names:
            points = [(h["epoch"], h[key][name]) for h in history if name in h.get(key, {}) and h[key][name] > 0]
            if points:
                style = "o-" if name.endswith("weight") else "s:"
                colour = f"C{layers.index(name.rpartition('.')[0]) % 10}"
                ax.plot(*zip(*points), style, color=colour, label=name, markersize=3)
        ax.set_yscale("log")
        epoch_axis(ax, epochs)
        ax.set(ylabel=label, title=f"{title}{label.split(' (')[0]}")
        ax.grid(alpha=0.3, which="both")
    axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))


def flow_figure(history: list[dict]):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    draw_flow(axes, history)
    fig.tight_layout()
    return fig


def has_flow(history: list[dict]) -> bool:
    return any(h.get("update_ratio") for h in history)


def plot_flow(history: list[dict], run_dir: Path) -> Path | None:
    """gradients.png in the run folder (nothing when no epoch measured the norms)."""
    if not has_flow(history):
        return None
    plt = pyplot()
    fig = flow_figure(history)
    path = Path(run_dir) / "gradients.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
