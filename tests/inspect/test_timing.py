"""`netdsl time` and the PyTorch twin it compares against: the twin built
from the graph must compute the network (logits and loss against the
reference executor), and the per-layer times must cover every layer."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from networks import EXAMPLES, TWO_TOWER, well_scaled

import netdsl
from netdsl.cli import main
from netdsl.inspect.timing import planned_layer_times, random_batch, reference_layer_times, torch_layer_times
from netdsl.layers import REGISTRY
from netdsl.train.launch import network_from_source

torch = pytest.importorskip("torch", reason="PyTorch (the `oracle` extra) is not installed")
from netdsl.inspect.torch_twin import TorchTwin  # noqa: E402


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def networks():
    yield "two-tower", network_from_source(TWO_TOWER, "x.net", {})
    for name in ("lenet", "cifar"):
        yield name, netdsl.load(EXAMPLES / f"{name}.net")


@pytest.mark.parametrize("name", ["two-tower", "lenet", "cifar"])
def test_twin_computes_the_network(name):
    net = dict(networks())[name]
    ex = net.executor(backend="reference", batch=2)
    ex.set_params(well_scaled(ex))
    images, labels = random_batch(net, 2)
    twin = TorchTwin(net.graph, dict(ex.params))
    logits = twin.forward(torch.from_numpy(images)).detach().numpy()
    assert rel_err(logits, ex.forward(images)) < 1e-4
    loss, grads = ex.gradients(images, labels, train=False)
    twin_loss = twin.forward(torch.from_numpy(images), torch.from_numpy(labels))
    assert twin_loss.item() == pytest.approx(float(loss), rel=1e-4)
    twin_loss.backward()  # the twin trains the same network: every gradient agrees (no dropout here)
    for key, grad in grads.items():
        assert rel_err(twin.params[key].grad.numpy(), grad) < 1e-3, key


def test_layer_times_cover_every_layer_and_leave_the_kinds_untouched():
    net = network_from_source(TWO_TOWER, "x.net", {})
    ex = net.executor(backend="reference", batch=2)
    images, labels = random_batch(net, 2)
    times = reference_layer_times(ex, images, labels)
    layers = [n for n, d in net.graph.nodes(data=True) if d.is_layer]
    assert set(times) == set(layers)
    for node in layers:
        if net.graph.nodes[node].params:
            assert times[node][0] > 0 and times[node][1] > 0, node
    assert all("forward" not in vars(layer) and "backward" not in vars(layer) for layer in REGISTRY.values())
    assert ex.steps == 1  # it timed a real step

    twin = TorchTwin(net.graph, dict(ex.params))
    torch_times = torch_layer_times(twin, torch.from_numpy(images), torch.from_numpy(labels))
    assert set(torch_times) >= set(n for n in layers if net.graph.nodes[n].kind != "softmax_loss")
    assert torch_times["c1.conv@gpu0"][0] > 0 and torch_times["c1.conv@gpu0"][1] > 0


def test_cpu_launches_are_summed_per_layer():
    steps = [(SimpleNamespace(node="c1"), "forward", 0.5), (SimpleNamespace(node="c1:backward"), "backward", 0.25),
             (SimpleNamespace(node="c1:gradsum"), "backward", 0.125), (SimpleNamespace(node="c1"), "update", 9.0)]
    ex = SimpleNamespace(timed_step=lambda images, labels: steps)
    assert planned_layer_times(ex, None, None) == {"c1": [0.5, 0.375]}


def test_time_command_prints_a_row_per_layer_and_the_torch_column(capsys):
    assert main(["time", str(EXAMPLES / "lenet.net"), "--batch", "2", "--backend", "reference", "--torch",
                 "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    for node in ("c1.conv", "c3.maxpool", "f5.fc", "out", "loss"):
        assert node in rows and len(rows[node]) == 7, rows.get(node)  # name, kind, 2 netdsl, 2 torch, ratio
    assert float(rows["c1.conv"][2]) > 0 and float(rows["c1.conv"][4]) > 0
    assert "images/s" in out and "pytorch cpu:" in out and "netdsl/torch step time" in out
