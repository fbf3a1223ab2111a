"""ReLU6, min(max(0, x), 6) (Howard et al. 2017, MobileNets; MobileNetV2's
nonlinearity): a rectifier whose output stays in a range low precision holds."""
from __future__ import annotations

from ._clamp import Clamp
from .base import Example


class ReLU6(Clamp):
    kind = "relu6"
    doc = "min(max(0, x), 6)"
    examples = (Example({}, [(3, 5, 4)]), Example({}, [(7,)]))

    def bounds(self, a):
        return 0.0, 6.0
