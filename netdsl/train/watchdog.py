"""The divergence watchdog: notices a run whose loss has left the range where
learning happens, long before it turns into NaN or hours of wasted epochs.

Two symptoms:
  - the loss stays above `above` x ln(classes) for `steps` steps in a row:
    worse than a uniform guess by that factor (ln(classes) is the loss of
    predicting every class equally); 3 steps by default, because a rate that
    high turns the loss NaN within a few more;
  - the loss rises `rising` steps in a row (10 by default) and ends above
    ln(classes), worse than chance.
Either is what too high a learning rate looks like in its first hundred steps.
A loss that turns NaN or Inf first (the executors' guard) is the same
disease a few steps later: the trainer reports it with the losses that led
up to it and the same fixes, and `restart` restarts from it too.
A run that learns shows neither: its loss does not go back above chance, and
noise alone makes ten rises in a row a one-in-3.6-million event per window.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from ..values import CallValue

FIXES = ("a lower learning rate (--set optimizer.lr={lower:g}), a linear warm-up (--set schedule.warmup=200), "
         "gradient clipping (--set clip=5), or --set watchdog=restart to go back to the last checkpoint at a "
         "tenth of the rate; --set watchdog=off turns this check off")


@dataclass
class Diverged(Exception):
    """Raised by the trainer when the watchdog sees a symptom."""
    symptom: str
    step: int

    def __str__(self) -> str:
        return f"step {self.step}: {self.symptom}"


class Watchdog:
    def __init__(self, spec: CallValue, classes: int):
        self.action = spec.name
        self.kwargs = dict(spec.kwargs)
        self.limit = self.kwargs.get("above", 2.0) * math.log(max(classes, 2))
        self.reset()

    def reset(self) -> None:
        self.recent: deque[float] = deque(maxlen=6)
        self.high = self.rising = 0
        self.previous = math.inf
        self.first_rise = None

    def observe(self, loss: float, step: int) -> None:
        """Raise Diverged when the last `steps` losses show a symptom."""
        if self.action == "off":
            return
        self.recent.append(loss)
        steps = self.kwargs["steps"]
        self.high = self.high + 1 if loss > self.limit else 0
        if loss > self.previous:
            self.rising += 1
            self.first_rise = self.first_rise if self.rising > 1 else self.previous
        else:
            self.rising = 0
        self.previous = loss
        if self.high >= steps:
            raise Diverged(f"the training loss has been above {self.kwargs['above']:g} x ln(classes) = "
                           f"{self.limit:.2f} (chance is {self.limit / self.kwargs['above']:.2f}) for {steps} steps "
                           f"in a row ({self.history()})", step)
        if self.rising >= self.kwargs["rising"] and loss > self.limit / self.kwargs["above"]:
            raise Diverged(f"the training loss rose {self.rising} steps in a row, from {self.first_rise:.4g} to "
                           f"{loss:.4g}, above chance (ln(classes) = {self.limit / self.kwargs['above']:.2f})", step)

    def end_note(self, train_loss: float, val_loss: float) -> str | None:
        """A run that ends with a loss far above chance (above x ln(classes), either loss) has
        not learned, however few steps it had: said at the end whatever the epoch count, since
        the in-run symptoms need `steps` bad steps in a row that a short run may never give."""
        chance = self.limit / self.kwargs.get("above", 2.0)
        worst = max((v for v in (train_loss, val_loss) if not math.isnan(v)), default=math.nan)
        if not (worst > self.limit or math.isinf(worst)):
            return None
        return (f"the run ended with its loss far above chance (train {train_loss:.4g}, validation {val_loss:.4g}; "
                f"chance is ln(classes) = {chance:.2f}): it has not learned")

    def history(self) -> str:
        """The last few losses, as a phrase for a message (empty before the first step)."""
        return f"the last losses: {', '.join(f'{v:.4g}' for v in self.recent)}" if self.recent else ""

    def hint(self, lr: float) -> str:
        return "usual fixes: " + FIXES.format(lower=lr / 10)
