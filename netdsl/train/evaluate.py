"""Validation and test: loss, top-1 and top-5 error over a whole split, with
the centre crop or the paper's ten-crop (the softmax averaged over the four
corner and centre patches and their mirror images).

Everything stays in log space: probabilities of a diverged net underflow to
0, and ranking zeros would make every class tie with the label."""
from __future__ import annotations

import numpy as np

from ..layers import REGISTRY
from ..layers.softmax_loss import log_softmax, top_k_error


def gives_probabilities(ex) -> bool:
    """Whether the executor's output is probabilities already (a network without a loss
    ending in a `softmax`), rather than scores."""
    return "probabilities" in REGISTRY[ex.g.nodes[ex.scores_node].kind].traits


def log_probabilities(ex, images: np.ndarray) -> np.ndarray:
    """Log class probabilities (float64); a 10 x N x ... ten-crop batch is averaged over crops
    in probability, computed as a log-sum-exp so nothing underflows. Scores (C, or C x 1 x 1)
    go through a log-softmax; an output that is probabilities already, through a log."""
    crops = images if images.ndim == 5 else images[None]
    views, n = len(crops), crops.shape[1]
    scores = forward_all(ex, crops.reshape((views * n,) + crops.shape[2:])).reshape(views * n, -1)
    if gives_probabilities(ex):
        with np.errstate(divide="ignore"):  # a probability of 0 is a log of -inf, ranked last
            logs = np.log(scores.astype(np.float64)).reshape(views, n, -1)
    else:
        logs = log_softmax(scores.astype(np.float64)).reshape(views, n, -1)
    if len(logs) == 1:
        return logs[0]
    top = logs.max(axis=0)
    top = np.where(np.isfinite(top), top, 0.0)
    return top + np.log(np.exp(logs - top).mean(axis=0))


def forward_all(ex, images: np.ndarray) -> np.ndarray:
    """Scores of any number of images in full batches of the executor's size: the ten
    views of a batch go through together, so only the split's very last chunk is short."""
    batch = getattr(ex, "batch", None) or len(images)
    chunks = [ex.forward(images[i:i + batch], train=False) for i in range(0, len(images), batch)]
    return np.concatenate(chunks) if len(chunks) != 1 else chunks[0]


def probabilities(ex, images: np.ndarray) -> np.ndarray:
    return np.exp(log_probabilities(ex, images))


def evaluate(ex, batches) -> dict:
    """Mean loss and errors over an iterable of (images, labels) batches."""
    count = 0
    loss = top1 = top5 = 0.0
    for images, labels in batches:
        logp = log_probabilities(ex, images)
        n = len(labels)
        loss += float(-logp[np.arange(n), labels].sum())
        top1 += top_k_error(logp, labels, 1) * n
        top5 += top_k_error(logp, labels, 5) * n
        count += n
    if count == 0:
        return {"loss": float("nan"), "top1_error": float("nan"), "top5_error": float("nan"), "images": 0}
    return {"loss": loss / count, "top1_error": top1 / count, "top5_error": top5 / count, "images": count}
