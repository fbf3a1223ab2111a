"""The paper's update rule (section 5), per parameter:

    v <- momentum * v - weight_decay * lr * w - lr * dL/dw
    w <- w + v

with lr and weight_decay scaled by the parameter's layer multipliers
(`lr_mult`, `decay_mult`, `bias_lr_mult`, `bias_decay_mult`).
"""
from __future__ import annotations

import numpy as np


def sgd_update(w: np.ndarray, v: np.ndarray, grad: np.ndarray, lr: float, momentum: float,
               weight_decay: float) -> None:
    """In place; the float32 constants keep float32 arrays in float32."""
    dtype = w.dtype.type
    v *= dtype(momentum)
    v -= dtype(weight_decay * lr) * w
    v -= dtype(lr) * grad
    w += v
