"""The training loop: epochs of SGD steps, validation, the learning-rate
schedule, checkpoints that resume exactly, metrics and plots.

A run directory holds:
  config.json        what started the run (network source, overrides, data, options)
  checkpoint.npz     the latest state: weights, momentum, step counter, lr,
                     schedule state, epoch and position inside it, the epoch's
                     running sums; written atomically (temp file + rename)
  best.npz           the state with the lowest validation top-1 error so far: a hard
                     link to the checkpoint.npz of that epoch (no second write; the
                     next checkpoint is a new file, so the link keeps the old one)
  mean.npy           the training images' mean image (written by launch.start_run)
  metrics.jsonl      one line per finished epoch
  loss.png error.png the curves, redrawn at every checkpoint
  gradients.png      per-layer gradient and update/weight norms per epoch (gradient_flow.py)

Everything random is a function of (seed, epoch, batch) or of the step
counter, so resuming from a checkpoint replays exactly what the interrupted
run would have done: on the reference backend the final weights are bitwise
the same.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..data.loader import BatchLoader
from ..data.progress import counted
from ..distributed.comm import World
from ..errors import NetDslError
from ..runtime.base import NonFiniteError
from .datasets import class_count, data_plan, input_scale, scaled
from .evaluate import evaluate
from .gradient_flow import accumulate, epoch_fields, plot_flow
from .inference import InferenceView
from .plots import plot_curves
from .schedule import make_schedule
from .watchdog import Diverged, Watchdog


@dataclass
class RunOptions:
    epochs: int
    batch: int
    seed: int
    workers: int = 2
    save_every: int = 0  # also checkpoint every N batches inside an epoch (0: at epoch ends only)
    progress: bool | None = None  # None: a bar when stderr is a terminal


class Trainer:
    def __init__(self, net, data, executor, run_dir: Path, options: RunOptions, world: World | None = None):
        self.net, self.data, self.ex, self.run_dir, self.opt = net, data, executor, Path(run_dir), options
        # data-parallel ranks (docs/distributed.md): each makes its shard of every batch; rank 0 alone writes
        self.world = world or World()
        self.prepared_size, self.train_aug, self.test_aug = data_plan(net)
        self.scale = input_scale(net)
        self.schedule = make_schedule(net.train.schedule, executor.lr)
        self.epoch, self.next_batch = 0, 0  # position: epochs done, batches done in the current one
        self.sums = {"loss": 0.0, "top1": 0.0, "batches": 0, "seconds": 0.0}
        self.best = float("inf")
        self.history: list[dict] = []
        self.watchdog = Watchdog(net.train.watchdog, class_count(net))
        self.restarts = 0  # watchdog restarts so far (each lowered the rate once more)
        self.initial = None  # the starting weights, kept only for a restart before any checkpoint
        self.validator = InferenceView(executor)
        self.timing = {"train": 0.0, "validation": 0.0}  # seconds of this process, for reports
        executor.measure_norms = True  # per-layer gradient flow (the cuda backend reduces it on the device)

    # ---- checkpoints ------------------------------------------------------
    def save(self, name: str = "checkpoint.npz") -> None:
        if not self.world.is_root:
            return
        state = {"epoch": self.epoch, "next_batch": self.next_batch, "sums": self.sums, "best": self.best,
                 "schedule": self.schedule.state(), "restarts": self.restarts}
        self.ex.save(self.run_dir / name, state=json.dumps(state))

    def restore(self) -> None:
        """Load checkpoint.npz (checked beforehand by checkpoints.check_checkpoint)."""
        extra = self.ex.load(self.run_dir / "checkpoint.npz")
        state = json.loads(str(extra["state"]))
        self.epoch, self.next_batch, self.sums, self.best = (state["epoch"], state["next_batch"], state["sums"],
                                                             state["best"])
        self.schedule.restore(state["schedule"])
        self.restarts = state.get("restarts", 0)
        metrics = self.run_dir / "metrics.jsonl"
        if metrics.exists() and self.world.is_root:  # drop epochs the interrupted run logged after this checkpoint
            self.history = [h for h in read_metrics(metrics) if h["epoch"] <= self.epoch]
            metrics.write_text("".join(json.dumps(h) + "\n" for h in self.history))

    # ---- the loop -----------------------------------------------------------
    def run(self) -> list[dict]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.world.is_root:
            remove_leftovers(self.run_dir)
        if self.watchdog.action == "restart" and not (self.run_dir / "checkpoint.npz").exists():
            self.initial = {k: v.copy() for k, v in self.ex.params.items()}
        while self.epoch < self.opt.epochs:
            try:
                self._train_epoch()
            except Diverged as diverged:
                self._restart(diverged)
                continue
            self._finish_epoch()
        return self.history

    def _restart(self, diverged: Diverged) -> None:
        """Stop with the symptom and the usual fixes, or (watchdog=restart) go back to the
        last checkpoint, or the initial weights before the first, at a lower rate."""
        kwargs = self.watchdog.kwargs
        if self.watchdog.action != "restart" or self.restarts >= kwargs["tries"]:
            tried = f" after {self.restarts} restart(s) at lower rates" if self.restarts else ""
            raise NetDslError(f"training stopped{tried}: {diverged}", hint=self.watchdog.hint(self.schedule.lr))
        checkpoint = self.run_dir / "checkpoint.npz"
        done = self.restarts
        if checkpoint.exists():
            self.restore()  # its rate was lowered by the restarts before it was written
            behind, where = done - self.restarts, f"{checkpoint} (epoch {self.epoch + 1}, batch {self.next_batch})"
        else:
            for v in self.ex.velocity.values():
                v[...] = 0
            self.ex.set_params(self.initial)  # backends holding their own copy take the momentum with it
            self.ex.steps, self.epoch, self.next_batch = 0, 0, 0
            self.sums = {"loss": 0.0, "top1": 0.0, "batches": 0, "seconds": 0.0}
            behind, where = 0, "the initial weights (no checkpoint yet)"
        self.restarts = done + 1
        self.schedule.lr *= kwargs["lr_factor"] ** (behind + 1)
        self.watchdog.reset()
        print(f"watchdog: {diverged}; restarting from {where} with the learning rate "
              f"x{kwargs['lr_factor']:g} (now {self.schedule.lr:.3g}), restart {self.restarts} of {kwargs['tries']}",
              flush=True)

    def _loader(self, split: str, spec, epoch: int, start: int = 0, crops: bool = False) -> BatchLoader:
        return BatchLoader(self.data, split, self.opt.batch, spec, seed=self.opt.seed, epoch=epoch,
                           start_batch=start, workers=self.opt.workers, shard=self.world.shard, crops=crops)

    def _device_augments(self) -> bool:
        """A backend that finishes training's augmentation on its device (cuda) is sent uint8
        crops; the others get the host's float batches, as before."""
        if not getattr(self.ex, "takes_crops", False) or self.train_aug.elastic:
            return False  # elastic distortion runs on the host only (data/elastic.py)
        if self.ex.feed is None:
            aug = self.train_aug
            self.ex.feed_crops(self.data.mean if aug.mean_subtract else None, self.scale, self.prepared_size,
                               bool(aug.pca_std))
        return True

    def _train_epoch(self) -> None:
        crops = self._device_augments()
        loader = self._loader("train", self.train_aug, self.epoch, self.next_batch, crops)
        if loader.batches_per_epoch == 0:
            images = len(self.data.train_labels)
            raise NetDslError(f"the training split has {images} image(s), fewer than one batch of {self.opt.batch}",
                              hint=f"start a new run with --batch {max(images, 1)} or less (a run keeps the batch "
                              "it was started with, so --resume cannot change it)")
        bar = tqdm(total=loader.batches_per_epoch, initial=self.next_batch, unit="batch", leave=True,
                   desc=f"epoch {self.epoch + 1}/{self.opt.epochs}", disable=self._no_bar(), dynamic_ncols=True)
        with loader, bar:
            started = time.perf_counter()
            batches = with_next(loader) if crops else ((batch, None) for batch in scaled(loader, self.scale))
            for (images, labels), upcoming in batches:
                self.ex.lr = self.schedule.lr_at(self.ex.steps)
                try:  # the next batch of crops is uploaded while this step runs
                    m = self.world.mean_metrics(self.ex.step_crops(images, labels, upcoming and upcoming[0])
                                                if crops else self.ex.step(images, labels))
                except NonFiniteError as exc:
                    history = self.watchdog.history()
                    if self.watchdog.action == "restart":
                        raise Diverged(f"{exc.args[0].split(': ', 1)[-1]} ({history})", exc.step) from None
                    raise NetDslError(f"training stopped: {exc}" + (f" ({history})" if history else ""),
                                      hint=self._non_finite_hint()) from None
                self.watchdog.observe(m["loss"], self.ex.steps)
                accumulate(self.sums, getattr(self.ex, "last_norms", None))
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
            self.timing["train"] += time.perf_counter() - started

    def _non_finite_hint(self) -> str:
        checkpoint = self.run_dir / "checkpoint.npz"
        where = (f"the last good state is {checkpoint}" if checkpoint.exists()
                 else "no checkpoint was written yet (the first is written at the end of epoch 1"
                 + (f" or after {self.opt.save_every} batches)" if self.opt.save_every else ")"))
        if self.watchdog.action == "off":
            return f"lower the learning rate (--set optimizer.lr=...) or check the data; {where}"
        return f"{where}; check the data, or {self.watchdog.hint(self.schedule.lr)}"

    def _finish_epoch(self) -> None:
        val_started = time.perf_counter()
        with self._loader("val", self.test_aug, 0) as loader:
            shown = counted(loader, len(loader), f"validation {self.epoch + 1}/{self.opt.epochs}",
                            False if self._no_bar() else None)
            shards = (batch for batch in scaled(shown, self.scale) if len(batch[1]))  # a short last batch
            val = self.world.weighted_mean(evaluate(self.validator.executor(), shards))
        self.timing["validation"] += time.perf_counter() - val_started
        batches = max(self.sums["batches"], 1)
        record = {
            "epoch": self.epoch + 1, "lr": self.ex.lr,
            "train_loss": self.sums["loss"] / batches, "train_top1_error": self.sums["top1"] / batches,
            "val_loss": val["loss"], "val_top1_error": val["top1_error"], "val_top5_error": val["top5_error"],
            "images_per_s": self.sums["batches"] * self.opt.batch / max(self.sums["seconds"], 1e-9),
            "seconds": self.sums["seconds"] + time.perf_counter() - val_started,
            **epoch_fields(self.sums),
        }
        last = self.epoch + 1 >= self.opt.epochs
        note = self.watchdog.end_note(record["train_loss"], record["val_loss"]) if last else None
        if note:
            record["warning"] = note
        # The next lr first: whatever can fail at the epoch's end fails before the epoch is logged.
        next_lr = self.schedule.after_epoch(self.epoch + 1, val["top1_error"])
        self.history.append(record)
        if self.world.is_root:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        print(f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, val loss {record['val_loss']:.4f}, "
              f"top-1 {record['val_top1_error']:.2%}, top-5 {record['val_top5_error']:.2%}, "
              f"{record['images_per_s']:.1f} images/s", flush=True)
        if note:
            print(f"warning: {note}; {self.watchdog.hint(self.schedule.lr)}", flush=True)
        self.ex.lr = next_lr
        self.epoch, self.next_batch = self.epoch + 1, 0
        self.sums = {"loss": 0.0, "top1": 0.0, "batches": 0, "seconds": 0.0}
        improved = val["top1_error"] < self.best
        if improved:
            self.best = val["top1_error"]
        self.save()
        if improved and self.world.is_root:
            self._keep_as_best()
        if self.world.is_root:
            plot_curves(self.history, self.run_dir)
            plot_flow(self.history, self.run_dir)

    def _keep_as_best(self) -> None:
        """best.npz := this epoch's checkpoint.npz, as a second name for the same file. A
        checkpoint is always replaced by a new file (temp + rename), never rewritten, so
        the link keeps this epoch's bytes. Where links are refused, a copy is written."""
        tmp = self.run_dir / "best.link.tmp.npz"  # *.tmp.npz: removed at the next start if left over
        try:
            tmp.unlink(missing_ok=True)
            os.link(self.run_dir / "checkpoint.npz", tmp)
            os.replace(tmp, self.run_dir / "best.npz")
        except OSError:
            tmp.unlink(missing_ok=True)
            self.save("best.npz")

    def _no_bar(self) -> bool | None:
        if not self.world.is_root:
            return True
        return None if self.opt.progress is None else not self.opt.progress


