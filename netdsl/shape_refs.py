"""`channels(x)`, `height(x)` and `width(x)`: a tensor's shape as a number in a
layer's arguments, `conv(x, channels(x), size=3, groups=channels(x))`.

A layer's arguments are converted when resolve_names reaches it, in file order,
so every tensor a statement above it made already has its kind, arguments and
inputs. resolve_names hands `evaluate` a `read` function that finds the
tensor the way a layer's input is found (its tower's copy, `all x` for every
copy), infers the shapes of what precedes it and returns them; `evaluate`
replaces each call by the number it gives, at the call's position, so the
argument's own checks and errors follow as for a written number. Inside a
block the block's rewriting has already made `x` this use's tensor, so two
uses with different inputs get different numbers.

This module knows only the syntax; it never touches the graph. Shapes are
C x H x W, or one length for a vector (whose `channels` is that length).
"""
from __future__ import annotations

from collections.abc import Callable

from . import ast
from .errors import NetDslError

# name -> index into a C x H x W shape
SHAPE_FUNCTIONS = {"channels": 0, "height": 1, "width": 2}

ShapeReader = Callable[[ast.Value], "list[tuple[int, ...]]"]


def uses_shapes(value: ast.Value, params: dict[str, ast.Value], seen: tuple[str, ...] = ()) -> bool:
    """Whether `value` (or a param it names) calls a shape function."""
    if isinstance(value, ast.Call):
        return value.name in SHAPE_FUNCTIONS or any(uses_shapes(a.value, params, seen) for a in value.args)
    if isinstance(value, ast.BinOp):
        return uses_shapes(value.left, params, seen) or uses_shapes(value.right, params, seen)
    if isinstance(value, ast.ListVal):
        return any(uses_shapes(v, params, seen) for v in value.items)
    if isinstance(value, ast.Name) and value.name in params and value.name not in seen:
        return uses_shapes(params[value.name], params, seen + (value.name,))
    return False


def evaluate(value: ast.Value, params: dict[str, ast.Value], read: ShapeReader) -> ast.Value:
    """`value` with every shape function replaced by its number; unchanged when it has none."""
    if not uses_shapes(value, params):
        return value
    if isinstance(value, ast.Call):
        if value.name in SHAPE_FUNCTIONS:
            return ast.Num(_shape_number(value, params, read), value.pos)
        return ast.Call(value.name, tuple(ast.Arg(a.key, evaluate(a.value, params, read), a.pos)
                                          for a in value.args), value.pos)
    if isinstance(value, ast.BinOp):
        return ast.BinOp(value.op, evaluate(value.left, params, read), evaluate(value.right, params, read),
                         value.pos)
    if isinstance(value, ast.ListVal):
        return ast.ListVal(tuple(evaluate(v, params, read) for v in value.items), value.pos)
    # A param whose value reads a shape: read here, where the param is used.
    return evaluate(params[value.name], params, read)


def _shape_number(call: ast.Call, params, read: ShapeReader) -> int:
    example = f"{call.name}(x), x a tensor defined above"
    if len(call.args) != 1 or call.args[0].key is not None:
        raise NetDslError(f"{call.name}() takes one tensor", call.pos, f"write {example}")
    ref = call.args[0].value
    if not isinstance(ref, (ast.Name, ast.AllRef)):
        raise NetDslError(f"{call.name}() takes a tensor's name", ref.pos, f"write {example}")
    if isinstance(ref, ast.Name) and (ref.name in params or ref.name in ("true", "false")):
        raise NetDslError(f"{call.name}({ref.name}): `{ref.name}` is a param, not a tensor", ref.pos,
                          f"{call.name}() reads the shape of an input or a statement's output, as in {example}")
    shapes = read(ref)
    index = SHAPE_FUNCTIONS[call.name]
    if index == 0:
        return sum(shape[0] for shape in shapes)  # `all x`: the copies side by side along channels
    shape = shapes[0]
    if len(shape) != 3:
        raise NetDslError(f"{call.name}({ref.name}): `{ref.name}` is a vector of {shape[0]} values, with no "
                          f"{call.name}", ref.pos, f"channels({ref.name}) is its length")
    return shape[index]
