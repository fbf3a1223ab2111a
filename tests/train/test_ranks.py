"""Top-k error on a diverged net: ranked on log-probabilities, ties counted
against the model (probabilities underflowing to 0 used to tie the label with
the winners and report 0% top-5)."""
from __future__ import annotations

import numpy as np

from netdsl.compiler import compile_graph
from netdsl.layers.softmax_loss import top_k_error
from netdsl.train.evaluate import evaluate, log_probabilities


class FixedScores:
    """An executor stand-in whose forward returns the same logits for every image; its graph
    is a real one ending in an fc and a loss, so its output reads as scores, not probabilities."""

    def __init__(self, logits):
        self.logits = np.asarray(logits, np.float32)
        self.g = compile_graph(text=f"""
input image : 1 x 2 x 2
input label : {len(self.logits)} classes
scores = fc(image, {len(self.logits)})
loss = softmax_loss(scores, label)
""")
        self.scores_node = "scores"

    def forward(self, images, train=False):
        return np.repeat(self.logits[None], len(images), axis=0)


def test_ties_count_against_the_model():
    scores = np.zeros((4, 10))
    labels = np.array([0, 3, 7, 9])
    assert top_k_error(scores, labels, 5) == 1.0
    assert top_k_error(scores, labels, 10) == 0.0  # every class fits in the top 10


def test_nan_scores_are_misses():
    scores = np.full((2, 10), np.nan)
    assert top_k_error(scores, np.array([0, 1]), 5) == 1.0


def test_underflowing_probabilities_do_not_make_top5_hits():
    logits = np.full(10, -2000.0)
    logits[0] = 0.0  # class 0 wins; every other class's probability underflows to exactly 0
    ex = FixedScores(logits)
    images = np.zeros((3, 1, 2, 2), np.float32)
    result = evaluate(ex, [(images, np.array([3, 4, 5]))])
    assert result["top5_error"] == 1.0 and result["top1_error"] == 1.0
    assert np.isfinite(result["loss"]) and result["loss"] > 1000  # not clamped at -log(1e-30)
    assert evaluate(ex, [(images, np.array([0, 0, 0]))])["top5_error"] == 0.0


def test_ten_crop_average_is_taken_in_log_space():
    ex = FixedScores([0.0, -1e4, -1e4])
    crops = np.zeros((10, 2, 1, 2, 2), np.float32)
    logp = log_probabilities(ex, crops)
    assert logp.shape == (2, 3) and np.isfinite(logp).all()
    assert np.allclose(logp[:, 0], 0.0) and np.allclose(logp[:, 1], -1e4)
