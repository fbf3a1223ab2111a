"""`netdsl test --checkpoint CKPT --data DIR --sweep rotate=0:360:15`: "if I
rotate the dog 90 degrees, will I get the same output?" The validation set's
top-1/top-5 error and the mean probability of the true class, for each value
of a rotation (degrees anticlockwise), magnification or shift (pixels) of the
centre crop, as a table, sweep-<kind>.csv and sweep-<kind>.png.

Each value is a pass over DIR/val exactly as `netdsl test` makes it (the
forward-only executor, the same batches, the same sums), with the crop
transformed before the mean image is taken off (transforms.transformed), so
the value that moves nothing reproduces `netdsl test --no-ten-crop` to the
last digit. The resampling is geometry.py's."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..data.loader import BatchLoader
from ..errors import NetDslError
from ..layers.softmax_loss import top_k_error
from ..train.datasets import checkpoint_test_plan, input_scale, input_size, scaled
from ..train.evaluate import log_probabilities
from ..train.inference import inference_executor
from ..train.launch import checkpoint_network, open_data
from ..train.requirements import require_loss
from ..userpaths import check_data_dir, check_out_dir, check_regular_file
from .geometry import FILLS, geometric
from .transforms import transformed

UNITS = {"rotate": "degrees anticlockwise", "scale": "magnification (1: as trained)",
         "translate": "shift right (pixels)", "translate_y": "shift down (pixels)"}


def parse_sweep(text: str) -> tuple[str, list[float]]:
    """`rotate=0:360:15` (start:stop:step, stop included when the steps land on it) or `scale=0.5,1,2`."""
    kind, eq, spec = text.partition("=")
    kind = kind.strip()
    if not eq or kind not in UNITS:
        raise NetDslError(f"bad --sweep `{text}`", hint=f"write KIND=START:STOP:STEP or KIND=V1,V2,...; kinds: "
                          f"{', '.join(UNITS)} (for example rotate=0:360:15)")
    try:
        if ":" in spec:
            start, stop, step = (float(x) for x in spec.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            count = int(np.floor((stop - start) / step + 1e-9)) + 1
            values = [start + i * step for i in range(count)]
        else:
            values = [float(x) for x in spec.split(",")]
    except ValueError:
        raise NetDslError(f"bad --sweep `{text}`", hint="START:STOP:STEP with STOP >= START and STEP > 0, "
                          "or values separated by commas") from None
    if kind == "scale" and any(v <= 0 for v in values):
        raise NetDslError(f"--sweep {text}: a magnification must be above 0")
    return kind, values


def sweep(checkpoint: str, data_dir: str, spec: str, fill: str = "reflect", out: str | None = None,
          backend: str = "auto", batch: int | None = None, devices=None) -> dict:
    """{"kind", "fill", "rows": [{value, images, loss, top1_error, top5_error, true_probability}], "written"}."""
    kind, values = parse_sweep(spec)
    check_regular_file(checkpoint, "checkpoint")
    check_data_dir(data_dir)
    folder = Path(out) if out else Path(checkpoint).parent
    check_out_dir(folder, run=False)
    net, config = checkpoint_network(checkpoint)
    require_loss(net.graph, "tested")
    test_aug = checkpoint_test_plan(net, config, ten_crop=False)  # a transform acts on the one crop the network sees
    _, data = open_data(net, data_dir)
    ex = net.executor(backend=backend, batch=batch or config["options"]["batch"], devices=devices)
    ex.load(checkpoint)
    ex = inference_executor(ex)
    side = input_size(net)[1]
    top = (data.size - side) // 2
    mean_crop = data.mean[top:top + side, top:top + side].transpose(2, 0, 1) if test_aug.mean_subtract else None
    rows = []
    for value in values:
        with BatchLoader(data, "val", ex.batch, test_aug, workers=2) as loader:
            batches = transformed(loader, geometric(kind, value, fill), mean_crop)
            rows.append({"value": value, **_scores(ex, scaled(batches, input_scale(net)))})
    if not rows or rows[0]["images"] == 0:
        raise NetDslError(f"{data_dir}/val has no images to test on")
    folder.mkdir(parents=True, exist_ok=True)
    result = {"kind": kind, "fill": fill, "rows": rows}
    result["written"] = [_write_csv(result, folder / f"sweep-{kind}.csv"),
                         _write_png(result, folder / f"sweep-{kind}.png")]
    return result


def _scores(ex, batches) -> dict:
    """evaluate()'s sums in evaluate()'s order, and the mean probability of the true class."""
    count = 0
    loss = top1 = top5 = true = 0.0
    for images, labels in batches:
        logp = log_probabilities(ex, images)
        n = len(labels)
        picked = logp[np.arange(n), labels]
        loss += float(-picked.sum())
        top1 += top_k_error(logp, labels, 1) * n
        top5 += top_k_error(logp, labels, 5) * n
        true += float(np.exp(picked).sum())
        count += n
    if count == 0:
        return {"images": 0}
    return {"images": count, "loss": loss / count, "top1_error": top1 / count, "top5_error": top5 / count,
            "true_probability": true / count}


FIELDS = ("value", "images", "loss", "top1_error", "top5_error", "true_probability")


def _write_csv(result: dict, path: Path) -> str:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({k: row[k] for k in FIELDS} for row in result["rows"])
    return str(path)


def _write_png(result: dict, path: Path) -> str:
    from ..train.plots import percent_axis, pyplot
    from .pictures import save
    plt = pyplot()
    xs = [r["value"] for r in result["rows"]]
    fig, (err_ax, p_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    err_ax.plot(xs, [r["top1_error"] for r in result["rows"]], "o-", label="top-1")
    err_ax.plot(xs, [r["top5_error"] for r in result["rows"]], "s--", label="top-5")
    err_ax.set(ylabel="validation error (% of images)", title="error")
    err_ax.legend()
    percent_axis(err_ax, (0, 1))
    p_ax.plot(xs, [r["true_probability"] for r in result["rows"]], "o-", color="C2")
    p_ax.set(ylabel="mean probability of the true class", title="probability of the true class")
    percent_axis(p_ax, (0, 1))
    fill = f"; outside the crop: {result['fill']}"
    for ax in (err_ax, p_ax):
        ax.set_xlabel(UNITS[result["kind"]] + fill)
        ax.grid(alpha=0.3)
    if result["kind"] == "rotate":
        for ax in (err_ax, p_ax):
            ax.set_xticks(np.arange(np.floor(min(xs) / 90) * 90, max(xs) + 1, 90))
    fig.tight_layout()
    return save(fig, path)


def sweep_text(result: dict) -> str:
    rows = result["rows"]
    lines = [f"{rows[0]['images']} validation images (centre crop), {result['kind']} "
             f"({UNITS[result['kind']]}), outside the crop filled by {result['fill']}:",
             f"{'value':>8}     loss   top-1 error   top-5 error   p(true class)"]
    for r in rows:
        lines.append(f"{r['value']:>8g}  {r['loss']:7.4f}  {r['top1_error']:>12.2%}  {r['top5_error']:>12.2%}  "
                     f"{r['true_probability']:>14.2%}")
    lines.append(f"wrote {' and '.join(result['written'])}")
    return "\n".join(lines)


def sweep_command(args) -> int:
    """`netdsl test --sweep`: one checkpoint, no ensemble, no fixed transform."""
    if len(args.checkpoint) > 1 or args.transform:
        raise NetDslError("--sweep takes one --checkpoint and no --transform")
    if args.ten_crop:
        raise NetDslError("--sweep transforms the centre crop; it does not take --ten-crop")
    print(sweep_text(sweep(args.checkpoint[0], args.data, args.sweep, args.fill, args.output, args.backend,
                           args.batch, args.devices)))
    return 0
