"""Validation and test: loss, top-1 and top-5 error over a whole split, with
the centre crop or the paper's ten-crop (the softmax averaged over the four
corner and centre patches and their mirror images)."""
from __future__ import annotations

import numpy as np

from ..layers.softmax_loss import log_softmax, top_k_error


def probabilities(ex, images: np.ndarray) -> np.ndarray:
    """Class probabilities; a 10 x N x ... ten-crop batch is averaged over crops."""
    crops = images if images.ndim == 5 else images[None]
    total = None
    for crop in crops:
        p = np.exp(log_softmax(ex.forward(crop, train=False).astype(np.float64)))
        total = p if total is None else total + p
    return total / len(crops)


def evaluate(ex, batches) -> dict:
    """Mean loss and errors over an iterable of (images, labels) batches."""
    count = 0
    loss = top1 = top5 = 0.0
    for images, labels in batches:
        p = probabilities(ex, images)
        n = len(labels)
        picked = np.maximum(p[np.arange(n), labels], 1e-30)
        loss += float(-np.log(picked).sum())
        top1 += top_k_error(p, labels, 1) * n
        top5 += top_k_error(p, labels, 5) * n
        count += n
    if count == 0:
        return {"loss": float("nan"), "top1_error": float("nan"), "top5_error": float("nan"), "images": 0}
    return {"loss": loss / count, "top1_error": top1 / count, "top5_error": top5 / count, "images": count}
