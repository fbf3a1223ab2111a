"""The comparison the large example networks share with their hand-written
PyTorch twins (functions, or torch.nn modules with torchvision's parameter
names and a map from netdsl's names onto them): the file at a small input
size (so the numpy reference stays quick), then logits, loss and every
parameter gradient against float64 autograd."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from test_torch_networks import rel_err, well_scaled_params

import netdsl

RTOL = 1e-4


def small_executor(file: Path, folder: Path, side: int, unit_gains: bool = False):
    """The reference executor of `file` with a side x side input and well-scaled weights.
    `unit_gains`: batch norms scale by 1 + N(0, 0.1) instead of N(0, 0.1), so that a deep
    net without shortcuts keeps its input's signal and every layer's gradient (at 0.1 a
    layer, MobileNetV2's first blocks get gradients of 1e-21 and GoogLeNet's stem 1e-8,
    differences of nearly equal float32 sums or nothing at all to compare)."""
    small = folder / f"{file.stem}-{side}.net"
    small.write_text(file.read_text().replace("3 x 224 x 224", f"3 x {side} x {side}")
                     .replace("random_crop(224", f"random_crop({side}"))
    ex = netdsl.load(small).executor(backend="reference", batch=2, seed=0)
    params = well_scaled_params(ex)
    if unit_gains:
        params = {k: v + np.float32(1) if re.search(r"\.batchnorm\d*\.weight$", k) else v for k, v in params.items()}
    ex.set_params(params)
    return ex


def assert_matches_twin(ex, twin, images: np.ndarray, labels: np.ndarray, train: bool = False,
                        logits: bool = True, gradients: bool = True) -> None:
    """`twin(F, params, x)` gives the logits; checks them (if `logits`), the loss and (if
    `gradients`) every gradient of `ex` against float64 autograd through the twin."""
    loss, grads = ex.gradients(images, labels, train=train)
    F = torch.nn.functional
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in ex.params.items()}
    out = twin(F, p, torch.tensor(images, dtype=torch.float64))
    t_loss = F.cross_entropy(out, torch.tensor(labels))
    t_loss.backward()
    if logits:
        assert rel_err(ex.forward(images, train=False), out.detach().numpy()) < RTOL
    assert abs(float(loss) - t_loss.item()) < RTOL * abs(t_loss.item())
    if not gradients:
        return
    assert grads.keys() == p.keys()
    worst = max((rel_err(grads[k], p[k].grad.numpy()), k) for k in grads)
    assert worst[0] < RTOL, f"largest gradient mismatch: {worst[1]} ({worst[0]:.2e})"


def graph_params(g) -> dict:
    """Every parameter's shape by netdsl name, as the executor would hold it."""
    return {f"{n}.{p}": tuple(s) for n, d in g.nodes(data=True) if d.is_layer for p, s in d.params.items()}


def assert_same_parameters(shapes: dict, module, torch_name) -> None:
    """`torch_name` maps every netdsl parameter onto one of the module's, of the same shape,
    and leaves none of the module's over: the file and the module are the same network."""
    theirs = {k: tuple(v.shape) for k, v in module.named_parameters()}
    mapped = {torch_name(k): s for k, s in shapes.items()}
    assert len(mapped) == len(shapes), "two netdsl parameters map onto one of the module's"
    assert mapped == theirs, sorted(set(mapped.items()) ^ set(theirs.items()))[:6]


def module_as_twin(module, torch_name, train: bool):
    """A twin for `assert_matches_twin`: the module in float64, run with netdsl's weights."""
    module = module.double().train(train)
    return lambda F, p, x: torch.func.functional_call(module, {torch_name(k): v for k, v in p.items()}, (x,))


def images_far_from_kinks(module, torch_name, params: dict, side: int, seeds=range(5),
                          train: bool = False) -> np.ndarray:
    """Of a few random batches of two, the one whose ReLU and ReLU6 inputs (in the float64
    module with netdsl's weights) stay furthest from the kinks at 0 and 6. An input within
    float32's rounding of a kink (4e-7 was found) has its gradient on one side in the
    reference and on the other in the twin, and that one element is a few percent of a
    batch norm's bias gradient: such a batch tests nothing but the tie."""
    module = module.double().train(train)
    kinks = (torch.nn.ReLU, torch.nn.ReLU6)
    margins = []
    hooks = [m.register_forward_hook(lambda m, i, o: margins.append(
        min(i[0].abs().min().item(), (i[0] - 6).abs().min().item() if isinstance(m, torch.nn.ReLU6) else 1.0)))
        for m in module.modules() if isinstance(m, kinks)]
    weights = {torch_name(k): torch.tensor(v, dtype=torch.float64) for k, v in params.items()}

    def batch(seed):
        return np.random.default_rng(seed).standard_normal((2, 3, side, side)).astype(np.float32)

    def margin(seed):
        margins.clear()
        with torch.no_grad():
            torch.func.functional_call(module, weights, (torch.tensor(batch(seed), dtype=torch.float64),))
        return min(margins)

    best = max(seeds, key=margin)
    for h in hooks:
        h.remove()
    return batch(best)
