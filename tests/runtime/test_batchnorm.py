"""Batch normalisation in whole networks: batch statistics in training and
running statistics at test equal torch.nn.BatchNorm2d's (the running ones
after several training passes), on the reference and the cpu backend; the
backends agree over training steps; and a checkpoint restores the running
statistics, so a resumed run is bitwise the uninterrupted one."""
from __future__ import annotations

import numpy as np
import pytest
from tolerances import assert_close

from netdsl.compiler import compile_graph
from netdsl.runtime import cbuild
from netdsl.runtime.cpu import Executor
from netdsl.runtime.reference import ReferenceExecutor
from netdsl.runtime.select import c_compiler_available

torch = pytest.importorskip("torch", reason="PyTorch (the `oracle` extra) is not installed")

NET = """
defaults conv, fc { init = gauss(0.3); bias = 0.1 }
train { optimizer = sgd(lr=0.05, momentum=0.9, weight_decay=0.001) }
input image : 3 x 6 x 5
input label : 4 classes
c1 = conv(image, 4, size=3, pad=1) -> batchnorm(momentum=0.2) -> relu
scores = fc(c1, 4)
loss = softmax_loss(scores, label)
"""
RTOL = 1e-5
BN = "c1.batchnorm"

needs_c = pytest.mark.skipif(not c_compiler_available() or cbuild.find_blas() is None,
                             reason="the cpu backend needs a C compiler and a CBLAS library")
BACKENDS = [ReferenceExecutor, pytest.param(Executor, marks=needs_c)]


def graph(overrides=None):
    return compile_graph(text=NET, file="bn.net", training=True, overrides=overrides)


def batches(n, batch=3):
    gen = np.random.default_rng(4)
    return [(gen.normal(0.5, 2.0, (batch, 3, 6, 5)).astype(np.float32), gen.integers(0, 4, batch)) for _ in range(n)]


def twin(ex):
    """conv -> BatchNorm2d -> relu -> linear in torch, with the executor's weights."""
    p = {k: torch.tensor(v) for k, v in ex.params.items()}
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    bn = torch.nn.BatchNorm2d(4, eps=1e-5, momentum=0.2)
    fc = torch.nn.Linear(4 * 6 * 5, 4)
    with torch.no_grad():
        conv.weight[...], conv.bias[...] = p["c1.conv.weight"], p["c1.conv.bias"]
        bn.weight[...], bn.bias[...] = p[f"{BN}.weight"], p[f"{BN}.bias"]
        fc.weight[...], fc.bias[...] = p["scores.weight"], p["scores.bias"]
    twin.grads = lambda: {"c1.conv.weight": conv.weight.grad, "c1.conv.bias": conv.bias.grad,
                          f"{BN}.weight": bn.weight.grad, f"{BN}.bias": bn.bias.grad,
                          "scores.weight": fc.weight.grad, "scores.bias": fc.bias.grad}
    return bn, lambda x: fc(torch.relu(bn(conv(torch.tensor(x)))).flatten(1))


@pytest.mark.parametrize("backend", BACKENDS, ids=["reference", "cpu"])
def test_train_and_eval_match_torch_batchnorm2d(backend):
    ex = backend(graph(), 3, seed=1)
    assert set(ex.state) == {f"{BN}.running_mean", f"{BN}.running_var"}
    np.testing.assert_array_equal(ex.state[f"{BN}.running_var"], 1.0)
    bn, model = twin(ex)
    bn.train()
    data = batches(4)
    with torch.no_grad():
        for images, _ in data[:3]:  # training passes: batch statistics, running ones updated
            assert_close(ex.forward(images, train=True), model(images).numpy(), RTOL, "training scores")
        assert_close(ex.state[f"{BN}.running_mean"], bn.running_mean.numpy(), RTOL, "running mean")
        assert_close(ex.state[f"{BN}.running_var"], bn.running_var.numpy(), RTOL, "running var")
        bn.eval()
        before = {k: v.copy() for k, v in ex.state.items()}
        assert_close(ex.forward(data[3][0], train=False), model(data[3][0]).numpy(), RTOL, "test-time scores")
    for name, value in before.items():  # a test pass leaves the statistics alone
        np.testing.assert_array_equal(ex.state[name], value)


def test_test_time_gradients_use_the_running_statistics():
    ex = ReferenceExecutor(graph(), 3, seed=1)
    images, labels = batches(1)[0]
    ex.state[f"{BN}.running_mean"][...] = [0.1, -0.2, 0.3, 0.0]
    ex.state[f"{BN}.running_var"][...] = [0.5, 2.0, 1.5, 1.0]
    bn, model = twin(ex)
    bn.running_mean[...] = torch.tensor(ex.state[f"{BN}.running_mean"])
    bn.running_var[...] = torch.tensor(ex.state[f"{BN}.running_var"])
    bn.eval()
    loss, grads = ex.gradients(images, labels, train=False)
    t_loss = torch.nn.functional.cross_entropy(model(images), torch.tensor(labels))
    t_loss.backward()
    assert float(loss) == pytest.approx(t_loss.item(), rel=RTOL)
    for name, expected in twin.grads().items():
        assert_close(grads[name], expected.numpy(), RTOL, f"d {name}")


