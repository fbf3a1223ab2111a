"""Ensembles (the paper averages the softmax of 5 or 7 CNNs) for `netdsl
test` and `netdsl predict`, and `netdsl test --transform`.

Each member runs as its own network with its own preprocessing (prepared
size, mean image, input scale), so members may differ in topology as long as
they read the same validation images and name the same classes. The
ensemble's class probabilities are the mean of the members'; everything is
kept in log space, where a diverged member's zeros cannot tie every class."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.augment import center_crop
from ..data.folder import decode_square
from ..train.launch import decoder_reason
from ..data.loader import BatchLoader
from ..data.progress import counted
from ..errors import NetDslError
from ..layers.softmax_loss import top_k_error
from ..train.datasets import checkpoint_test_plan, class_count, data_plan, input_scale, input_size, scaled
from ..train.evaluate import log_probabilities
from ..train.launch import by_name, checkpoint_network, open_data, relabelled
from ..train.requirements import require_class_output, require_loss
from .transforms import transformed


def mean_of_probabilities(logps: list[np.ndarray]) -> np.ndarray:
    """log(mean_i exp(logp_i)), by log-sum-exp."""
    stack = np.stack(logps)
    top = stack.max(axis=0)
    top = np.where(np.isfinite(top), top, 0.0)
    return top + np.log(np.exp(stack - top).mean(axis=0))


def scores(logp: np.ndarray, labels: np.ndarray) -> dict:
    picked = np.take_along_axis(logp, labels[:, None], axis=1)[:, 0]
    return {"loss": float(-np.maximum(picked, -69.0).mean()), "top1_error": top_k_error(logp, labels, 1),
            "top5_error": top_k_error(logp, labels, 5), "images": len(labels)}


def member_log_probabilities(checkpoint: str, data_dir: str, ten_crop: bool | None, transform: str | None,
                             backend: str, batch: int | None, devices=None, progress: bool | None = None):
    """(log-probabilities N x K, labels, class list, crop mode) of one checkpoint on DIR/val."""
    net, config = checkpoint_network(checkpoint)
    require_loss(net.graph, "tested")
    if transform not in (None, "none"):
        ten_crop = False  # a transform acts on the one crop the network sees
    test_aug = checkpoint_test_plan(net, config, ten_crop)
    _, data = open_data(net, data_dir, training=False)
    remap = by_name(checkpoint, config, data, data_dir)
    ex = net.executor(backend=backend, batch=batch or config["options"]["batch"], devices=devices)
    ex.load(checkpoint)
    side = input_size(net)[1]
    top = (data.size - side) // 2
    mean_crop = data.mean[top:top + side, top:top + side].transpose(2, 0, 1) if test_aug.mean_subtract else None
    logps, labels = [], []
    with BatchLoader(data, "val", ex.batch, test_aug, workers=2) as loader:
        shown = counted(loader, len(loader), f"testing {Path(checkpoint).name}", progress)
        batches = shown if transform in (None, "none") else transformed(shown, transform, mean_crop)
        for images, y in relabelled(scaled(batches, input_scale(net)), remap):
            logps.append(log_probabilities(ex, images))
            labels.append(np.asarray(y))
    if not logps:
        raise NetDslError(f"{data_dir}/val has no images to test on")
    mode = "ten-crop" if test_aug.crop_mode == "ten" else "centre crop"
    return np.concatenate(logps), np.concatenate(labels), list(config.get("classes") or data.classes), mode


def check_members(checkpoints: list[str]) -> None:
    """Every member opened and compared before any is evaluated: the members of an ensemble must
    output the same classes, by name, in the same order, or their probabilities cannot be averaged."""
    first = None
    for checkpoint in checkpoints:
        net, config = checkpoint_network(checkpoint)
        names = config.get("classes") or [f"class {i}" for i in range(class_count(net))]
        if first is None:
            first = (checkpoint, names)
        elif names != first[1]:
            other = first[1]
            if len(names) != len(other):
                why = f"{len(names)} classes against {len(other)}"
            else:
                i = next(i for i, (a, b) in enumerate(zip(names, other)) if a != b)
                why = f"class {i} is `{names[i]}` against `{other[i]}`"
            raise NetDslError(f"{checkpoint} and {first[0]} cannot form an ensemble: {why}",
                              hint="ensemble members must be trained on the same classes")


def ensemble_errors(checkpoints: list[str], data_dir: str, ten_crop: bool | None = None, transform: str | None = None,
                  backend: str = "auto", batch: int | None = None, devices=None, progress: bool | None = None) -> dict:
    """{"members": [(checkpoint, scores)], "ensemble": scores or None, "mode": text}."""
    members, logps, reference = [], [], None
    for checkpoint in checkpoints:
        logp, labels, classes, mode = member_log_probabilities(checkpoint, data_dir, ten_crop, transform, backend,
                                                               batch, devices, progress)
        if reference is None:
            reference = (labels, classes)
        elif classes != reference[1] or not np.array_equal(labels, reference[0]):
            raise NetDslError(f"{checkpoint} does not see the same validation images and classes as "
                              f"{checkpoints[0]}", hint="ensemble members must be trained on the same classes")
        members.append((checkpoint, scores(logp, labels)))
        logps.append(logp)
    ensemble = scores(mean_of_probabilities(logps), reference[0]) if len(logps) > 1 else None
    if transform not in (None, "none"):
        mode += f", transform {transform}"
    return {"members": members, "ensemble": ensemble, "mode": mode}


def test_table(result: dict) -> str:
    rows = [(str(c), s) for c, s in result["members"]]
    if result["ensemble"] is not None:
        rows.append((f"ensemble of {len(rows)} (mean softmax)", result["ensemble"]))
    width = max(len(r[0]) for r in rows + [("member", None)])
    images = result["members"][0][1]["images"]
    lines = [f"{images} validation images ({result['mode']}):",
             f"{'member':<{width}}    loss   top-1 error   top-5 error"]
    for name, s in rows:
        lines.append(f"{name:<{width}}  {s['loss']:6.4f}  {s['top1_error']:>12.2%}  {s['top5_error']:>12.2%}")
    return "\n".join(lines)


def predict_ensemble(checkpoints: list[str], images: list[str], backend: str = "auto", devices=None,
                     top: int = 5) -> list[tuple[str, list, list]]:
    """Per image: (path, ensemble top classes [(name, p)], each member's best (checkpoint, name, p))."""
    per_member, names = [], None
    for checkpoint in checkpoints:
        net, config = checkpoint_network(checkpoint)
        require_class_output(net.graph)
        member_names = config.get("class_names") or config.get("classes")
        if names is not None and member_names != names:
            raise NetDslError(f"{checkpoint} names other classes than {checkpoints[0]}",
                              hint="ensemble members must be trained on the same classes")
        names = member_names
        prepared, _, _ = data_plan(net)
        side = input_size(net)[1]
        ex = net.executor(backend=backend, batch=1, devices=devices)
        ex.load(checkpoint)
        mean_file = Path(checkpoint).parent / "mean.npy"
        mean = np.load(mean_file) if mean_file.exists() and not config.get("network_only") else None
        rows = []
        for path in images:
            try:
                pixels = decode_square(path, prepared)
            except Exception as exc:  # any decoder failure is a bad input file
                raise NetDslError(f"cannot read image {path}: {decoder_reason(exc)}") from None
            rows.append(log_probabilities(ex, center_crop(pixels[None], side, mean)
                                          * np.float32(input_scale(net)))[0])
        per_member.append(np.stack(rows))
    combined = mean_of_probabilities(per_member)
    label = lambda i: names[i] if i < len(names) else f"class {i}"
    results = []
    for row, path in enumerate(images):
        best = np.argsort(-combined[row], kind="stable")[:top]
        tops = [(checkpoints[m], label(int(np.argmax(lp[row]))), float(np.exp(lp[row].max())))
                for m, lp in enumerate(per_member)]
        results.append((path, [(label(int(i)), float(np.exp(combined[row, i]))) for i in best], tops))
    return results


def predict_text(results) -> str:
    lines = []
    for path, ranked, members in results:
        lines.append(path)
        lines.append(f"  ensemble of {len(members)}:")
        lines += [f"    {p:7.2%}  {name}" for name, p in ranked]
        lines.append("  members (top-1):")
        lines += [f"    {p:7.2%}  {name}  ({checkpoint})" for checkpoint, name, p in members]
    return "\n".join(lines)
