"""The arithmetic of `netdsl compress`: magnitude pruning, per-output-channel
int8 quantisation, and the bytes the result takes when stored.

Which tensors: every parameter with two or more axes (the convolution and
fully-connected weight matrices, axis 0 the output channel). Biases and other
per-channel vectors stay float32 and dense; they are under 0.1% of AlexNet.

Stored size, counted per weight tensor (what `packed()` writes, array bytes
only, no zip headers):
  dense float32 ........ 4 bytes per element (no pruning, no quantisation)
  pruned ............... a 1-bit occupancy mask (ceil(n/8) bytes) + the kept
                         values (4 bytes each, or 1 byte with int8)
  int8 ................. + one float32 scale per output channel
A pruned tensor is stored dense when the mask costs more than it saves (pruning
0%), so compression never makes a tensor bigger. Other parameters: 4 bytes each.

Int8: per output channel c, scale_c = max|w_c| / 127 and q = round(w / scale_c)
in [-127, 127]; evaluation uses the dequantised q * scale_c in float32, so the
accumulation stays float. Each weight moves by at most scale_c / 2 (round to
nearest), pruned zeros stay exactly zero.
"""
from __future__ import annotations

import numpy as np

LEVELS = 127  # symmetric: -127..127, so the scale maps max|w| exactly onto the top level


def is_weight(value: np.ndarray) -> bool:
    return np.ndim(value) >= 2


def _prune_count(magnitudes: np.ndarray, count: int) -> np.ndarray:
    """Mask keeping all but the `count` smallest magnitudes (ties: the earlier position goes first)."""
    keep = np.ones(magnitudes.size, bool)
    if count > 0:
        keep[np.argsort(magnitudes.ravel(), kind="stable")[:count]] = False
    return keep.reshape(magnitudes.shape)


def prune_masks(weights: dict[str, np.ndarray], fraction: float, scope: str = "layer") -> dict[str, np.ndarray]:
    """Boolean keep-masks: `fraction` of each tensor's smallest |w| removed ("layer"), or of all
    weights together, one threshold across layers ("global")."""
    if scope == "layer":
        return {k: _prune_count(np.abs(w), int(np.floor(fraction * w.size))) for k, w in weights.items()}
    names = list(weights)
    flat = np.concatenate([np.abs(weights[k]).ravel() for k in names]) if names else np.zeros(0)
    keep = _prune_count(flat, int(np.floor(fraction * flat.size)))
    masks, at = {}, 0
    for k in names:
        masks[k] = keep[at:at + weights[k].size].reshape(weights[k].shape)
        at += weights[k].size
    return masks


def quantise(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 values, float32 scale per output channel) with w ~ q * scale."""
    peak = np.abs(w.reshape(len(w), -1)).max(axis=1).astype(np.float32)
    scale = np.where(peak > 0, peak / np.float32(LEVELS), np.float32(1.0)).astype(np.float32)
    shaped = scale.reshape((-1,) + (1,) * (w.ndim - 1))
    q = np.clip(np.rint(w / shaped), -LEVELS, LEVELS).astype(np.int8)
    return q, scale


def dequantise(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (q.astype(np.float32) * scale.reshape((-1,) + (1,) * (q.ndim - 1))).astype(np.float32)


def compress_params(params: dict[str, np.ndarray], fraction: float, scope: str, int8: bool):
    """(float32 parameters to evaluate with, packed arrays to store) for one setting."""
    weights = {k: v for k, v in params.items() if is_weight(v)}
    masks = prune_masks(weights, fraction, scope)
    evaluated, stored = {}, {}
    for name, value in params.items():
        value = np.asarray(value, np.float32)
        if name not in weights:
            evaluated[name], stored[f"{name}/dense"] = value, value
            continue
        kept = np.where(masks[name], value, np.float32(0))
        if int8:
            q, scale = quantise(kept)
            evaluated[name] = dequantise(q, scale)
            values, extra = q, {f"{name}/scale": scale}
        else:
            evaluated[name], values, extra = kept, kept, {}
        mask = masks[name].ravel()
        sparse_bytes = (mask.size + 7) // 8 + int(mask.sum()) * values.itemsize
        if fraction > 0 and sparse_bytes < values.nbytes:
            stored[f"{name}/mask"] = np.packbits(mask)
            stored[f"{name}/values"] = values.ravel()[mask]
        else:
            stored[f"{name}/dense"] = values
        stored |= extra
        stored[f"{name}/shape"] = np.asarray(value.shape, np.int64)
    return evaluated, stored


def stored_bytes(stored: dict[str, np.ndarray]) -> dict[str, int]:
    """Bytes per parameter tensor of a packed setting (shape records are bookkeeping, not counted)."""
    sizes: dict[str, int] = {}
    for key, array in stored.items():
        name, _, part = key.rpartition("/")
        if part != "shape":
            sizes[name] = sizes.get(name, 0) + array.nbytes
    return sizes


def unpack(stored: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The float32 parameters a packed file stands for (the inverse of compress_params' storing)."""
    names = {k.rpartition("/")[0] for k in stored}
    out = {}
    for name in names:
        if f"{name}/dense" in stored:
            values = stored[f"{name}/dense"]
        else:
            shape = tuple(stored[f"{name}/shape"])
            mask = np.unpackbits(stored[f"{name}/mask"], count=int(np.prod(shape))).astype(bool)
            flat = np.zeros(mask.size, stored[f"{name}/values"].dtype)
            flat[mask] = stored[f"{name}/values"]
            values = flat.reshape(shape)
        out[name] = dequantise(values, stored[f"{name}/scale"]) if f"{name}/scale" in stored else values
    return out
