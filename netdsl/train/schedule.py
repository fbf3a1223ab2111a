"""Learning-rate schedules: constant, step (divide every N epochs) and plateau
(the paper's rule: divide by 10 when the validation error stops improving).
Each keeps its state in a small dict so a checkpoint can resume it exactly.

Every schedule takes `warmup=N`: the rate of update s (0-based, the executor's
step counter) is the schedule's rate times min(1, (s + 1) / N), a linear ramp
that reaches the full rate at update N - 1 (Goyal et al. 2017, section 2.2).
It is a function of the step counter alone, so a resumed run ramps exactly as
an uninterrupted one."""
from __future__ import annotations

from ..values import CallValue


class Schedule:
    def __init__(self, base_lr: float, **kwargs):
        self.lr = base_lr
        self.kwargs = kwargs

    def after_epoch(self, epoch: int, val_error: float | None) -> float:
        """Called once per finished epoch (1-based); returns the next epoch's lr."""
        return self.lr

    def lr_at(self, step: int) -> float:
        """The rate of update `step` (0-based): the epoch's rate, ramped during warm-up."""
        warmup = self.kwargs.get("warmup", 0)
        return self.lr * min(1.0, (step + 1) / warmup) if warmup else self.lr

    def state(self) -> dict:
        return {"lr": self.lr}

    def restore(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


class Constant(Schedule):
    pass


class Step(Schedule):
    def after_epoch(self, epoch, val_error):
        if epoch % self.kwargs["every"] == 0:
            self.lr *= self.kwargs["factor"]
        return self.lr


class Plateau(Schedule):
    def __init__(self, base_lr, **kwargs):
        super().__init__(base_lr, **kwargs)
        self.best = float("inf")
        self.waited = 0

    def after_epoch(self, epoch, val_error):
        if val_error is None:
            return self.lr
        if val_error < self.best - 1e-9:
            self.best, self.waited = val_error, 0
        else:
            self.waited += 1
            if self.waited >= self.kwargs["patience"]:
                self.lr = max(self.lr * self.kwargs["factor"], self.kwargs["min_lr"])
                self.waited = 0
        return self.lr

    def state(self):
        return {"lr": self.lr, "best": self.best, "waited": self.waited}


SCHEDULES = {"constant": Constant, "step": Step, "plateau": Plateau}


def make_schedule(spec: CallValue, base_lr: float) -> Schedule:
    return SCHEDULES[spec.name](base_lr, **spec.kwargs)
