"""`netdsl compare RUN...`: several runs' curves on shared axes and a table.

Each run is labelled by the settings in which it differs from the others
(its network's params, train settings, batch, seed, epochs, backend), read
from the config.json the trainer wrote, so an ablation's runs read
`act=relu` and `act=tanh` rather than their directory names. The table
answers Figure 1's question: how many epochs, and how much wall time, each
run needed to reach a target validation error."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..compiler import compile_graph
from ..errors import NetDslError
from ..train.plots import epoch_axis, percent_axis, pyplot
from ..train.trainer import read_config
from ..values import CallValue, show


@dataclass
class Run:
    path: Path
    settings: dict[str, str]
    history: list[dict]
    label: str = ""


def settings_of(config: dict) -> dict[str, str]:
    """Every setting that shapes a run, as NAME=VALUE text."""
    g = compile_graph(text=config["source"], file=config["file"], overrides=config.get("overrides") or {})
    out = {"network": g.graph["network"]}
    out |= {name: show(value) for name, value in g.graph["params"].items()}
    for key, value in vars(g.graph["train"]).items():
        if isinstance(value, CallValue):
            out[key] = value.name
            out |= {f"{key}.{k}": f"{v:g}" if isinstance(v, float) else str(v) for k, v in value.kwargs.items()}
        elif isinstance(value, tuple):
            out[key] = ",".join(v.name if isinstance(v, CallValue) else str(v) for v in value)
        else:
            out[key] = str(value)
    options = config.get("options", {})
    out |= {k: str(options[k]) for k in ("epochs", "batch", "seed") if k in options}
    out["backend"] = str(config.get("backend", "?"))
    return out


def read_run(path: str | Path) -> Run:
    path = Path(path)
    config = read_config(path)
    metrics = path / "metrics.jsonl"
    history = [json.loads(l) for l in metrics.read_text().splitlines() if l.strip()] if metrics.exists() else []
    if not history:
        raise NetDslError(f"{path} has no finished epoch yet (metrics.jsonl is empty or missing)",
                          hint="train it for at least one epoch")
    return Run(path, settings_of(config), history)


def label_runs(runs: list[Run]) -> list[Run]:
    """Labels from the settings whose values differ between the runs (epochs last: it rarely matters)."""
    keys = [k for k in dict.fromkeys(k for r in runs for k in r.settings)
            if len({r.settings.get(k, "-") for r in runs}) > 1]
    keys.sort(key=lambda k: k == "epochs")
    for r in runs:
        r.label = " ".join(f"{k}={r.settings.get(k, '-')}" for k in keys) or r.path.name
    if len({r.label for r in runs}) < len(runs):  # same settings: only the directories tell them apart
        for r in runs:
            r.label = f"{r.label} ({r.path.name})" if r.label != r.path.name else r.label
    return runs


def summary(run: Run, target: float) -> dict:
    best = min(run.history, key=lambda h: h["val_top1_error"])
    reached = next((h for h in run.history if h["val_top1_error"] <= target), None)
    seconds = None
    if reached is not None:
        seconds = sum(h["seconds"] for h in run.history if h["epoch"] <= reached["epoch"])
    rates = [h["images_per_s"] for h in run.history if h.get("images_per_s")]
    return {"label": run.label, "epochs": run.history[-1]["epoch"], "best": best["val_top1_error"],
            "best_epoch": best["epoch"], "final": run.history[-1]["val_top1_error"],
            "epochs_to_target": reached["epoch"] if reached else None, "seconds_to_target": seconds,
            "images_per_s": sum(rates) / len(rates) if rates else float("nan"),
            "seconds": sum(h["seconds"] for h in run.history)}


def table(runs: list[Run], target: float) -> str:
    rows = [summary(r, target) for r in runs]
    width = max(len("run"), *(len(r["label"]) for r in rows))
    head = (f"{'run':<{width}}  epochs  best val top-1 (epoch)  final val top-1  "
            f"epochs to {target:.0%}  time to {target:.0%}  images/s")
    lines = [head, "-" * len(head)]
    for r in rows:
        to_epochs = str(r["epochs_to_target"]) if r["epochs_to_target"] else "not reached"
        to_time = f"{r['seconds_to_target']:.1f} s" if r["seconds_to_target"] is not None else "-"
        lines.append(f"{r['label']:<{width}}  {r['epochs']:>6}  {r['best']:>14.2%} ({r['best_epoch']:>3})  "
                     f"{r['final']:>15.2%}  {to_epochs:>{len(f'epochs to {target:.0%}')}}  "
                     f"{to_time:>{len(f'time to {target:.0%}')}}  {r['images_per_s']:>8.1f}")
    return "\n".join(lines)


def compare_figure(runs: list[Run], target: float | None = None):
    """Loss and top-1 error: one colour per run, solid for training, dashed for validation."""
    plt = pyplot()
    fig, (loss_ax, error_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    epochs = [h["epoch"] for r in runs for h in r.history]
    for i, r in enumerate(runs):
        colour = colours[i % len(colours)]
        xs = [h["epoch"] for h in r.history]
        for ax, key in ((loss_ax, "loss"), (error_ax, "top1_error")):
            ax.plot(xs, [h.get(f"train_{key}", float("nan")) for h in r.history], "o-", color=colour,
                    label=f"{r.label} train")
            ax.plot(xs, [h[f"val_{key}"] for h in r.history], "s--", color=colour, label=f"{r.label} validation")
    if target is not None:
        error_ax.axhline(target, color="gray", linestyle=":", label=f"target {target:.0%}")
    for ax in (loss_ax, error_ax):
        epoch_axis(ax, epochs)
        ax.grid(alpha=0.3)
    loss_ax.set(ylabel="cross-entropy loss (nats per image)", title="loss")
    error_ax.set(ylabel="top-1 error (% of images)", title="top-1 error")
    percent_axis(error_ax, (0, 1))
    error_ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def flow_table(runs: list[Run]) -> str:
    """The last epoch's update/weight ratio of every parameter tensor, one column per run."""
    last = [next((h for h in reversed(r.history) if h.get("update_ratio")), {}) for r in runs]
    names = list(dict.fromkeys(k for h in last for k in h.get("update_ratio", {})))
    width = max(len("parameter"), *(len(n) for n in names))
    heads = [f"{r.label} (epoch {h.get('epoch', '-')})" for r, h in zip(runs, last)]
    lines = ["||update|| / ||weight||, mean over the last epoch's steps:",
             f"{'parameter':<{width}}  " + "  ".join(f"{h:>12}" for h in heads)]
    for name in names:
        cells = [h.get("update_ratio", {}).get(name) for h in last]
        widths = [max(12, len(h)) for h in heads]
        lines.append(f"{name:<{width}}  " + "  ".join(
            f"{c:>{w}.3g}" if c is not None else f"{'-':>{w}}" for c, w in zip(cells, widths)))
    return "\n".join(lines)


def flow_compare_figure(runs: list[Run]):
    """Each run's gradient flow (gradients.png's two panels) in its own column, shared log axes."""
    from ..train.gradient_flow import draw_flow
    plt = pyplot()
    fig, axes = plt.subplots(2, len(runs), figsize=(6.5 * len(runs), 8), sharey="row", squeeze=False)
    for column, r in zip(axes.T, runs):
        draw_flow(column, r.history, title=f"{r.label}: ")
    fig.tight_layout()
    return fig


def compare(paths: list[str], output: str | Path, target: float) -> tuple[str, str]:
    """(the table, the pictures written: the curves, and the gradient flow where the runs logged it)."""
    from ..train.gradient_flow import has_flow
    from .pictures import save
    if not 0 < target < 1:
        raise NetDslError(f"--target {target} is not an error rate", hint="write a fraction, e.g. --target 0.25")
    runs = label_runs([read_run(p) for p in paths])
    text, written = table(runs, target), save(compare_figure(runs, target), output)
    if any(has_flow(r.history) for r in runs):
        flow = Path(output).with_name(Path(output).stem + "-gradients.png")
        text += "\n\n" + flow_table(runs)
        written += f" and {save(flow_compare_figure(runs), flow)}"
    return text, written
