"""The trainer feeds the cuda backend uint8 crops (runtime/cuda_feed.py), over the PyCUDA
stand-in: an epoch trained that way is the epoch trained on the host's float batches,
bit for bit, and a run resumed mid-epoch on crops ends where an uninterrupted one does."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl.data.prepare import prepare
from netdsl.train.trainer import RunOptions, Trainer

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to emulate CUDA with")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cuda(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "tests" / "codegen"))
    import fake_pycuda
    (tmp_path / "emulated").mkdir()
    return fake_pycuda.cuda_backend(tmp_path / "emulated", monkeypatch), fake_pycuda


def train(cuda, net, data, run_dir, crops: bool, batches: int | None = None, resume: bool = False):
    module, fake = cuda
    ex = module.Executor(net.graph, 32, seed=1)
    fake.FLAT.update(k.name for m in ex.plan.modules for k in m.kernels if k.shape == "flat")
    fake.FLAT.add("netdsl_input_augment")
    run_dir.mkdir(exist_ok=True)
    if not crops:
        ex.takes_crops = False  # the host path: float batches, as the CPU backends get them
    trainer = Trainer(net, data, ex, run_dir, RunOptions(epochs=1, batch=32, seed=2, workers=0, progress=False,
                                                         save_every=2))
    if resume:
        trainer.restore()
    if batches is not None:  # stop after a checkpoint, as a killed run would
        ex.step_crops = _stop_after(ex.step_crops, batches)
    try:
        trainer._train_epoch()
    except KeyboardInterrupt:
        pass
    return {k: v.copy() for k, v in ex.params.items()}, dict(trainer.sums, seconds=0)


def _stop_after(step, count):
    calls = []

    def stopping(*args):
        if len(calls) == count:
            raise KeyboardInterrupt
        calls.append(1)
        return step(*args)
    return stopping


@pytest.fixture
def lenet_and_data(small_shapes, tmp_path):
    net = netdsl.load(ROOT / "examples" / "lenet.net", overrides={"precision": "fp32"})
    return net, prepare(small_shapes, size=36, cache_dir=tmp_path / "cache", workers=0, progress=False)


def test_an_epoch_on_crops_is_the_epoch_on_host_batches(cuda, lenet_and_data, tmp_path):
    net, data = lenet_and_data
    on_device, device_sums = train(cuda, net, data, tmp_path / "device", crops=True)
    on_host, host_sums = train(cuda, net, data, tmp_path / "host", crops=False)
    assert device_sums == host_sums and device_sums["batches"] == 5
    for name, value in on_host.items():
        np.testing.assert_array_equal(on_device[name], value, err_msg=name)


def test_resuming_on_crops_is_exact(cuda, lenet_and_data, tmp_path):
    net, data = lenet_and_data
    whole, _ = train(cuda, net, data, tmp_path / "whole", crops=True)
    train(cuda, net, data, tmp_path / "cut", crops=True, batches=3)  # checkpoint after batch 2
    resumed, _ = train(cuda, net, data, tmp_path / "cut", crops=True, resume=True)
    for name, value in whole.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)
