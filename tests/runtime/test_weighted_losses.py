"""Several losses, GoogLeNet's side classifiers: training differentiates the
sum of the losses times their weights, each loss's backward seeded with its
weight; the main loss (written without `weight=`) gives the metrics and the
prediction. Checked on the reference and the cpu backend against a torch twin
that takes each loss's gradient on its own."""
from __future__ import annotations

import numpy as np
import pytest

import netdsl
from netdsl.cli import main

torch = pytest.importorskip("torch", reason="PyTorch (the `oracle` extra) is not installed")
from test_torch_networks import rel_err  # noqa: E402

NET = """network two_losses
input image : 3 x 12 x 12
input label : 5 classes
defaults conv, fc { init = gauss(0.1); bias = 0.01 }
trunk    = conv(image, 6, size=3, pad=1) -> relu -> maxpool(2, stride=2)
aux      = fc(trunk, 5)
aux_loss = softmax_loss(aux, label, weight=0.3)
head     = conv(trunk, 8, size=3) -> relu -> fc(5)
loss     = softmax_loss(head, label)
"""
AUX_WEIGHT = 0.3
IMAGES = np.random.default_rng(5).standard_normal((3, 3, 12, 12)).astype(np.float32)
LABELS = np.array([0, 3, 4])


def twin(p, x):
    """(main logits, side logits) with netdsl's weights by name."""
    F = torch.nn.functional
    trunk = F.max_pool2d(F.relu(F.conv2d(x, p["trunk.conv.weight"], p["trunk.conv.bias"], padding=1)), 2)
    aux = F.linear(trunk.flatten(1), p["aux.weight"], p["aux.bias"])
    head = F.relu(F.conv2d(trunk, p["head.conv.weight"], p["head.conv.bias"]))
    return F.linear(head.flatten(1), p["head.fc.weight"], p["head.fc.bias"]), aux


def single_loss_gradients(params):
    """Each loss's own loss and gradient, by torch autograd."""
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    main_logits, aux_logits = twin(p, torch.tensor(IMAGES, dtype=torch.float64))
    out = []
    for logits in (main_logits, aux_logits):
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(LABELS))
        grads = torch.autograd.grad(loss, list(p.values()), allow_unused=True, retain_graph=True)
        out.append((loss.item(), {k: np.zeros(params[k].shape) if g is None else g.numpy()
                                  for k, g in zip(p, grads)}))
    return main_logits.detach().numpy(), out


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_the_gradient_is_the_weighted_sum_of_each_losss(tmp_path, backend):
    path = tmp_path / "two.net"
    path.write_text(NET)
    ex = netdsl.load(path).executor(backend=backend, batch=3, seed=0)
    assert ex.loss == "loss" and ex.losses == {"aux_loss": AUX_WEIGHT, "loss": 1.0}
    loss, grads = ex.gradients(IMAGES, LABELS, train=False)
    main_logits, [(main_loss, main_grads), (aux_loss, aux_grads)] = single_loss_gradients(ex.params)
    assert abs(float(loss) - (main_loss + AUX_WEIGHT * aux_loss)) < 1e-5 * main_loss
    for name in grads:
        expected = main_grads[name] + AUX_WEIGHT * aux_grads[name]
        assert rel_err(grads[name], expected) < 1e-4, name
    # The side classifier's weights learn from its loss alone, the head's from the main one alone.
    assert not main_grads["aux.weight"].any() and not aux_grads["head.fc.weight"].any()
    assert rel_err(ex.forward(IMAGES), main_logits) < 1e-5  # the prediction is the main loss's scores
    metrics = ex.step(IMAGES, LABELS)
    wrong = float((main_logits.argmax(1) != LABELS).mean())
    assert metrics["top1_error"] == wrong and metrics["loss"] == pytest.approx(float(loss), rel=1e-6)


def test_cpu_backend_equals_the_reference(tmp_path):
    path = tmp_path / "two.net"
    path.write_text(NET)
    ref, cpu = (netdsl.load(path).executor(backend=b, batch=3, seed=0) for b in ("reference", "cpu"))
    (ref_loss, ref_grads), (cpu_loss, cpu_grads) = (e.gradients(IMAGES, LABELS) for e in (ref, cpu))
    assert float(cpu_loss) == pytest.approx(float(ref_loss), rel=1e-5)
    assert all(rel_err(cpu_grads[k], ref_grads[k]) < 1e-4 for k in ref_grads)


@pytest.mark.parametrize("old,new,words", [
    ("label, weight=0.3)", "label)", "a second loss `loss` without a weight: which one is the main loss is ambiguous"),
    ("(head, label)", "(head, label, weight=0.5)", "every one of the 2 losses has a weight, so none is the main loss"),
], ids=["two unweighted", "all weighted"])
def test_which_loss_is_main_must_be_clear(tmp_path, capsys, old, new, words):
    path = tmp_path / "bad.net"
    path.write_text(NET.replace(old, new))
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:9:") and words in err, err  # at the last loss's line


def test_a_weight_is_positive(tmp_path, capsys):
    path = tmp_path / "bad.net"
    path.write_text(NET.replace("weight=0.3", "weight=0"))
    assert main(["info", str(path)]) == 2
    assert "`weight` of softmax_loss must be greater than 0" in capsys.readouterr().err
