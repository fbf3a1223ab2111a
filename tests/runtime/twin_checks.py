"""The comparison the large example networks share with their hand-written
functional PyTorch twins: the file at a small input size (so the numpy
reference stays quick), then logits, loss and every parameter gradient
against float64 autograd."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from test_torch_networks import rel_err, well_scaled_params

import netdsl

RTOL = 1e-4


def small_executor(file: Path, folder: Path, side: int):
    """The reference executor of `file` with a side x side input and well-scaled weights."""
    small = folder / f"{file.stem}-{side}.net"
    small.write_text(file.read_text().replace("3 x 224 x 224", f"3 x {side} x {side}")
                     .replace("random_crop(224", f"random_crop({side}"))
    ex = netdsl.load(small).executor(backend="reference", batch=2, seed=0)
    ex.set_params(well_scaled_params(ex))
    return ex


def assert_matches_twin(ex, twin, images: np.ndarray, labels: np.ndarray, train: bool = False,
                        logits: bool = True) -> None:
    """`twin(F, params, x)` gives the logits; checks them (if `logits`), the loss and every
    gradient of `ex` against float64 autograd through the twin."""
    loss, grads = ex.gradients(images, labels, train=train)
    F = torch.nn.functional
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in ex.params.items()}
    out = twin(F, p, torch.tensor(images, dtype=torch.float64))
    t_loss = F.cross_entropy(out, torch.tensor(labels))
    t_loss.backward()
    if logits:
        assert rel_err(ex.forward(images, train=False), out.detach().numpy()) < RTOL
    assert abs(float(loss) - t_loss.item()) < RTOL * abs(t_loss.item())
    assert grads.keys() == p.keys()
    worst = max((rel_err(grads[k], p[k].grad.numpy()), k) for k in grads)
    assert worst[0] < RTOL, f"largest gradient mismatch: {worst[1]} ({worst[0]:.2e})"
