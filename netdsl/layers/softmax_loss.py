"""Softmax cross-entropy: the mean over the batch of -log softmax(scores)[label].
Also reports top-1 and top-5 error, the paper's two figures.

The scores are a vector of C classes, or a C x 1 x 1 map: what a last 1x1
convolution followed by a global average pool gives (Network in Network's
head). The map is its flattened vector (the same bytes, in the same order),
as PyTorch's cross_entropy takes it after a flatten: the same loss, and the
gradient in the map's shape."""
from __future__ import annotations

import numpy as np

from .base import torch_functional, ArgSpec, Example, Layer, ShapeError, positive


def flat_scores(scores: np.ndarray) -> np.ndarray:
    """N x C scores of N x C or N x C x 1 x 1 ones (a view: the same bytes)."""
    return scores.reshape(len(scores), -1)


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
    examples = (Example({}, [(7,), (7,)]), Example({}, [(3,), (3,)], "fewer than 5 classes"),
                Example({}, [(7, 1, 1), (7,)], "a C x 1 x 1 map: global average pooling's scores"))

    def output_shape(self, a, in_shapes):
        scores, labels = in_shapes
        if len(scores) != 1 and any(side != 1 for side in scores[1:]):
            # a C x 1 x 1 map holds one score per class; a wider map holds one per pixel
            raise ShapeError(f"the scores must be a vector of class scores (or C x 1 x 1), and they are "
                             f"{'x'.join(map(str, scores))}",
                             "pool or flatten first: `... -> global_avgpool` before the loss gives one score per "
                             "channel, `... -> flatten -> fc(classes)` one per class")
        if scores[0] != labels[0]:
            raise ShapeError(f"channel mismatch: the scores have {scores[0]} classes but the label input has {labels[0]}",
                             f"give the last layer {labels[0]} outputs, or change the label's class count")
        return (1,)

    def forward(self, a, params, xs, ctx):
        scores, labels = xs
        logp = log_softmax(flat_scores(scores))
        loss = -np.take_along_axis(logp, labels[:, None].astype(np.int64), axis=1).mean()
        return np.asarray(loss, scores.dtype), (logp, labels, scores.shape)

    def backward(self, a, params, cache, dy, ctx):
        logp, labels, shape = cache
        grad = np.exp(logp)
        grad[np.arange(len(labels)), labels] -= 1
        return [(grad * (np.asarray(dy, logp.dtype) / len(labels))).reshape(shape), None], {}

    def metrics(self, scores: np.ndarray, labels: np.ndarray) -> dict:
        scores = flat_scores(scores)
        return {"top1_error": top_k_error(scores, labels, 1), "top5_error": top_k_error(scores, labels, 5)}

    def torch_forward(self, a, params, xs, train, state=None):
        return torch_functional().cross_entropy(xs[0].flatten(1), xs[1])
