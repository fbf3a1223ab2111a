"""argparse types for the commands' numbers: a bad value is refused by the
parser (exit 2, the option named) before any file is read."""
from __future__ import annotations

import argparse


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a whole number") from None


def positive(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    if value >= 1 << 31:
        raise argparse.ArgumentTypeError(f"{value} is too large")
    return value


def non_negative(text: str) -> int:
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    if value >= 1 << 31:
        raise argparse.ArgumentTypeError(f"{value} is too large")
    return value


def batch(text: str) -> int:
    from .train.spec import MAX_BATCH
    value = positive(text)
    if value > MAX_BATCH:
        raise argparse.ArgumentTypeError(f"at most {MAX_BATCH:,}, not {value:,}")
    return value


# Options `train --resume` takes from the run directory instead; each is refused there, by name.
RESUME_FIXED = (("file", "FILE"), ("set", "--set"), ("batch", "--batch"), ("seed", "--seed"), ("data", "--data"),
                ("out", "--out"))


def resume_conflicts(args) -> list[str]:
    return [flag for attr, flag in RESUME_FIXED if getattr(args, attr, None) not in (None, [])]
