"""What every layer kind declares, and the argument schema machinery.

A layer kind is one module under netdsl/layers/ holding one `Layer` subclass:
its argument schema with defaults and checks, its output-shape rule, its
parameter shapes and initialisation, its multiply-add count and its numpy
forward and backward side by side. Nothing outside that module knows the kind;
passes and code generators read its attributes and traits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

REQUIRED = object()  # marks an argument with no default


@dataclass(frozen=True)
class Init:
    """A parameter initialiser: `gauss(std)`, `uniform(limit)` or a constant."""

    name: str  # "gauss" | "uniform" | "constant"
    value: float

    def __str__(self) -> str:
        return f"{self.name}({self.value:g})"


@dataclass(frozen=True)
class ArgSpec:
    name: str
    type: str  # "int" | "int_pair" | "float" | "bool" | "init" | "kind" | "str", or "a|b": either
    default: Any = REQUIRED
    check: Callable[[Any], str | None] | None = None  # returns a complaint or None
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def positive(value) -> str | None:
    return None if value > 0 else "must be greater than 0"


def non_negative(value) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def pair(value) -> tuple[int, int]:
    """An `int_pair` argument as (height, width): an int is square, a pair or list is as given."""
    return (value, value) if isinstance(value, int) else tuple(value)


def each(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    """A check of an `int_pair` argument: `check` on both numbers."""
    def checked(value):
        return next((c for c in map(check, pair(value)) if c), None)
    return checked


def probability(value) -> str | None:
    return None if 0 <= value < 1 else "must be at least 0 and less than 1"


class ShapeError(Exception):
    """Raised by a shape rule; the infer-shapes pass adds the position."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass
class Context:
    """What a forward or backward call may need beyond its arguments.

    `stream` (the node's stable name) and `seed` key the counter-based random
    numbers, and `step` is their counter, so every backend draws the same
    dropout mask for the same layer and step.
    """

    train: bool = False
    seed: int = 0
    step: int = 0
    stream: str = ""
    image_offset: int = 0  # the batch's first image within the global batch (data parallelism)
    # Per input: is its gradient wanted? (A network input's is not, and
    # skipping it spares conv1 its largest matrix product.) Empty: all are.
    input_grads: tuple[bool, ...] = ()
    # The layer's running state (name -> array, e.g. batchnorm's statistics), which a
    # training forward updates in place; None: not kept (the layer uses its initial state).
    state: dict | None = None
    # The precision of matrix products (netdsl/precision.py): their operands are rounded
    # to it, so the reference computes what the tensor cores compute.
    precision: str = "fp32"

    def wants_input_grad(self, index: int) -> bool:
        return not self.input_grads or self.input_grads[index]


def operand(ctx: Context | None, array):
    """A matrix product's operand as the context's precision rounds it (fp32: as it is)."""
    if ctx is None or ctx.precision == "fp32":
        return array
    from ..precision import round_operand
    return round_operand(array, ctx.precision)


@dataclass
class Example:
    """A small case the tests loop over: arguments and input shapes (no batch)."""

    args: dict
    in_shapes: list[tuple[int, ...]]
    note: str = ""


class Layer:
    kind: str = ""
    doc: str = ""
    args: tuple[ArgSpec, ...] = ()
    # How many tensor inputs: an int, or None for "one or more".
    n_inputs: int | None = 1
    # Traits the passes read instead of asking for a kind by name:
    #   "elementwise": out[i] depends only on in[i] (fusable into a producer's epilogue)
    #   "activation":  elementwise, usable as a `param act = ...` value
    #   "loss":        consumes scores and labels, ends the forward graph
    #   "concat":      joins its inputs along channels
    #   "transfer":    copies a tensor between devices (identity on values)
    #   "random":      draws random numbers in training (needs a seed stream)
    traits: frozenset[str] = frozenset()
    # Whether this layer's cuda template passes `epilogue_activation` to its forward product, so
    # the activation after it can run there (netdsl/passes/epilogues.py, where the graph allows).
    activation_epilogue: bool = False
    examples: tuple[Example, ...] = ()

    # ---- shapes and counts -------------------------------------------------
    def check_args(self, a: dict) -> str | tuple[str, str] | None:
        """Cross-argument checks; return a complaint, (complaint, hint) or None."""
        return None

    def output_shape(self, a: dict, in_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return in_shapes[0]

    def param_shapes(self, a: dict, in_shapes: list[tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        return {}

    def param_init(self, a: dict, name: str) -> Init:
        raise KeyError(name)

    def state_shapes(self, a: dict, in_shapes: list[tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """Running state kept across steps (not learned, not in the gradient): name -> shape."""
        return {}

    def state_init(self, a: dict, name: str) -> float:
        """The constant a state tensor starts at."""
        raise KeyError(name)

    def multipliers(self, a: dict, name: str) -> tuple[float, float]:
        """(learning-rate multiplier, weight-decay multiplier) of a parameter."""
        return 1.0, 1.0

    def macs(self, a: dict, in_shapes, out_shape) -> int:
        """Multiply-adds per image of the layer's matrix products (0 if none)."""
        return 0

    # ---- numerics (numpy reference; batch is the leading axis) -------------
    def forward(self, a: dict, params: dict, xs: list, ctx) -> tuple[Any, Any]:
        """Returns (output, cache for backward)."""
        raise NotImplementedError(f"{self.kind}: forward")

    def backward(self, a: dict, params: dict, cache, dy, ctx) -> tuple[list, dict]:
        """Returns (gradient per input, gradient per parameter)."""
        raise NotImplementedError(f"{self.kind}: backward")

    # ---- twins in other frameworks -------------------------------------------
    # The kind's own mapping, so that a new kind brings them along (the twin of
    # `netdsl time --torch` and the operators of `netdsl export` read them).
    onnx_op: str = ""  # a one-input ONNX operator with no attributes computing the forward, if one does

    def torch_forward(self, a: dict, params: dict, xs: list, train: bool, state: dict | None = None):
        """The same forward in PyTorch (torch tensors in, a tensor out): an independent
        implementation that tests check against `forward`. Not overridden: no twin."""
        raise NotImplementedError(f"{self.kind}: torch_forward")

    def onnx(self, b, name: str, d, xs: list[str]) -> None:
        """The node as ONNX operators, its output written under `name`, through the builder
        of inspect/onnx_export.py (b.op, b.param, b.constant, b.shapes by tensor name)."""
        if not self.onnx_op:
            raise NotImplementedError(f"{self.kind}: onnx")
        b.op(self.onnx_op, [xs[0]], name)

    def has_torch_twin(self) -> bool:
        return type(self).torch_forward is not Layer.torch_forward

    def has_onnx(self) -> bool:
        return bool(self.onnx_op) or type(self).onnx is not Layer.onnx

    # ---- helpers -------------------------------------------------------------
    def arg(self, name: str) -> ArgSpec:
        for spec in self.args:
            if spec.name == name:
                return spec
        raise KeyError(name)


def torch_functional():
    """torch.nn.functional, imported when a twin is first used (torch is a test and
    `--torch` dependency only)."""
    from torch.nn import functional
    return functional


def spatial_out(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output length of a sliding window: floor((size + 2 pad - kernel) / stride) + 1.

    Floor rounding, as PyTorch, Caffe's convolution and cuda-convnet do: a
    window that would hang over the padded edge is dropped.
    """
    return (size + 2 * pad - kernel) // stride + 1
