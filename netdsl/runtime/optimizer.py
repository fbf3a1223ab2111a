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


def global_norm(grads) -> float:
    """The L2 norm of all gradients together, as one vector (float64 sum of float32 dots)."""
    total = 0.0
    for g in grads:
        flat = np.asarray(g).reshape(-1)
        total += float(np.dot(flat, flat))
    return float(np.sqrt(total))


def step_norms(grads: dict, params: dict, velocity: dict) -> dict[str, tuple[float, float, float]]:
    """{param: (||gradient||, ||update||, ||weight||)} after a step: the update is the momentum
    buffer, since w <- w + v (train/gradient_flow.py logs them per epoch)."""
    def norm(array) -> float:
        flat = np.asarray(array).reshape(-1)
        with np.errstate(over="ignore"):  # a diverging step's norm is inf; the watchdog reports the step
            return float(np.sqrt(float(np.dot(flat, flat))))
    return {name: (norm(grads[name]), norm(velocity[name]), norm(params[name])) for name in params if name in grads}


def clip_scale(norm: float, clip: float) -> float:
    """The factor that brings a gradient of global norm `norm` down to `clip` (1 when
    it is within it, or when clip is 0: off). Scaling the gradient, not the rate,
    keeps it exact under momentum: the velocity remembers the clipped gradient."""
    return clip / norm if clip > 0 and norm > clip else 1.0
