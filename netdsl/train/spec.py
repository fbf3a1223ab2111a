"""The `train { ... }` block: its schema, defaults and validation.

Each setting is a plain value or a choice among named calls (an optimiser,
a schedule, augmentations); every call's arguments have a schema so a typo
is caught at compile time, not hours into a run. Defaults are the paper's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .. import ast
from ..errors import NetDslError, did_you_mean
from ..values import CallValue, coerce, show, substitute

REQUIRED = object()

# Largest batch, epoch count and seed accepted: far above any real run, and
# small enough that every product of them stays an exact machine integer.
MAX_BATCH = 1 << 16
MAX_EPOCHS = 1 << 20
MAX_SEED = (1 << 31) - 1


# Checks return a complaint or None. They run when the file is compiled, so a
# value that would fail an epoch into training (a step schedule dividing by
# zero, a negative learning rate) is reported by `netdsl info` with its position.
def positive(v):
    return None if math.isfinite(v) and v > 0 else "must be a finite number greater than 0"


def non_negative(v):
    return None if math.isfinite(v) and v >= 0 else "must be a finite number, 0 or more"


def fraction(v):
    return None if 0 < v <= 1 else "must be greater than 0 and at most 1"


def momentum(v):
    return None if 0 <= v < 1 else "must be at least 0 and less than 1"


def at_least_one(v):
    return None if v >= 1 else "must be 1 or more"


def nonzero_finite(v):
    return None if math.isfinite(v) and v != 0 else "must be a finite number other than 0"


def whole_non_negative(v):
    return None if v >= 0 else "must be 0 or more"


def above_one(v):
    return None if math.isfinite(v) and v > 1 else "must be a finite number greater than 1"


# name -> ((argument, type, default[, check]), ...) in positional order
OPTIMIZERS = {"sgd": (("lr", "float", 0.01, positive), ("momentum", "float", 0.9, momentum),
                      ("weight_decay", "float", 0.0005, non_negative))}
# `warmup=N` (every schedule): the lr rises linearly over the first N steps, to the
# schedule's own rate at step N (Goyal et al. 2017); 0, the paper's choice, starts at full rate.
WARMUP = ("warmup", "int", 0, whole_non_negative)
SCHEDULES = {
    "constant": (WARMUP,),
    "step": (("every", "int", 30, at_least_one), ("factor", "float", 0.1, positive), WARMUP),
    "plateau": (("factor", "float", 0.1, fraction), ("patience", "int", 1, at_least_one),
                ("min_lr", "float", 1e-6, non_negative), WARMUP),
}
# What to do when the loss diverges: stop with a message, or go back to the last
# checkpoint (the initial weights before the first) with the lr times lr_factor,
# at most `tries` times. `above` is a multiple of ln(classes), the loss of a
# uniform guess; `steps` is how many steps in a row the loss may stay above it,
# `rising` how many in a row it may rise (while worse than chance).
WATCHDOG_TEST = (("above", "float", 2.0, above_one), ("steps", "int", 3, at_least_one),
                 ("rising", "int", 10, at_least_one))
WATCHDOGS = {
    "off": (),
    "stop": WATCHDOG_TEST,
    "restart": WATCHDOG_TEST + (("lr_factor", "float", 0.1, lambda v: None if 0 < v < 1 else
                                 "must be greater than 0 and less than 1"),
                                ("tries", "int", 3, at_least_one)),
}
AUGMENTATIONS = {
    "random_crop": (("size", "int", REQUIRED, at_least_one), ("from", "int", 256, at_least_one)),
    "hflip": (),
    "pca_lighting": (("std", "float", 0.1, non_negative),),
    # Simard et al. 2003 (data/elastic.py): displacements of `alpha` pixels smoothed over `sigma` pixels
    # (bounded: past an image's size more only means a uniform shift, or pixels far outside)
    "elastic": (("alpha", "float", 34.0, lambda v: None if 0 <= v <= 1000 else "must be 0 to 1000 pixels"),
                ("sigma", "float", 4.0,
                 lambda v: None if 0 < v <= 1000 else "must be above 0 and at most 1000 pixels")),
    # Caffe's transform_param `scale`: multiplies the mean-subtracted 0..255 pixels
    "scale": (("factor", "float", REQUIRED, nonzero_finite),),
}
TEST_MODES = {"center_crop": (), "ten_crop": ()}
# Matrix products' precision (netdsl/precision.py): auto is TF32 on a GPU, FP32 on the CPU.
PRECISIONS = {"auto": (), "fp32": (), "tf32": (), "bf16": ()}

CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "test": TEST_MODES, "watchdog": WATCHDOGS,
           "precision": PRECISIONS}
# `clip`: the largest global L2 norm of all parameter gradients a step applies (a larger
# gradient is scaled down to it); 0 turns clipping off.
SCALARS = {"batch": "int", "epochs": "int", "seed": "int", "clip": "float"}
SCALAR_RANGES = {"batch": (1, MAX_BATCH), "epochs": (1, MAX_EPOCHS), "seed": (0, MAX_SEED),
                 "clip": (0.0, math.inf)}
KEYS = tuple(SCALARS) + tuple(CHOICES) + ("augment",)


@dataclass(frozen=True)
class TrainSpec:
    batch: int = 128
    epochs: int = 90
    seed: int = 0
    optimizer: CallValue = CallValue("sgd", {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.0005})
    schedule: CallValue = CallValue("plateau", {"factor": 0.1, "patience": 1, "min_lr": 1e-6, "warmup": 0})
    augment: tuple[CallValue, ...] = field(default=(
        CallValue("random_crop", {"size": 224, "from": 256}), CallValue("hflip", {}),
        CallValue("pca_lighting", {"std": 0.1})))
    test: CallValue = CallValue("center_crop", {})
    clip: float = 0.0
    watchdog: CallValue = CallValue("stop", {"above": 2.0, "steps": 3, "rising": 10})
    precision: CallValue = CallValue("auto", {})

    def augmentation(self, name: str) -> CallValue | None:
        return next((a for a in self.augment if a.name == name), None)


def call_value(what: str, table: dict, value: ast.Value, params: dict) -> CallValue:
    value = substitute(value, params)
    if isinstance(value, ast.Name):
        name, args = value.name, ()
    elif isinstance(value, ast.Call):
        name, args = value.name, value.args
    else:
        raise NetDslError(f"wrong value type: {what} wants a name or a call, got `{show(value)}`", value.pos,
                          f"one of: {', '.join(table)}")
    if name not in table:
        raise NetDslError(f"unknown {what} `{name}`{did_you_mean(name, table)}", value.pos,
                          f"known: {', '.join(table)}")
    schema = table[name]
    kwargs: dict = {}
    for i, arg in enumerate(args):
        if arg.key is None:
            if i >= len(schema):
                raise NetDslError(f"{name}() takes at most {len(schema)} positional argument(s)", arg.pos)
            key = schema[i][0]
        else:
            key = arg.key
        spec = next((s for s in schema if s[0] == key), None)
        if spec is None:
            known = ", ".join(s[0] for s in schema) or "none"
            raise NetDslError(f"unknown argument `{key}` of {name}(){did_you_mean(key, [s[0] for s in schema])}",
                              arg.pos, f"its arguments: {known}")
        kwargs[key] = coerce(f"`{name}({key}=...)`", spec[1], arg.value, params)
        complaint = spec[3](kwargs[key]) if len(spec) > 3 else None
        if complaint:
            raise NetDslError(f"`{key}` of {name}() {complaint}", substitute(arg.value, params).pos)
    for key, _, default, *_ in schema:
        if key not in kwargs:
            if default is REQUIRED:
                raise NetDslError(f"missing required argument `{key}` of {name}()", value.pos)
            kwargs[key] = default
    return CallValue(name, kwargs)


def validate(settings: dict[str, ast.Setting], params: dict) -> TrainSpec:
    values: dict = {}
    for key, setting in settings.items():
        if key not in KEYS:
            raise NetDslError(f"unknown train setting `{key}`{did_you_mean(key, KEYS)}", setting.pos,
                              f"known settings: {', '.join(KEYS)}")
        if key in SCALARS:
            values[key] = coerce(f"`{key}`", SCALARS[key], setting.value, params)
            low, high = SCALAR_RANGES[key]
            if key == "clip":
                if not math.isfinite(values[key]) or values[key] < 0:
                    raise NetDslError("`clip` must be a finite number, 0 (no clipping) or more",
                                      substitute(setting.value, params).pos)
            elif not low <= values[key] <= high:
                where = substitute(setting.value, params).pos
                if low == 1 and values[key] < 1:
                    raise NetDslError(f"`{key}` must be greater than 0", where)
                raise NetDslError(f"`{key}` must be between {low} and {high:,}, not {values[key]:,}", where)
        elif key in CHOICES:
            values[key] = call_value(key, CHOICES[key], setting.value, params)
        else:
            items = substitute(setting.value, params)
            if not isinstance(items, ast.ListVal):
                raise NetDslError(f"wrong value type: `augment` wants a list, got `{show(items)}`", items.pos,
                                  "for example [random_crop(224, from=256), hflip, pca_lighting(0.1)]")
            values[key] = tuple(call_value("augmentation", AUGMENTATIONS, v, params) for v in items.items)
    return TrainSpec(**values)


def with_override(settings: dict[str, ast.Setting], dotted: str, value: ast.Value) -> bool:
    """Apply `--set key=value` or `--set key.arg=value`; False if `key` is not a train key."""
    key, _, arg = dotted.partition(".")
    if key not in KEYS:
        return False
    if not arg:
        settings[key] = ast.Setting(key, value, value.pos)
        return True
    if key not in CHOICES:
        return False
    current = settings.get(key)
    old = current.value if current else ast.Name(getattr(TrainSpec(), key).name, value.pos)
    if not isinstance(old, (ast.Call, ast.Name)) or old.name not in CHOICES[key]:
        return False
    schema = [spec[0] for spec in CHOICES[key][old.name]]
    if arg not in schema:
        return False
    old_args = old.args if isinstance(old, ast.Call) else ()
    # key positional arguments by the schema so that the override replaces them
    keyed = [ast.Arg(a.key or schema[i], a.value, a.pos) for i, a in enumerate(old_args) if a.key or i < len(schema)]
    args = tuple(a for a in keyed if a.key != arg) + (ast.Arg(arg, value, value.pos),)
    settings[key] = ast.Setting(key, ast.Call(old.name, args, old.pos), value.pos)
    return True


def settable(settings: dict[str, ast.Setting]) -> list[str]:
    """Every train name `--set` accepts."""
    names = list(KEYS)
    spec_defaults = TrainSpec()
    for key, table in CHOICES.items():
        current = settings.get(key)
        value = current.value if current else None
        name = value.name if isinstance(value, (ast.Name, ast.Call)) else getattr(spec_defaults, key).name
        names += [f"{key}.{spec[0]}" for spec in table.get(name, ())]
    return names
