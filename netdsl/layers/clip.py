"""x clamped to [min, max] (torch.nn.Hardtanh(min, max), ONNX Clip): hard-tanh
is clip(-1, 1), relu6 is clip(0, 6). min < max, so that the output says on
which side of the interval x was and backward needs only y."""
from __future__ import annotations

from ._clamp import Clamp
from .base import ArgSpec, Example


class Clip(Clamp):
    kind = "clip"
    doc = "x clamped to [min, max]; the gradient passes strictly inside"
    args = (
        ArgSpec("min", "float", doc="lower end (hard-tanh: -1)"),
        ArgSpec("max", "float", doc="upper end (hard-tanh: 1)"),
    )
    examples = (
        # ends off the test inputs' grid (multiples of 2/size), so finite differences never straddle one
        Example({"min": -0.951, "max": 0.949}, [(3, 5, 4)], "both ends reached"),
        Example({"min": -0.5, "max": 0.25}, [(9,)], "narrow, off centre"),
        Example({"min": 0.0, "max": 6.0}, [(2, 3, 3)], "relu6"),
    )

    def check_args(self, a):
        if not a["min"] < a["max"]:
            return (f"`min` must be less than `max`, got min={a['min']:g}, max={a['max']:g}",
                    "clip(low, high) keeps x within [low, high]: hard-tanh is clip(-1, 1), relu6 clip(0, 6)")
        return None

    def bounds(self, a):
        return a["min"], a["max"]
