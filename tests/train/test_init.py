"""`netdsl train FILE --init CKPT`: a new run from another run's (or an import's)
weights, matched by name and shape; momentum, step counter, epoch and schedule
start afresh. The first step is checked against the trained weights' loss and a
hand-written SGD step, and an imported PyTorch module against PyTorch itself."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from netdsl.cli import main
from netdsl.data.synthetic import make_shapes
from netdsl.train.launch import network_from_source, start_run

from runfiles import TINY, train_run, write_net

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SIZED = (TINY.replace("input label : 10 classes", "param classes = 10\ninput label : classes")
         .replace("f = fc(c, 10)", "f = fc(c, classes)"))


def stored(path: Path, prefix: str = "param/") -> dict:
    with np.load(path) as f:
        return {k[len(prefix):]: f[k] for k in f.files if k.startswith(prefix)}


def new_run(file, data, out, init, backend="reference", overrides=None, batch=None):
    return start_run(str(file), overrides or {}, str(data), str(out), backend, 1, batch, None, 1, None, False,
                     init=None if init is None else str(init))


def record_first_step(trainer) -> dict:
    """Wrap the executor's step: the first call's batch, weights, momentum, lr and loss."""
    ex, seen = trainer.ex, {}
    inner = ex.step

    def step(images, labels):
        if not seen:
            seen.update(images=np.array(images), labels=np.array(labels), lr=ex.lr, steps=ex.steps,
                        before={k: v.copy() for k, v in ex.params.items()},
                        velocity={k: v.copy() for k, v in ex.velocity.items()})
            out = inner(images, labels)
            seen.update(loss=out["loss"], after={k: v.copy() for k, v in ex.params.items()})
            return out
        return inner(images, labels)
    ex.step = step
    return seen


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    """One epoch of LeNet (momentum 0.9) on 10 small shape classes: momentum is not zero."""
    folder = tmp_path_factory.mktemp("lenet")
    data = make_shapes(folder / "shapes", classes=10, train_per_class=16, val_per_class=4, size=32, seed=3)
    assert main(["train", str(EXAMPLES / "lenet.net"), "--data", str(data), "--out", str(folder / "run"),
                 "--backend", "reference", "--batch", "16", "--epochs", "1", "--no-progress"]) == 0
    return data, folder / "run"


def test_init_loads_the_weights_and_starts_at_epoch_1_with_zero_momentum(lenet_run, tmp_path, capsys):
    data, run = lenet_run
    ckpt = run / "checkpoint.npz"
    trained, momentum = stored(ckpt), stored(ckpt, "velocity/")
    assert any(np.abs(v).max() > 0 for v in momentum.values())  # so "starts at zero" means something
    trainer = new_run(EXAMPLES / "lenet.net", data, tmp_path / "fine", ckpt, batch=16,
                      overrides={"optimizer.lr": "0.02"})
    assert f"init: 10 of 10 parameter tensors loaded from {ckpt}" in capsys.readouterr().out
    assert trainer.epoch == 0 and trainer.next_batch == 0 and trainer.ex.steps == 0
    first = record_first_step(trainer)
    history = trainer.run()
    assert [h["epoch"] for h in history] == [1]
    assert json.loads((tmp_path / "fine" / "config.json").read_text())["init"] == str(ckpt.resolve())

    assert first["steps"] == 0 and first["lr"] == 0.02  # the file's rate (checkpoint's: 0.01), not its schedule
    for name, value in trained.items():
        assert np.array_equal(first["before"][name], value), name
        assert not first["velocity"][name].any(), name

    # An independent executor with the trained weights: same loss on the first batch, and
    # one plain SGD step from zero momentum gives the weights the run had after its first.
    net = network_from_source((EXAMPLES / "lenet.net").read_text(), "lenet.net", {"optimizer.lr": "0.02"})
    ref = net.executor(backend="reference", batch=16)
    ref.set_params(trained)
    assert first["loss"] == pytest.approx(ref.evaluate(first["images"], first["labels"])["loss"], rel=1e-6)
    loss, grads = ref.gradients(first["images"], first["labels"])
    assert float(loss) == pytest.approx(first["loss"], rel=1e-6)
    lr, decay = 0.02, 0.0005
    for name, w in trained.items():
        lr_mult, decay_mult = ref.multipliers[name]
        w64 = w.astype(np.float64)
        expected = w64 - lr * lr_mult * (grads[name].astype(np.float64) + decay * decay_mult * w64)
        scale = max(np.abs(expected - w64).max(), 1e-12)
        assert np.abs(first["after"][name] - expected).max() <= 1e-4 * scale + 1e-7, name
    # --resume would have continued the momentum: the update differs from the fresh one
    resumed = net.executor(backend="reference", batch=16)
    resumed.load(ckpt)
    resumed.lr = 0.02
    resumed.step(first["images"], first["labels"])
    assert not np.allclose(resumed.params["out.weight"], first["after"]["out.weight"])


def test_another_class_count_reinitialises_the_classifier_and_names_it(small_shapes, tmp_path, capsys):
    net = write_net(tmp_path, text=SIZED.replace("TEST", "center_crop"))
    run = tmp_path / "ten"
    assert train_run(net, small_shapes, run) == 0
    ckpt = run / "best.npz"
    trained = stored(ckpt)
    five = make_shapes(tmp_path / "five", classes=5, train_per_class=4, val_per_class=2, size=32, seed=1)
    capsys.readouterr()
    trainer = new_run(net, five, tmp_path / "fine", ckpt, overrides={"classes": "5"})
    out = capsys.readouterr().out
    assert f"init: 2 of 4 parameter tensors loaded from {ckpt}" in out
    assert "init: initialised from the file: f.weight (10x196 in CKPT, 5x196 here), f.bias (10 in CKPT, 5 here)" in out
    fresh = network_from_source(net.read_text(), str(net), {"classes": "5"}).executor(
        backend="reference", batch=16, seed=1)
    ex = trainer.ex
    for name in ("c.conv.weight", "c.conv.bias"):
        assert np.array_equal(ex.params[name], trained[name]), name
    for name in ("f.weight", "f.bias"):
        assert np.array_equal(ex.params[name], fresh.params[name]), name
    assert [h["epoch"] for h in trainer.run()] == [1]


def test_tensors_only_one_side_has_are_listed(small_shapes, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_run(write_net(tmp_path), small_shapes, run) == 0
    renamed = TINY.replace("TEST", "center_crop").replace("f = fc(c, 10)", "g = fc(c, 10)") \
        .replace("softmax_loss(f,", "softmax_loss(g,")
    other = write_net(tmp_path, name="renamed.net", text=renamed)
    capsys.readouterr()
    new_run(other, small_shapes, tmp_path / "fine", run / "checkpoint.npz")
    out = capsys.readouterr().out
    assert "initialised from the file: g.weight (not in CKPT), g.bias (not in CKPT)" in out
    assert "init: in CKPT but not in this network (ignored): f.weight, f.bias" in out


@pytest.mark.parametrize("backend", ["cpu"])
def test_a_compiled_backend_trains_from_the_loaded_weights(small_shapes, tmp_path, backend):
    run = tmp_path / "run"
    assert train_run(write_net(tmp_path), small_shapes, run) == 0
    trainer = new_run(write_net(tmp_path), small_shapes, tmp_path / "fine", run / "checkpoint.npz", backend=backend)
    trained = stored(run / "checkpoint.npz")
    for name, value in trained.items():
        assert np.array_equal(trainer.ex.params[name], value), name
    first = record_first_step(trainer)
    trainer.run()
    ref = network_from_source(write_net(tmp_path).read_text(), "tiny.net", {}).executor(backend="reference",
                                                                                         batch=16)
    ref.set_params(trained)
    assert first["loss"] == pytest.approx(ref.evaluate(first["images"], first["labels"])["loss"], rel=1e-4)


def test_init_and_resume_together_are_refused(small_shapes, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_run(write_net(tmp_path), small_shapes, run) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--init", str(run / "checkpoint.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --init and --resume cannot be combined")


@pytest.mark.parametrize("make,message", [
    (lambda d: d / "absent.npz", "does not exist"),
    (lambda d: (d / "text.npz").write_text("not an archive") and d / "text.npz",
     "is not a netdsl checkpoint (not an .npz archive)"),
    (lambda d: (d / "cut.npz").write_bytes((d / "run" / "checkpoint.npz").read_bytes()[:300]) and d / "cut.npz",
     "is damaged or not a netdsl checkpoint"),
    (lambda d: np.savez(d / "arrays.npz", a=np.zeros(3)) or d / "arrays.npz", "holds no `param/` entries"),
])
def test_a_bad_init_file_is_one_line_and_exit_2(small_shapes, tmp_path, capsys, make, message):
    assert train_run(write_net(tmp_path), small_shapes, tmp_path / "run") == 0
    capsys.readouterr()
    bad = make(tmp_path)
    assert train_run(write_net(tmp_path), small_shapes, tmp_path / "fine", "--init", str(bad)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --init: ") and message in err.splitlines()[0]
    assert "Traceback" not in err and not (tmp_path / "fine").exists()


def test_a_checkpoint_of_another_network_is_refused(small_shapes, tmp_path, capsys):
    assert train_run(write_net(tmp_path), small_shapes, tmp_path / "run") == 0
    capsys.readouterr()
    assert main(["train", str(EXAMPLES / "lenet.net"), "--data", str(small_shapes), "--out", str(tmp_path / "x"),
                 "--backend", "reference", "--init", str(tmp_path / "run" / "checkpoint.npz")]) == 2
    err = capsys.readouterr().err.splitlines()[0]
    assert err.startswith(f"error: --init: no parameter of this network is in {tmp_path / 'run' / 'checkpoint.npz'}")
    assert "probably the checkpoint of another network" in err


def test_a_resume_before_the_first_checkpoint_starts_from_the_init_weights_again(small_shapes, tmp_path, capsys):
    from netdsl.train.launch import resume_run
    run = tmp_path / "run"
    assert train_run(write_net(tmp_path), small_shapes, run) == 0
    new_run(write_net(tmp_path), small_shapes, tmp_path / "fine", run / "checkpoint.npz")  # killed before a step
    capsys.readouterr()
    trainer = resume_run(str(tmp_path / "fine"), None, False)
    assert f"init: 4 of 4 parameter tensors loaded from {(run / 'checkpoint.npz').resolve()}" in capsys.readouterr().out
    for name, value in stored(run / "checkpoint.npz").items():
        assert np.array_equal(trainer.ex.params[name], value), name
    assert trainer.epoch == 0 and trainer.ex.steps == 0
