"""The layer registry: every module in this package that defines a `Layer`
subclass with a `kind` adds that kind. Tests loop over `REGISTRY`, so a new
kind is covered without editing them."""
from __future__ import annotations

import importlib
import pkgutil

from .base import REQUIRED, ArgSpec, Example, Init, Layer, ShapeError

REGISTRY: dict[str, Layer] = {}


def _discover() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Layer) and value is not Layer and value.kind:
                REGISTRY[value.kind] = value()


def get(kind: str) -> Layer:
    return REGISTRY[kind]


_discover()

__all__ = ["REGISTRY", "REQUIRED", "ArgSpec", "Example", "Init", "Layer", "ShapeError", "get"]
