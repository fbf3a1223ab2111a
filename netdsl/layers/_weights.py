"""What the kinds that own a weight and a bias share: their arguments,
initialisers and per-parameter learning-rate / weight-decay multipliers."""
from __future__ import annotations

from .base import ArgSpec, Init, Layer, non_negative

WEIGHT_ARGS = (
    ArgSpec("init", "init", Init("gauss", 0.01), doc="weight initialiser: gauss(std), uniform(limit) or a constant"),
    ArgSpec("bias", "float", 0.0, doc="constant the bias starts at"),
    ArgSpec("lr_mult", "float", 1.0, non_negative, doc="learning-rate multiplier for the weight"),
    ArgSpec("decay_mult", "float", 1.0, non_negative, doc="weight-decay multiplier for the weight"),
    ArgSpec("bias_lr_mult", "float", 1.0, non_negative, doc="learning-rate multiplier for the bias"),
    ArgSpec("bias_decay_mult", "float", 1.0, non_negative, doc="weight-decay multiplier for the bias"),
)


class WeightedLayer(Layer):
    def param_init(self, a: dict, name: str) -> Init:
        return a["init"] if name == "weight" else Init("constant", a["bias"])

    def multipliers(self, a: dict, name: str) -> tuple[float, float]:
        if name == "bias":
            return a["bias_lr_mult"], a["bias_decay_mult"]
        return a["lr_mult"], a["decay_mult"]
