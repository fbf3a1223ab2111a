"""Stable early training: learning-rate warm-up, gradient-norm clipping and the
divergence watchdog, from the train block to what a run prints."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from netdsl.compiler import Network, compile_graph
from netdsl.errors import NetDslError
from netdsl.runtime.optimizer import global_norm, sgd_update
from netdsl.train.schedule import make_schedule
from netdsl.train.watchdog import Diverged, Watchdog
from netdsl.values import CallValue

from runfiles import TINY, train_run, write_net


def tiny(settings: str = "") -> Network:
    text = TINY.replace("TEST", "center_crop").replace("schedule = constant", f"schedule = constant; {settings}")
    return Network(compile_graph(text=text, training=True))


def batch(seed=0, n=16, spread=3.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 3, 16, 16)) * spread).astype(np.float32), rng.integers(0, 10, n)


# ---- the train block ------------------------------------------------------------
def test_defaults_are_the_papers_no_warmup_no_clipping_and_a_stopping_watchdog():
    spec = tiny().train
    assert spec.schedule.kwargs["warmup"] == 0 and spec.clip == 0.0
    assert spec.watchdog == CallValue("stop", {"above": 2.0, "steps": 3, "rising": 10})


@pytest.mark.parametrize("setting, message", [
    ("clip = -1", "`clip` must be a finite number, 0 (no clipping) or more"),
    ("watchdog = stop(above=1)", "`above` of stop() must be a finite number greater than 1"),
    ("watchdog = restart(lr_factor=1)", "`lr_factor` of restart() must be greater than 0 and less than 1"),
    ("watchdog = halt", "unknown watchdog `halt`"),
])
def test_bad_settings_are_positioned_errors(setting, message):
    with pytest.raises(NetDslError) as err:
        tiny(setting)
    assert message in err.value.message and err.value.pos is not None


def test_negative_warmup_is_refused():
    text = TINY.replace("TEST", "center_crop").replace("schedule = constant", "schedule = constant(warmup=-5)")
    with pytest.raises(NetDslError, match="`warmup` of constant\\(\\) must be 0 or more"):
        compile_graph(text=text, training=True)


def test_warmup_ramps_linearly_to_the_schedules_rate_then_holds():
    schedule = make_schedule(CallValue("step", {"every": 1, "factor": 0.1, "warmup": 4}), 0.2)
    assert [schedule.lr_at(s) for s in range(6)] == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2])
    schedule.after_epoch(1, None)  # the epoch's rate changes; the ramp is over
    assert schedule.lr_at(10) == pytest.approx(0.02)
    assert make_schedule(CallValue("constant", {"warmup": 0}), 0.3).lr_at(0) == 0.3


# ---- clipping --------------------------------------------------------------------
def test_clipping_scales_the_gradient_so_momentum_sees_the_clipped_one():
    clip = 0.05
    ex, free = tiny(f"clip = {clip}").executor("reference", seed=1), tiny().executor("reference", seed=1)
    images, labels = batch()
    _, grads = free.gradients(images, labels)
    norm = global_norm(grads.values())
    assert norm > clip  # so the step below clips
    expected = {k: v.copy() for k, v in free.params.items()}
    velocity = {k: np.zeros_like(v) for k, v in expected.items()}
    for name, grad in grads.items():
        lr_mult, decay_mult = free.multipliers[name]
        sgd_update(expected[name], velocity[name], grad * np.float32(clip / norm), free.lr * lr_mult,
                   free.momentum, free.weight_decay * decay_mult)
    ex.step(images, labels)
    assert ex.grad_norm == pytest.approx(norm, rel=1e-6)
    for name in expected:
        np.testing.assert_allclose(ex.params[name], expected[name], rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(ex.velocity[name], velocity[name], rtol=1e-6, atol=1e-9)


def test_a_gradient_within_the_limit_is_untouched():
    clipped, free = tiny("clip = 1e6").executor("reference", seed=1), tiny().executor("reference", seed=1)
    images, labels = batch()
    clipped.step(images, labels)
    free.step(images, labels)
    for name in free.params:
        np.testing.assert_array_equal(clipped.params[name], free.params[name])


def test_cpu_backend_clips_as_the_reference_does():
    pytest.importorskip("netdsl.runtime.cpu")
    net = tiny("clip = 0.05")
    cpu, ref = net.executor("cpu", seed=1), net.executor("reference", seed=1)
    for seed in range(3):
        images, labels = batch(seed)
        assert cpu.step(images, labels)["loss"] == pytest.approx(ref.step(images, labels)["loss"], rel=1e-5)
        assert cpu.grad_norm == pytest.approx(ref.grad_norm, rel=1e-5) and ref.grad_norm > 0.05
    for name in ref.params:
        np.testing.assert_allclose(cpu.params[name], ref.params[name], rtol=1e-4, atol=1e-7)


# ---- the watchdog ------------------------------------------------------------------
def watch(losses, steps=5, rising=5):
    dog = Watchdog(CallValue("stop", {"above": 2.0, "steps": steps, "rising": rising}), classes=10)
    for step, loss in enumerate(losses, 1):
        dog.observe(loss, step)


def test_watchdog_stops_a_loss_held_above_the_multiple_of_chance():
    limit = 2 * math.log(10)
    watch([limit + 1, limit - 1] * 10)  # above, but never 5 steps running
    with pytest.raises(Diverged) as err:
        watch([2.3, limit + 1, limit + 3, limit + 2, limit + 9, limit + 5])
    assert err.value.step == 6 and "above 2 x ln(classes) = 4.61" in str(err.value)


def test_watchdog_stops_a_loss_that_rises_every_step():
    with pytest.raises(Diverged, match="rose 5 steps in a row, from 2 to 2.5, above chance"):
        watch([3.0, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5])
    watch([2.0, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5])  # rising, but better than chance: noise of a net that learned


def test_watchdog_lets_a_noisy_falling_loss_through_and_can_be_turned_off():
    rng = np.random.default_rng(0)
    # starts at chance and falls, with noise: the default's 10 steps never see a symptom
    watch(list(2.3 * np.exp(-np.arange(2000) / 500) + rng.normal(0, 0.1, 2000)), steps=3, rising=10)
    off = Watchdog(CallValue("off", {}), classes=10)
    for step in range(50):
        off.observe(1e9 * (step + 1), step)


def test_a_diverging_run_stops_with_the_symptom_and_the_usual_fixes(small_shapes, tmp_path, capsys):
    net = write_net(tmp_path)
    assert train_run(net, small_shapes, tmp_path / "run", "--epochs", "3", "--set", "optimizer.lr=30") == 2
    err = capsys.readouterr().err
    assert "training stopped: step " in err and ("above 2 x ln(classes)" in err or "rose 10 steps" in err)
    assert "(--set optimizer.lr=3)" in err and "schedule.warmup" in err and "--set clip=" in err
    assert "Traceback" not in err


def test_restart_goes_back_to_the_last_checkpoint_at_a_lower_rate(small_shapes, tmp_path, capsys):
    net = write_net(tmp_path)
    run = tmp_path / "run"
    code = train_run(net, small_shapes, run, "--epochs", "3", "--set", "optimizer.lr=3",
                     "--set", "watchdog=restart", "--set", "watchdog.tries=2")
    out = capsys.readouterr()
    assert "watchdog: step " in out.out and "restarting from " in out.out and "restart 1 of 2" in out.out
    if code == 0:  # it recovered at a lower rate: the epochs logged after the restart used it
        rates = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert len(rates) == 3 and rates[-1] <= 0.3 + 1e-12
    else:
        assert "after 2 restart(s) at lower rates" in out.err


# ---- warm-up in a run ---------------------------------------------------------------------
def test_a_run_warms_up_by_the_step_counter(small_shapes, tmp_path):
    run = tmp_path / "run"
    # 160 images at batch 16: 10 steps; the 10th of a 20-step ramp runs at half the rate
    assert train_run(write_net(tmp_path), small_shapes, run, "--set", "schedule.warmup=20") == 0
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert record["lr"] == pytest.approx(0.01 * 10 / 20)


def test_a_loss_gone_nan_is_restarted_from_too_and_stops_after_the_tries(small_shapes, tmp_path, capsys):
    net = write_net(tmp_path, text=TINY.replace("lr=0.01", "lr=1e30"))
    code = train_run(net, small_shapes, tmp_path / "run", "--set", "watchdog=restart", "--set", "watchdog.tries=1")
    out = capsys.readouterr()
    assert code == 2
    assert "became NaN or Inf" in out.out and "restarting from the initial weights (no checkpoint yet)" in out.out
    assert "training stopped after 1 restart(s) at lower rates" in out.err and "became NaN or Inf" in out.err


def test_the_nan_message_names_the_usual_fixes(small_shapes, tmp_path, capsys):
    net = write_net(tmp_path, text=TINY.replace("lr=0.01", "lr=1e30"))
    assert train_run(net, small_shapes, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "became NaN or Inf" in err and "schedule.warmup" in err and "--set clip=" in err


def test_end_note_names_a_loss_far_above_chance_and_nothing_else():
    dog = Watchdog(CallValue("stop", {"above": 2.0, "steps": 3, "rising": 10}), classes=10)
    assert dog.end_note(1.2, 1.5) is None and dog.end_note(4.6, 2.0) is None  # 4.6 < 2 ln 10 = 4.61
    note = dog.end_note(16.0, 30.0)
    assert note.startswith("the run ended with its loss far above chance (train 16, validation 30; chance is "
                           "ln(classes) = 2.30)")
    assert dog.end_note(1.0, math.inf) is not None and dog.end_note(math.nan, 9.9) is not None


def test_a_short_run_ending_far_above_chance_says_so_and_logs_it(small_shapes, tmp_path, capsys):
    """Too few steps for the in-run symptoms (they need 100 bad steps here): the end says it."""
    net = write_net(tmp_path)
    run = tmp_path / "run"
    assert train_run(net, small_shapes, run, "--set", "optimizer.lr=3", "--set", "watchdog.steps=100",
                     "--set", "watchdog.rising=100") == 0
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert max(record["train_loss"], record["val_loss"]) > 2 * math.log(10)
    assert record["warning"].startswith("the run ended with its loss far above chance")
    assert f"warning: {record['warning']}; usual fixes: " in capsys.readouterr().out
    assert train_run(net, small_shapes, tmp_path / "good") == 0  # the file's own rate learns: no word
    assert "warning" not in json.loads((tmp_path / "good" / "metrics.jsonl").read_text().splitlines()[-1])
