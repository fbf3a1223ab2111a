"""Cases for the kernel tests: every example of every registered kind, at
batch 1 and 3, each rendered under a node name of its own so all of them fit
in one module per target (one compiler run, not one per case).

Inputs are drawn one way for every kind: values for float buffers, class
labels for int32 ones, so no test names a kind.
"""
from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from netdsl import rng
from netdsl.codegen import TARGETS, Buffer, Declarations, Tensor, complete_args, render_layer
from netdsl.layers import REGISTRY
from netdsl.layers.base import Context, Layer

BATCHES = (1, 3)
SEED, STEP = 2012, 7


@dataclass(frozen=True)
class KernelCase:
    kind: str
    index: int
    batch: int

    def __str__(self) -> str:
        return f"{self.kind}-{self.index}-b{self.batch}"

    @property
    def layer(self) -> Layer:
        return REGISTRY[self.kind]

    @property
    def node(self) -> str:
        return f"test.{self.kind}{self.index}@b{self.batch}"

    @property
    def args(self) -> dict:
        return complete_args(self.kind, self.layer.examples[self.index].args)

    @property
    def in_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(s) for s in self.layer.examples[self.index].in_shapes]

    def render(self, target: str, precision: str = "fp32"):
        out_shape = self.layer.output_shape(self.args, self.in_shapes)
        return render_layer(self.kind, self.node, 100 + self.index, self.args, self.in_shapes, out_shape,
                            self.batch, target, precision)

    def context(self, train: bool = True) -> Context:
        return Context(train=train, seed=SEED, step=STEP, stream=self.node)

    def scalars(self, train: bool = True) -> dict:
        key0, key1 = rng.stream_key(SEED, self.node)
        # image_offset 0: the case is the whole batch, as the reference context's default
        return {"key0": int(key0), "key1": int(key1), "step": STEP, "train": int(train), "image_offset": 0}

    @cached_property
    def data(self) -> dict[str, np.ndarray]:
        """Inputs, parameters and the output gradient, float64 (labels int64), batch-first."""
        gen = np.random.default_rng(zlib.crc32(str(self).encode()))
        source = self.render("c")
        data = {}
        for i, shape in enumerate(self.in_shapes):
            buffer = source.buffers[f"x{i}"]
            if buffer.dtype == "int32":  # class labels for the first input's classes
                data[f"x{i}"] = gen.integers(0, self.in_shapes[0][0], buffer.size)
            else:
                values = gen.standard_normal((self.batch,) + shape)
                # Batch 3 rounds to halves: many ties, as after relu, so max pooling's
                # choice of the first maximum is exercised.
                data[f"x{i}"] = np.round(values * 2) / 2 if self.batch == 3 else values
        for name, shape in self.layer.param_shapes(self.args, self.in_shapes).items():
            data[name] = gen.normal(0.0, 0.5, shape)
        # Running state away from its start (and positive, as a variance must be), so the
        # test-time path reads it and a training update of it is visible.
        for name, shape in self.layer.state_shapes(self.args, self.in_shapes).items():
            data[name] = gen.uniform(0.5, 1.5, shape)
        out = source.buffers["y"]
        data["dy"] = gen.standard_normal(out.size)
        return data


def all_cases() -> list[KernelCase]:
    return [KernelCase(kind, i, batch) for kind in sorted(REGISTRY)
            for i in range(len(REGISTRY[kind].examples)) for batch in BATCHES]


def gemm_variants(target: str, tiles=(None,), precision: str = "fp32") -> list:
    """Every transpose pair of the target's matrix product at each tile (None: the target's choice)."""
    declare = Declarations(TARGETS[target], "gemm", "test.gemm", 0, "test_gemm", precision)
    one = Tensor(Buffer("x", "scratch", 1), (1,))
    for tile in tiles:
        for trans_a, trans_b in itertools.product((False, True), repeat=2):
            declare.gemm("variant", one, one, one, 1, 1, 1, 1, 1, 1, trans_a=trans_a, trans_b=trans_b, tile=tile)
    return declare.gemms
