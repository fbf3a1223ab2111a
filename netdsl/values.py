"""Turning syntactic values into typed Python values, with positioned errors.

Shared by layer arguments and the `train` block. A bare name that is a
`param` is replaced by the param's value first, so `maxpool(pool)` and
`-> act` follow `--set pool=2` and `--set act=tanh`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from . import ast
from .errors import NetDslError, did_you_mean
from .layers import Init
from .shape_refs import SHAPE_FUNCTIONS

TYPE_WORDS = {
    "int": "a whole number", "float": "a number", "bool": "true or false", "init": "an initialiser",
    "kind": "a layer kind", "str": "a name", "call": "a name or a call",
    "int_pair": "a whole number or a pair [height, width]",
}
INITIALISERS = ("gauss", "uniform", "constant")
# Whole numbers (sizes, counts) stay below this: anything larger cannot be a
# size that fits in memory, and beyond it arithmetic on shapes leaves int64.
MAX_INT = 1 << 31
MAX_ABS_INT = (1 << 63) - 1  # the parser's limit on a written whole number


@dataclass(frozen=True)
class CallValue:
    """`name(args)` or a bare `name` where a call is allowed, arguments resolved."""

    name: str
    kwargs: dict

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.name}({inner})" if inner else self.name


def substitute(value: ast.Value, params: dict[str, ast.Value], seen=()) -> ast.Value:
    """Follow param names to their values (params may name other params), and
    evaluate arithmetic to a number at the expression's position."""
    while isinstance(value, ast.Name) and value.name in params:
        if value.name in seen:
            raise NetDslError(f"param `{value.name}` refers to itself", value.pos)
        seen = seen + (value.name,)
        value = params[value.name]
    if isinstance(value, ast.BinOp):
        return _arithmetic(value, params, seen)
    return value


def from_command_line(value: ast.Value, params: dict[str, ast.Value]) -> ast.Value | None:
    """The `--set` value a param name stands for (at its `<--set NAME>` position), or None
    when the value is the file's: a complaint about it then points at the command line,
    where the user typed it, not at the file's line that only names the param."""
    seen = ()
    while isinstance(value, ast.Name) and value.name in params and value.name not in seen:
        seen += (value.name,)
        value = params[value.name]
        if value.pos.file.startswith("<--set "):
            return value
    return None


def _whole(value: ast.Value, params, seen, expr: ast.BinOp) -> int:
    operand = substitute(value, params, seen)
    if isinstance(operand, ast.Num) and (isinstance(operand.value, int) or float(operand.value).is_integer()):
        return int(operand.value)
    hint = _name_hint(operand, params) or "arithmetic (+ - * /) works on whole numbers and params that hold them"
    raise NetDslError(f"`{show(expr)}`: arithmetic takes whole numbers, got `{show(operand)}`", operand.pos, hint)


def _arithmetic(expr: ast.BinOp, params, seen) -> ast.Num:
    left, right = _whole(expr.left, params, seen, expr), _whole(expr.right, params, seen, expr)
    if expr.op == "/":
        # Sizes and counts are whole: a division that leaves a remainder is a mistake, not a rounding.
        if right == 0:
            raise NetDslError(f"`{show(expr)}` divides by zero", expr.pos)
        if left % right:
            raise NetDslError(f"`{show(expr)}` is {left}/{right}, not a whole number", expr.pos,
                              "`/` divides whole numbers exactly; change the operands so it does")
        result = left // right
    else:
        result = left + right if expr.op == "+" else left - right if expr.op == "-" else left * right
    if abs(result) > MAX_ABS_INT:
        raise NetDslError(f"`{show(expr)}` is too large ({result:.3g})", expr.pos,
                          "whole numbers go up to 2**63 - 1")
    return ast.Num(result, expr.pos)


def show(value: ast.Value) -> str:
    if isinstance(value, ast.Num):
        return f"{value.value:g}" if isinstance(value.value, float) else str(value.value)
    if isinstance(value, ast.Str):
        return f'"{value.value}"'
    if isinstance(value, ast.Name):
        return value.name
    if isinstance(value, ast.AllRef):
        return f"all {value.name}"
    if isinstance(value, ast.Call):
        return f"{value.name}(...)"
    if isinstance(value, ast.BinOp):
        side = lambda v: f"({show(v)})" if isinstance(v, ast.BinOp) else show(v)  # noqa: E731
        return f"{side(value.left)} {value.op} {side(value.right)}"
    return "[...]"


