"""A generated backend against the numpy reference on a whole example network:
the inputs and the checks the GPU test (tests/runtime/test_cuda_backend.py)
and its emulated twin (tests/codegen/test_cuda_whole_step.py) share, so a
failure on the GPU can be rerun, number for number, where there is none.

The weights are spread out (`spread_weights`), not the file's initialisation:
with AlexNet's N(0, 0.01) weights and biases of 1, conv5's outputs are 1 plus
a little, and at batch 2 a few of its 3 x 3 max-pooling windows hold two values
about a millionth apart, closer than the float32 rounding of a dot product
of thousands of terms. Which one is the maximum then depends on the order the sum was taken
in, and the window's whole gradient moves to a neighbouring pixel: conv1's
weight gradient came out 2.3% away from the reference on an H200, and equally
far (to seven digits) under the CPU emulator, although every kernel was right.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import netdsl
from tolerances import NETWORK_RTOL, REDUCED_GRADIENT_RTOL, assert_close

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def spread_weights(params: dict, seed: int = 0) -> dict:
    """He-scaled weights (std sqrt(2 / fan-in)) and N(0, 0.1) biases, so activations
    are spread out and no max-pooling window or ReLU sits on a rounding-sized tie."""
    gen = np.random.default_rng(seed)
    return {name: (gen.standard_normal(v.shape) * (np.sqrt(2 / (v.size // v.shape[0])) if v.ndim > 1 else 0.1))
            .astype(np.float32) for name, v in params.items()}


def pair(example: str, batch: int, make, precision: str = "fp32", overrides: dict | None = None):
    """The reference and `make(net)`'s executor of an example whose matrix products run in
    `precision` (and with `overrides` set, as `--set` would), with the same spread weights,
    and a batch of images and labels."""
    net = netdsl.load(EXAMPLES / example, {"precision": precision, **(overrides or {})})
    ref = net.executor(backend="reference", batch=batch, seed=1, dtype=np.float64, precision=precision)
    other = make(net)
    weights = spread_weights(ref.params)
    ref.set_params(weights)
    other.set_params(weights)
    shape = net.graph.nodes["image"].shape
    classes = net.graph.nodes["label"].shape[0]
    r = np.random.default_rng(0)
    return ref, other, r.standard_normal((batch,) + tuple(shape)).astype(np.float32), r.integers(0, classes, batch)


def _precision(other) -> str:
    plan = getattr(other, "plan", None)
    return plan.precision if plan is not None else "fp32"


def _rtol(other) -> float:
    return NETWORK_RTOL[_precision(other)]


def assert_gradients_match(ref, other, images, labels) -> None:
    """The scores at test time, the loss and every parameter gradient of a training pass
    (dropout on), within the tolerances of the precision `other` computes its matrix products
    in (tests/tolerances.py: in TF32 and BF16, the gradients below the last layer are held to
    REDUCED_GRADIENT_RTOL, the rest to NETWORK_RTOL)."""
    precision, rtol = _precision(other), _rtol(other)
    assert_close(other.forward(images), ref.forward(images), rtol, "scores")
    want_loss, want = ref.gradients(images, labels)
    got_loss, got = other.gradients(images, labels)
    assert_close(got_loss, want_loss, rtol, "loss")
    for name in want:
        below = precision != "fp32" and name.rsplit(".", 1)[0] != ref.scores_node  # the layer giving the scores
        assert_close(got[name], want[name], REDUCED_GRADIENT_RTOL[precision] if below else rtol, name)


def assert_steps_match(ref, other, images, labels, steps: int = 3) -> None:
    """The weights after `steps` SGD steps."""
    for _ in range(steps):
        ref.step(images, labels)
        other.step(images, labels)
    for name in ref.params:
        assert_close(other.params[name], ref.params[name], _rtol(other), name)
