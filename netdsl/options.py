"""Option values that the commands in cli.py and inspect/commands.py share:
`--set NAME=VALUE` pairs and `--devices 0,1` lists. A module of their own, so
neither command module imports the other."""
from __future__ import annotations

import argparse

from .errors import NetDslError


def parse_sets(items: list[str] | None) -> dict[str, str]:
    overrides = {}
    for item in items or []:
        name, eq, value = item.partition("=")
        if not eq or not name.strip() or not value.strip():
            raise NetDslError(f"bad --set `{item}`", hint="write --set NAME=VALUE, for example --set act=tanh")
        overrides[name.strip()] = value.strip()
    return overrides


def device_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("write GPU numbers separated by commas, e.g. 0,1") from None
