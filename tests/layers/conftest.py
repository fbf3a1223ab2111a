"""Cases shared by the per-kind layer tests.

A test that takes a `case` argument runs once per (kind, example) of every
kind in the registry, so a new kind is covered as soon as its module exists.
Inputs and parameters are drawn here, one way for every kind, so no test
needs to know a kind by name.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netdsl.layers import REGISTRY
from netdsl.layers.base import Context, Example, Layer

# Training mode with a fixed random stream: dropout draws the same mask on
# every call, so its forward is a deterministic function of its input.
CONTEXT = dict(train=True, seed=2012, step=7)


@dataclass(frozen=True)
class LayerCase:
    kind: str
    index: int

    def __str__(self) -> str:
        return f"{self.kind}-{self.index}"

    @property
    def layer(self) -> Layer:
        return REGISTRY[self.kind]

    @property
    def example(self) -> Example:
        return self.layer.examples[self.index]

    @property
    def args(self) -> dict:
        """The example's arguments completed with the schema's defaults."""
        return {spec.name: spec.default for spec in self.layer.args} | self.example.args

    @property
    def ctx(self) -> Context:
        return Context(stream=f"tests.{self.kind}", **CONTEXT)

    def output_shape(self, batch: int) -> tuple[int, ...]:
        """A loss is one number, the mean over the batch; anything else is batch-first."""
        if "loss" in self.layer.traits:
            return ()
        return (batch,) + tuple(self.layer.output_shape(self.args, list(self.example.in_shapes)))

    def is_label(self, i: int) -> bool:
        """A loss's second input holds integer class labels, not values to differentiate."""
        return "loss" in self.layer.traits and i == 1

    def inputs(self, batch: int, dtype, rng: np.random.Generator) -> list[np.ndarray]:
        """One array per input, each a shuffle of well-separated values.

        Every pair of values, and every value and 0, differs by at least
        2/size: a finite-difference step never crosses a max-pool tie or the
        kink of relu, and float32 rounding never creates a tie.
        """
        xs = []
        for i, shape in enumerate(self.example.in_shapes):
            shape = (batch,) + tuple(shape)
            if self.is_label(i):
                classes = self.example.in_shapes[0][0]
                xs.append(rng.integers(0, classes, batch, dtype=np.int64))
                continue
            size = int(np.prod(shape))
            magnitude = 2.0 * np.arange(1, size + 1) / size
            signs = rng.choice([-1.0, 1.0], size)
            xs.append(rng.permutation(magnitude * signs).reshape(shape).astype(dtype))
        return xs

    def params(self, dtype, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Every parameter, biases included, drawn non-zero so each gradient is exercised."""
        shapes = self.layer.param_shapes(self.args, list(self.example.in_shapes))
        return {name: rng.normal(0.0, 0.5, shape).astype(dtype) for name, shape in shapes.items()}


def all_cases() -> list[LayerCase]:
    return [LayerCase(kind, i) for kind in sorted(REGISTRY) for i in range(len(REGISTRY[kind].examples))]


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        metafunc.parametrize("case", all_cases(), ids=str)
