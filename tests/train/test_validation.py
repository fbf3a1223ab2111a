"""Validation and `netdsl test`: forward only, ten views batched together, on a
plan without backward buffers; and the run files, best.npz as a hard link."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from netdsl.compiler import Network, compile_graph
from netdsl.train.evaluate import log_probabilities
from netdsl.train.inference import forward_graph, inference_executor

from runfiles import TINY, train_run, write_net

DROPPING = TINY.replace("f = fc(c, 10)", "f = fc(c, 10) -> dropout(0.5)")


def net(text=TINY) -> Network:
    return Network(compile_graph(text=text.replace("TEST", "center_crop"), training=True))


def images(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3, 16, 16)).astype(np.float32) * 3


def test_the_forward_graph_is_what_compile_graph_gives_without_training():
    training = net().graph
    alone = compile_graph(text=TINY.replace("TEST", "center_crop"), training=False)
    assert set(forward_graph(training).nodes) == set(alone.nodes)
    assert set(forward_graph(training).edges) == set(alone.edges)


def test_inference_plan_has_no_backward_buffers_and_the_same_logits():
    pytest.importorskip("netdsl.runtime.cpu")
    ex = net(DROPPING).executor("cpu", seed=1)
    x, labels = images(16), np.arange(16) % 10
    ex.step(x, labels)  # weights and the step counter away from their start
    twin = inference_executor(ex)
    roles = {ref.role for ref in twin.plan.tensors}
    assert not roles & {"grad", "param_grad", "momentum", "seed"}, roles
    assert twin.plan.arenas["host"].nbytes < ex.plan.arenas["host"].nbytes
    np.testing.assert_array_equal(twin.forward(x), ex.forward(x, train=False))
    np.testing.assert_array_equal(twin.forward(x[:5]), ex.forward(x[:5], train=False))  # a short last batch


def test_the_twin_follows_the_training_weights():
    pytest.importorskip("netdsl.runtime.cpu")
    from netdsl.train.inference import InferenceView
    ex = net().executor("cpu", seed=1)
    view = InferenceView(ex)
    before = view.executor().forward(images(16))
    ex.step(images(16, 1), np.arange(16) % 10)
    after = view.executor().forward(images(16))
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, ex.forward(images(16), train=False))


def test_ten_views_batched_together_give_the_per_view_average():
    ex = net().executor("reference", seed=1)
    crops = images(10 * 6).reshape(10, 6, 3, 16, 16)
    logs = [ex.forward(c, train=False).astype(np.float64) for c in crops]
    logs = [l - np.log(np.exp(l - l.max(1, keepdims=True)).sum(1, keepdims=True)) - l.max(1, keepdims=True)
            for l in logs]
    expected = np.log(np.mean([np.exp(l) for l in logs], axis=0))
    np.testing.assert_allclose(log_probabilities(ex, crops), expected, rtol=1e-6, atol=1e-9)


def test_forward_runs_full_batches_for_ten_views(monkeypatch):
    ex = net().executor("reference", batch=16, seed=1)
    sizes = []
    original = ex.forward
    monkeypatch.setattr(ex, "forward", lambda x, train=False: sizes.append(len(x)) or original(x, train))
    log_probabilities(ex, images(10 * 5).reshape(10, 5, 3, 16, 16))
    assert sizes == [16, 16, 16, 2]  # 50 views in 4 passes, not 10 passes of 5


def test_best_is_a_second_name_of_the_improving_epochs_checkpoint(small_shapes, tmp_path):
    run = tmp_path / "run"
    assert train_run(write_net(tmp_path), small_shapes, run, "--epochs", "3") == 0
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    errors = [h["val_top1_error"] for h in history]
    best_epoch = errors.index(min(errors)) + 1  # the first epoch that reached the lowest error
    with np.load(run / "best.npz") as best:
        assert json.loads(str(best["extra/state"]))["epoch"] == best_epoch
    assert os.path.samefile(run / "best.npz", run / "checkpoint.npz") == (best_epoch == 3)
    assert (run / "mean.npy").exists() and not list(run.glob("*.tmp.npz"))


def test_the_link_is_not_changed_by_later_checkpoints(small_shapes, tmp_path):
    run = tmp_path / "run"
    assert train_run(write_net(tmp_path), small_shapes, run, "--epochs", "1") == 0
    assert os.path.samefile(run / "best.npz", run / "checkpoint.npz")
    kept = (run / "best.npz").read_bytes()
    assert main_resume(run) == 0
    assert (run / "best.npz").read_bytes() == kept or os.path.samefile(run / "best.npz", run / "checkpoint.npz")
    with np.load(run / "checkpoint.npz") as latest:
        assert json.loads(str(latest["extra/state"]))["epoch"] == 2


def main_resume(run):
    from netdsl.cli import main
    return main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"])