@needs_c
def test_cpu_backend_matches_the_reference_over_training_steps():
    g = graph()
    cpu, ref = Executor(g, 3, seed=2), ReferenceExecutor(g, 3, seed=2)
    assert all(np.shares_memory(cpu.state[k], cpu.arenas["host"]) for k in cpu.state), "state lives in the arena"
    for images, labels in batches(4):
        a, b = cpu.step(images, labels), ref.step(images, labels)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    for name in ref.state:
        assert_close(cpu.state[name], ref.state[name], 1e-4, name)
    for name in ref.params:
        assert_close(cpu.params[name], ref.params[name], 1e-4, name)
    images = batches(5)[4][0]
    assert_close(cpu.forward(images), ref.forward(images), 1e-4, "test-time scores")


@pytest.mark.parametrize("backend", BACKENDS, ids=["reference", "cpu"])
def test_resume_restores_running_statistics_bitwise(backend, tmp_path):
    data = batches(4)
    whole = backend(graph(), 3, seed=3)
    for images, labels in data[:2]:
        whole.step(images, labels)
    whole.save(tmp_path / "ckpt.npz")
    with np.load(tmp_path / "ckpt.npz") as saved:
        np.testing.assert_array_equal(saved[f"state/{BN}.running_var"], whole.state[f"{BN}.running_var"])
    for images, labels in data[2:]:
        whole.step(images, labels)
    resumed = backend(graph(), 3, seed=3)
    resumed.load(tmp_path / "ckpt.npz")
    for images, labels in data[2:]:
        resumed.step(images, labels)
    for table in ("state", "params"):
        for name, value in getattr(whole, table).items():
            np.testing.assert_array_equal(getattr(resumed, table)[name], value, err_msg=name)


def test_emulated_cuda_steps_match_the_reference(tmp_path):
    """The generated CUDA of a whole training step (thread emulator): block reductions for
    the statistics, one thread updating the running ones after the row's barrier."""
    import shutil
    import sys
    from pathlib import Path

    if shutil.which("g++") is None:
        pytest.skip("no g++ to emulate CUDA with")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "codegen"))
    from emulated_cuda import EmulatedCudaExecutor

    g = graph({"precision": "fp32"})  # the float32 tolerance below; reduced precisions: test_cuda_whole_step.py
    emulated, ref = EmulatedCudaExecutor(g, 3, seed=2, folder=tmp_path), ReferenceExecutor(g, 3, seed=2)
    for images, labels in batches(2):
        a, b = emulated.step(images, labels), ref.step(images, labels)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    state = emulated._state_arrays()  # what a checkpoint writes: the arena's bytes
    for name in ref.state:
        assert_close(state[name], ref.state[name], 1e-4, name)
    emulated.save(tmp_path / "ckpt.npz")
    with np.load(tmp_path / "ckpt.npz") as saved:
        np.testing.assert_array_equal(saved[f"state/{BN}.running_mean"], state[f"{BN}.running_mean"])


@needs_c
def test_validation_twin_takes_the_running_statistics():
    """Validation runs a forward-only twin of the training executor: it must normalise with
    the trained running statistics, not its own initial ones."""
    from netdsl.train.inference import InferenceView

    ex = Executor(graph(), 3, seed=2)
    data = batches(4)
    for images, labels in data[:3]:
        ex.step(images, labels)
    view = InferenceView(ex)
    assert_close(view.executor().forward(data[3][0]), ex.forward(data[3][0], train=False), 1e-6, "twin scores")
    ex.step(*data[3])  # the statistics move again; the next use of the twin follows them
    assert_close(view.executor().forward(data[0][0]), ex.forward(data[0][0], train=False), 1e-6, "twin scores")


@pytest.mark.parametrize("make", [pytest.param(Executor, marks=needs_c)])
def test_a_guard_rerun_does_not_update_the_running_statistics_twice(make):
    """A weight after the batch norm turns NaN: the guard reruns the forward pass call by call
    to name the layer, and batch norm's running statistics must show the step's one update,
    as a twin with a finite weight that stepped once has them."""
    from netdsl.runtime.base import NonFiniteError
    (images, labels), = batches(1)
    good, bad = make(graph(), batch=3, seed=1), make(graph(), batch=3, seed=1)
    weights = {k: v.copy() for k, v in good.params.items()}
    weights["scores.weight"][0, 0] = np.nan  # read after c1's statistics are taken
    bad.set_params(weights)
    good.step(images, labels)
    with pytest.raises(NonFiniteError):
        bad.step(images, labels)
    once, after = good._state_arrays(), bad._state_arrays()
    assert not np.allclose(once[f"{BN}.running_mean"], 0.0)  # the step did move them
    for name in (f"{BN}.running_mean", f"{BN}.running_var"):
        np.testing.assert_array_equal(after[name], once[name])
