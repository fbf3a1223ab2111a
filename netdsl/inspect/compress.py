"""`netdsl compress CKPT --data DIR --prune 0.5,0.8,0.9 --quantize int8`: was the
network worth its 61 M parameters? Each setting is applied to a copy of the
checkpoint, written as an ordinary checkpoint (float32, what `netdsl test` and
`netdsl predict` read) beside its stored form (`.packed.npz`: masks, int8
values and scales, the bytes the table counts), and validated on DIR/val
exactly as `netdsl test` does. The arithmetic is in compression.py."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..errors import NetDslError
from ..userpaths import check_data_dir, check_out_dir
from .checkpoints import checkpoint_file, stored_params
from .compression import compress_params, stored_bytes
from .ensemble import member_log_probabilities, scores


def fractions(text: str) -> list[float]:
    """`0.5,0.8,0.9` -> fractions in [0, 1) (argparse type)."""
    import argparse
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("write fractions separated by commas, e.g. 0.5,0.8,0.9") from None
    if any(not 0 <= v < 1 for v in values):
        raise argparse.ArgumentTypeError("each fraction pruned must be at least 0 and below 1")
    return list(dict.fromkeys(values))


def setting_name(fraction: float, int8: bool) -> str:
    return f"prune{fraction * 100:.4g}" + ("-int8" if int8 else "")


def _write_checkpoint(source: Path, target: Path, params: dict[str, np.ndarray]) -> None:
    """The source checkpoint's entries with the parameters replaced; no momentum and no run
    state, so nobody resumes training from a compressed copy by mistake."""
    with np.load(source) as data:
        arrays = {k: data[k] for k in data.files if k.startswith(("state/", "meta/"))}
    arrays |= {f"param/{k}": v for k, v in params.items()}
    np.savez(target, **arrays)


def compress(checkpoint: str, data_dir: str, prune: list[float], int8: bool, scope: str = "layer",
             out: str | None = None, backend: str = "auto", batch: int | None = None, devices=None) -> dict:
    """{"rows": [(name, bytes, scores)], "layers": {layer: {setting: bytes}}, "params": {layer: count},
    "out": folder}."""
    source = checkpoint_file(checkpoint)
    check_data_dir(data_dir)
    folder = Path(out) if out else source.parent / "compressed"
    check_out_dir(folder, run=False)
    params = stored_params(source)
    evaluate = lambda path: scores(*member_log_probabilities(str(path), data_dir, None, None, backend, batch,
                                                             devices)[:2])
    original = evaluate(source)  # before anything is written: a bad checkpoint or data costs nothing
    folder.mkdir(parents=True, exist_ok=True)
    if folder.resolve() != source.parent.resolve():
        shutil.copy2(source.parent / "config.json", folder / "config.json")
        if (source.parent / "mean.npy").exists():
            shutil.copy2(source.parent / "mean.npy", folder / "mean.npy")
    dense = {k: int(np.asarray(v).size) * 4 for k, v in params.items()}
    rows = [("original (float32, dense)", sum(dense.values()), original)]
    per_tensor = {"original": dense}
    for fraction in prune or [0.0]:
        for q in ([False, True] if int8 else [False]):
            name = setting_name(fraction, q)
            evaluated, stored = compress_params(params, fraction, scope, q)
            _write_checkpoint(source, folder / f"{name}.npz", evaluated)
            np.savez(folder / f"{name}.packed.npz", **stored)
            per_tensor[name] = stored_bytes(stored)
            rows.append((name, sum(per_tensor[name].values()), evaluate(folder / f"{name}.npz")))
    layer = lambda tensor: tensor.rpartition(".")[0] or tensor
    layers: dict[str, dict[str, int]] = {}
    counts: dict[str, int] = {}
    for tensor, value in params.items():
        counts[layer(tensor)] = counts.get(layer(tensor), 0) + int(np.asarray(value).size)
        for setting, sizes in per_tensor.items():
            row = layers.setdefault(layer(tensor), {})
            row[setting] = row.get(setting, 0) + sizes[tensor]
    result = {"rows": rows, "layers": layers, "params": counts, "out": str(folder), "scope": scope}
    (folder / "compress.json").write_text(json.dumps(
        {"scope": scope, "rows": [{"setting": n, "bytes": b, **s} for n, b, s in rows], "layers": layers},
        indent=1))
    return result


def compress_text(result: dict) -> str:
    rows, base = result["rows"], result["rows"][0][1]
    images = rows[0][2]["images"]
    width = max(len(n) for n, _, _ in rows)
    lines = [f"{images} validation images; pruning by magnitude, {result['scope']} threshold; stored bytes: "
             "float32 or int8 values + a 1-bit mask where pruned + a float32 scale per output channel (int8)",
             f"{'setting':<{width}}  {'bytes':>12}  {'of original':>11}  {'top-1 error':>11}  {'top-5 error':>11}"]
    for name, size, s in rows:
        lines.append(f"{name:<{width}}  {size:>12,}  {size / base:>11.1%}  {s['top1_error']:>11.2%}  "
                     f"{s['top5_error']:>11.2%}")
    settings = [n for n, _, _ in rows]
    short = ["original"] + settings[1:]
    total = sum(result["params"].values())
    lw = max(len(k) for k in result["layers"] | {"layer": 0})
    lines += ["", "where the bytes go (kB = 1000 bytes):",
              f"{'layer':<{lw}}  {'params':>11}  {'share':>6}  " + "  ".join(f"{s:>14}" for s in short)]
    for name, sizes in result["layers"].items():
        lines.append(f"{name:<{lw}}  {result['params'][name]:>11,}  {result['params'][name] / total:>6.1%}  "
                     + "  ".join(f"{sizes[s] / 1000:>14,.1f}" for s in short))
    lines.append(f"wrote the checkpoints (.npz, float32 for `netdsl test`), their stored forms (.packed.npz) "
                 f"and compress.json to {result['out']}/")
    return "\n".join(lines)


def check_settings(prune: list[float] | None, quantize: str | None) -> None:
    if not prune and not quantize:
        raise NetDslError("compress needs --prune FRACTIONS, --quantize int8 or both",
                          hint="for example --prune 0.5,0.8,0.9 --quantize int8")
