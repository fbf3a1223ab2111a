"""Softmax cross-entropy: the mean over the batch of -log softmax(scores)[label].
Also reports top-1 and top-5 error, the paper's two figures."""
from __future__ import annotations

import numpy as np

from .base import torch_functional, ArgSpec, Example, Layer, ShapeError, positive


def log_softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)  # exp never overflows
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def top_k_error(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is not among the k highest scores.

    Give it logits or log-probabilities, never probabilities, which underflow to
    ties. A tie counts against the model: the label's rank is the number of
    other classes scoring at least as high, so a net whose scores are all equal
    (or NaN) gets every answer wrong rather than every answer right."""
    k = min(k, scores.shape[1])
    label_score = np.take_along_axis(scores, labels[:, None], axis=1)
    rank = (scores >= label_score).sum(axis=1) - 1
    wrong = (rank >= k) | ~np.isfinite(label_score[:, 0]) | np.isnan(scores).any(axis=1)
    return float(wrong.mean())


class SoftmaxLoss(Layer):
    kind = "softmax_loss"
    doc = "softmax + cross-entropy against an integer `label` input; mean over the batch"
    n_inputs = 2
    traits = frozenset({"loss"})
    # The layer's own value stays unweighted; the executors sum the losses times their weights.
    args = (ArgSpec("weight", "float", None, positive,
                    doc="its share of the total loss; unset: the main loss (weight 1), which gives the metrics"),)
    examples = (Example({}, [(7,), (7,)]), Example({}, [(3,), (3,)], "fewer than 5 classes"))

    def output_shape(self, a, in_shapes):
        scores, labels = in_shapes
        if len(scores) != 1:
            # A C x 1 x 1 map (a last 1x1 conv, a global pooling) holds the scores already;
            # the loss still takes a vector, so every reader of the scores sees N x C.
            fix = ("flatten the map first: `... -> flatten` before the loss" if scores[1:] == (1, 1) else
                   "put a fully connected layer with one output per class before the loss")
            raise ShapeError(f"softmax_loss needs a vector of class scores, got {'x'.join(map(str, scores))}", fix)
        if scores[0] != labels[0]:
            raise ShapeError(f"channel mismatch: the scores have {scores[0]} classes but the label input has {labels[0]}",
                             f"give the last layer {labels[0]} outputs, or change the label's class count")
        return (1,)

    def forward(self, a, params, xs, ctx):
        scores, labels = xs
        logp = log_softmax(scores)
        loss = -np.take_along_axis(logp, labels[:, None].astype(np.int64), axis=1).mean()
        return np.asarray(loss, scores.dtype), (logp, labels)

    def backward(self, a, params, cache, dy, ctx):
        logp, labels = cache
        grad = np.exp(logp)
        grad[np.arange(len(labels)), labels] -= 1
        return [grad * (np.asarray(dy, logp.dtype) / len(labels)), None], {}

    def metrics(self, scores: np.ndarray, labels: np.ndarray) -> dict:
        return {"top1_error": top_k_error(scores, labels, 1), "top5_error": top_k_error(scores, labels, 5)}

    def torch_forward(self, a, params, xs, train, state=None):
        return torch_functional().cross_entropy(xs[0], xs[1])