def with_next(batches):
    """(batch, the batch after it or None): the next is made before the current one is used."""
    previous = None
    for batch in batches:
        if previous is not None:
            yield previous, batch
        previous = batch
    if previous is not None:
        yield previous, None


def write_config(run_dir: Path, config: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")


CONFIG_KEYS = ("file", "source", "overrides", "data", "backend", "options")


def read_config(run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise NetDslError(f"{run_dir} {'is not a directory' if run_dir.exists() else 'does not exist'}",
                          hint="a run directory is a folder `netdsl train` made (its --out)")
    if not path.is_file():
        raise NetDslError(f"{run_dir} is not a run directory (no config.json)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NetDslError(f"{path} is damaged: {exc}", hint="nothing was changed; it is written once when a run "
                          "starts, so a copy from a backup (or the run's own logs) restores it") from None
    missing = [k for k in CONFIG_KEYS if not isinstance(config, dict) or k not in config]
    if missing or not isinstance(config.get("options"), dict) or not isinstance(config.get("overrides"), dict):
        raise NetDslError(f"{path} is damaged: it lacks " + (f"`{missing[0]}`" if missing else "valid options"),
                          hint="nothing was changed")
    known = set(RunOptions.__dataclass_fields__)
    if not set(config["options"]) <= known or not {"epochs", "batch", "seed"} <= set(config["options"]):
        raise NetDslError(f"{path} is damaged: its options are not a run's options", hint="nothing was changed")
    return config


def read_metrics(path: Path) -> list[dict]:
    """metrics.jsonl's records. A half-written last line (a run killed while logging)
    belongs to an epoch no checkpoint holds, so it is dropped, with a note; a bad line
    before the last is damage and an error."""
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
                raise ValueError("not an epoch record")
        except ValueError:
            if i == len(lines) - 1:
                print(f"{path}: dropping a half-written last line (an epoch no checkpoint holds)")
                break
            raise NetDslError(f"{path} is damaged at line {i + 1}", hint="nothing was changed; remove or repair "
                              "that line to resume") from None
        records.append(record)
    return records


def remove_leftovers(run_dir: Path) -> None:
    """Temporary checkpoint files of a run killed while saving: never valid, never renamed into place."""
    for tmp in sorted(run_dir.glob("*.tmp.npz")):
        try:
            tmp.unlink()
            print(f"removed {tmp}, left by an interrupted save")
        except OSError:
            pass
