"""`netdsl ablate FILE --vary act=relu,tanh --vary pool=2,3`: train every
combination of the varied settings into RUN/<variant>/, with the same data,
seed, batch and schedule, then draw and print the comparison.

Each variant is an ordinary run (its config.json records the --set values),
so running the same command again resumes the ablation: a finished variant
is skipped, one with a checkpoint continues through the trainer's own
resume (bitwise where the trainer is), one without starts afresh. RUN/
ablation.json holds what the ablation is, so resuming it with different
settings is refused instead of mixing two experiments."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from ..errors import NetDslError

RECORD = "ablation.json"


def parse_vary(items: list[str]) -> dict[str, list[str]]:
    axes = {}
    for item in items:
        name, eq, values = item.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not eq or not name.strip() or not choices:
            raise NetDslError(f"bad --vary `{item}`", hint="write --vary NAME=V1,V2,..., e.g. --vary act=relu,tanh")
        if name.strip() in axes:
            raise NetDslError(f"--vary {name.strip()} is given twice", hint="list every value in one --vary")
        if len(set(choices)) < len(choices):
            raise NetDslError(f"--vary {item} repeats a value")
        axes[name.strip()] = choices
    if not axes:
        raise NetDslError("ablate needs at least one --vary NAME=V1,V2")
    return axes


def variants(axes: dict[str, list[str]]) -> list[dict[str, str]]:
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def variant_dir(variant: dict[str, str]) -> str:
    """act-relu_pool-2: readable, and free of characters shells and file systems dislike."""
    safe = lambda text: "".join(c if c.isalnum() or c in ".-" else "-" for c in text)
    return "_".join(f"{safe(k)}-{safe(v)}" for k, v in variant.items())


def finished_epochs(run: Path) -> int:
    checkpoint = run / "checkpoint.npz"
    if not checkpoint.exists():
        return 0
    with np.load(checkpoint) as data:
        return int(json.loads(str(data["extra/state"]))["epoch"]) if "extra/state" in data.files else 0


def check_record(out: Path, record: dict) -> None:
    path = out / RECORD
    if path.exists():
        before = json.loads(path.read_text())
        if before != record:
            changed = sorted(k for k in record.keys() | before.keys() if record.get(k) != before.get(k))
            raise NetDslError(f"{out} holds another ablation (it differs in {', '.join(changed)})",
                              hint="repeat the original command to resume it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")


def ablate(file: str, vary: list[str], sets: dict[str, str], out: str | None, data: str | None, backend: str,
           epochs: int | None, batch: int | None, seed: int | None, workers: int | None,
           save_every: int | None, progress: bool | None, target: float, devices=None) -> tuple[str, str]:
    """Train what is left of the ablation; returns (comparison table, picture path)."""
    from ..train.launch import network_from_source, resume_run, start_run
    from .compare import compare
    axes = parse_vary(vary)
    clash = sorted(set(axes) & set(sets))
    if clash:
        raise NetDslError(f"{', '.join(clash)} is both varied and --set", hint="give it with --vary only")
    source = Path(file).read_text(encoding="utf-8", errors="replace") if Path(file).is_file() else None
    if source is None:
        raise NetDslError(f"no network file at {file}")
    for variant in variants(axes):  # every variant must compile before hours go into the first
        network_from_source(source, file, {**sets, **variant})
    name = network_from_source(source, file, sets).name
    root = Path(out or f"runs/{name}-ablation")
    check_record(root, {"file": str(file), "source": source, "vary": axes, "set": sets, "epochs": epochs,
                        "batch": batch, "seed": seed, "data": str(Path(data).resolve()) if data else None})
    runs = []
    for variant in variants(axes):
        run = root / variant_dir(variant)
        runs.append(str(run))
        label = " ".join(f"{k}={v}" for k, v in variant.items())
        done = finished_epochs(run)
        if done and done >= (epochs or json.loads((run / "config.json").read_text())["options"]["epochs"]):
            print(f"{label}: finished ({done} epochs) in {run}")
            continue
        resume = (run / "checkpoint.npz").exists()
        print(f"{label}: {'resuming' if resume else 'training'} in {run}", flush=True)
        if resume:
            trainer = resume_run(str(run), None if backend == "auto" else backend, progress, devices)
        else:
            trainer = start_run(file, {**sets, **variant}, data, str(run), backend, epochs, batch, seed, workers,
                                save_every, progress, devices)
        trainer.run()
    return compare(runs, root / "compare.png", target)