def _wrong(what: str, want: str, value: ast.Value, hint: str | None = None) -> NetDslError:
    return NetDslError(f"wrong value type: {what} wants {TYPE_WORDS.get(want, want)}, got `{show(value)}`",
                       value.pos, hint)


def coerce(what: str, want: str, value: ast.Value, params: dict) -> object:
    """Convert `value` to the type named by `want`, or raise a positioned error.

    `a|b` accepts either type, the first that fits (`int_pair|str`: a size or a word).
    """
    value = substitute(value, params)
    if "|" in want:
        first = None
        for alternative in want.split("|"):
            try:
                return coerce(what, alternative, value, params)
            except NetDslError as exc:
                first = first or exc
        # A number refused for its size says so; a value of no listed type lists them.
        if not first.message.startswith("wrong value type"):
            raise first
        raise _wrong(what, " or ".join(TYPE_WORDS[w] for w in want.split("|")), value)
    if want == "int_pair":
        # An int stays an int (a square window); [h, w] becomes a tuple.
        if isinstance(value, ast.ListVal):
            if len(value.items) != 2:
                raise NetDslError(f"{what}: a pair has two whole numbers [height, width], got {len(value.items)}",
                                  value.pos, "for example [1, 7]")
            return tuple(coerce(what, "int", item, params) for item in value.items)
        return coerce(what, "int", value, params)
    if want == "int":
        if isinstance(value, ast.Num) and (isinstance(value.value, int) or float(value.value).is_integer()):
            number = int(value.value)
            if abs(number) >= MAX_INT:
                raise NetDslError(f"{what}: {show(value)} is too large (at most {MAX_INT - 1:,})", value.pos)
            return number
        raise _wrong(what, want, value, _name_hint(value, params))
    if want == "float":
        if isinstance(value, ast.Num):
            return float(value.value)  # the parser keeps every number a finite double
        raise _wrong(what, want, value, _name_hint(value, params))
    if want == "bool":
        if isinstance(value, ast.Name) and value.name in ("true", "false"):
            return value.name == "true"
        raise _wrong(what, want, value)
    if want in ("str", "kind"):
        if isinstance(value, (ast.Name, ast.Str)):
            return value.name if isinstance(value, ast.Name) else value.value
        raise _wrong(what, want, value)
    if want == "init":
        return _init(what, value, params)
    raise AssertionError(f"unknown value type {want}")


def _name_hint(value: ast.Value, params: dict) -> str | None:
    if isinstance(value, ast.Call) and value.name in SHAPE_FUNCTIONS:
        return (f"{value.name}(x) is a tensor's shape, known only where the shapes before it are: "
                "in a layer's arguments (or a block use's)")
    if isinstance(value, ast.Name):
        close = did_you_mean(value.name, params)
        return f"`{value.name}` is not a param{close}" if params else f"`{value.name}` is not a param"
    return None


def _init(what: str, value: ast.Value, params: dict) -> Init:
    if isinstance(value, ast.Num):
        return Init("constant", float(value.value))
    if isinstance(value, ast.Call) and value.name in INITIALISERS:
        if len(value.args) != 1 or value.args[0].key is not None:
            raise NetDslError(f"{value.name}() takes one number", value.pos, f"for example {value.name}(0.01)")
        number = coerce(f"{value.name}()", "float", value.args[0].value, params)
        if value.name != "constant" and not number >= 0:
            raise NetDslError(f"{value.name}() needs a spread of 0 or more, not {number:g}",
                              substitute(value.args[0].value, params).pos,
                              "gauss(std) takes a standard deviation, uniform(limit) a half-width")
        return Init(value.name, number)
    hint = f"known initialisers: {', '.join(INITIALISERS)}, or a number"
    if isinstance(value, ast.Call):
        raise NetDslError(f"unknown initialiser `{value.name}`{did_you_mean(value.name, INITIALISERS)}", value.pos, hint)
    raise _wrong(what, "init", value, hint)
