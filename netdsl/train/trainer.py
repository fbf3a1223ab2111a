"""The training loop: epochs of SGD steps, validation, the learning-rate
schedule, checkpoints that resume exactly, metrics and plots.

A run directory holds:
  config.json        what started the run (network source, overrides, data, options)
  checkpoint.npz     the latest state: weights, momentum, step counter, lr,
                     schedule state, epoch and position inside it, the epoch's
                     running sums; written atomically (temp file + rename)
  best.npz           the weights with the lowest validation top-1 error so far
  metrics.jsonl      one line per finished epoch
  loss.png error.png the curves, redrawn at every checkpoint

Everything random is a function of (seed, epoch, batch) or of the step
counter, so resuming from a checkpoint replays exactly what the interrupted
run would have done: on the reference backend the final weights are bitwise
the same.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..data.loader import BatchLoader
from ..errors import NetDslError
from ..runtime.base import NonFiniteError
from .datasets import data_plan, input_scale, scaled
from .evaluate import evaluate
from .plots import plot_curves
from .schedule import make_schedule


@dataclass
class RunOptions:
    epochs: int
    batch: int
    seed: int
    workers: int = 2
    save_every: int = 0  # also checkpoint every N batches inside an epoch (0: at epoch ends only)
    progress: bool | None = None  # None: a bar when stderr is a terminal


class Trainer:
    def __init__(self, net, data, executor, run_dir: Path, options: RunOptions):
        self.net, self.data, self.ex, self.run_dir, self.opt = net, data, executor, Path(run_dir), options
        self.prepared_size, self.train_aug, self.test_aug = data_plan(net)
        self.scale = input_scale(net)
        self.schedule = make_schedule(net.train.schedule, executor.lr)
        self.epoch, self.next_batch = 0, 0  # position: epochs done, batches done in the current one
        self.sums = {"loss": 0.0, "top1": 0.0, "batches": 0, "seconds": 0.0}
        self.best = float("inf")
        self.history: list[dict] = []

    # ---- checkpoints ------------------------------------------------------
    def save(self, name: str = "checkpoint.npz") -> None:
        state = {"epoch": self.epoch, "next_batch": self.next_batch, "sums": self.sums, "best": self.best,
                 "schedule": self.schedule.state()}
        self.ex.save(self.run_dir / name, state=json.dumps(state))

    def restore(self) -> None:
        extra = self.ex.load(self.run_dir / "checkpoint.npz")
        state = json.loads(str(extra["state"]))
        self.epoch, self.next_batch, self.sums, self.best = (state["epoch"], state["next_batch"], state["sums"],
                                                             state["best"])
        self.schedule.restore(state["schedule"])
        metrics = self.run_dir / "metrics.jsonl"
        if metrics.exists():  # drop epochs the interrupted run logged after this checkpoint
            lines = [json.loads(l) for l in metrics.read_text().splitlines() if l.strip()]
            self.history = [h for h in lines if h["epoch"] <= self.epoch]
            metrics.write_text("".join(json.dumps(h) + "\n" for h in self.history))

    # ---- the loop -----------------------------------------------------------
    def run(self) -> list[dict]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while self.epoch < self.opt.epochs:
            self._train_epoch()
            self._finish_epoch()
        return self.history

    def _loader(self, split: str, spec, epoch: int, start: int = 0) -> BatchLoader:
        return BatchLoader(self.data, split, self.opt.batch, spec, seed=self.opt.seed, epoch=epoch,
                           start_batch=start, workers=self.opt.workers)

    def _train_epoch(self) -> None:
        loader = self._loader("train", self.train_aug, self.epoch, self.next_batch)
        if loader.batches_per_epoch == 0:
            raise NetDslError(f"the training split has fewer images than one batch of {self.opt.batch}",
                              hint="use a smaller --batch")
        bar = tqdm(total=loader.batches_per_epoch, initial=self.next_batch, unit="batch", leave=True,
                   desc=f"epoch {self.epoch + 1}/{self.opt.epochs}", disable=self._no_bar(), dynamic_ncols=True)
        with loader, bar:
            started = time.perf_counter()
            for images, labels in scaled(loader, self.scale):
                try:
                    m = self.ex.step(images, labels)
                except NonFiniteError as exc:
                    raise NetDslError(f"training stopped: {exc}",
                                      hint="lower the learning rate (--set optimizer.lr=...) or check the data; "
                                      f"the last good state is {self.run_dir / 'checkpoint.npz'}") from None
                self.next_batch += 1
                self.sums["loss"] += m["loss"]
                self.sums["top1"] += m["top1_error"]
                self.sums["batches"] += 1
                seconds = self.sums["seconds"] + time.perf_counter() - started
                rate = self.sums["batches"] * self.opt.batch / max(seconds, 1e-9)
                bar.set_postfix(loss=f"{m['loss']:.4f}", img_s=f"{rate:.1f}", lr=f"{self.ex.lr:.2g}")
                bar.update()
                if self.opt.save_every and self.next_batch % self.opt.save_every == 0 \
                        and self.next_batch < loader.batches_per_epoch:
                    self.sums["seconds"] += time.perf_counter() - started
                    started = time.perf_counter()
                    self.save()
            self.sums["seconds"] += time.perf_counter() - started

    def _finish_epoch(self) -> None:
        val_started = time.perf_counter()
        with self._loader("val", self.test_aug, 0) as loader:
            val = evaluate(self.ex, scaled(loader, self.scale))
        batches = max(self.sums["batches"], 1)
        record = {
            "epoch": self.epoch + 1, "lr": self.ex.lr,
            "train_loss": self.sums["loss"] / batches, "train_top1_error": self.sums["top1"] / batches,
            "val_loss": val["loss"], "val_top1_error": val["top1_error"], "val_top5_error": val["top5_error"],
            "images_per_s": self.sums["batches"] * self.opt.batch / max(self.sums["seconds"], 1e-9),
            "seconds": self.sums["seconds"] + time.perf_counter() - val_started,
        }
        self.history.append(record)
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, val loss {record['val_loss']:.4f}, "
              f"top-1 {record['val_top1_error']:.2%}, top-5 {record['val_top5_error']:.2%}, "
              f"{record['images_per_s']:.1f} images/s", flush=True)
        self.ex.lr = self.schedule.after_epoch(self.epoch + 1, val["top1_error"])
        self.epoch, self.next_batch = self.epoch + 1, 0
        self.sums = {"loss": 0.0, "top1": 0.0, "batches": 0, "seconds": 0.0}
        if val["top1_error"] < self.best:
            self.best = val["top1_error"]
            self.save("best.npz")
        self.save()
        plot_curves(self.history, self.run_dir)

    def _no_bar(self) -> bool | None:
        return None if self.opt.progress is None else not self.opt.progress


def write_config(run_dir: Path, config: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def read_config(run_dir: Path) -> dict:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise NetDslError(f"{run_dir} is not a run directory (no config.json)")
    return json.loads(path.read_text())
