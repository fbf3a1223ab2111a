"""The sizes of an image input, `input image : 3 x size x (size / 2)`.

A size is a whole number, a param or bracketed whole-number arithmetic, and is
evaluated when the graph is built, after `--set` has replaced the params, so
`--set size=160` changes the input and every shape after it. A complaint points
at the size as written in the file, and names the `--set` values it read.
"""
from __future__ import annotations

import re

from . import ast
from .errors import NetDslError, Pos, did_you_mean
from .shape_refs import SHAPE_FUNCTIONS
from .values import MAX_INT, show, substitute

SIZE_HINT = "a size is a whole number, a param, or arithmetic in brackets: `3 x s x s`, `3 x (2 * s) x (2 * s)`"


def evaluate(decl: ast.InputDecl, params: dict[str, ast.Value]) -> tuple[int, ...]:
    """The input's shape as whole numbers, one per size written."""
    return tuple(_size(decl, i, size, params) for i, size in enumerate(decl.shape))


def _size(decl: ast.InputDecl, index: int, size: ast.Value, params) -> int:
    what = f"size {index + 1} of input `{decl.name}`"
    _check_names(what, size, params)
    value = substitute(size, params)  # arithmetic errors point at their operand
    given = _from_sets(size, params)
    origin = f" (with {', '.join(given)})" if given else ""
    whole = isinstance(value, ast.Num) and (isinstance(value.value, int) or float(value.value).is_integer())
    if not whole:
        raise NetDslError(f"{what} must be a positive whole number, but `{show(size)}` is `{show(value)}`{origin}",
                          size.pos, SIZE_HINT)
    number = int(value.value)
    if number < 1 and isinstance(size, ast.Num):
        raise NetDslError(f"{what} must be a positive whole number, not {number}", size.pos, SIZE_HINT)
    if number < 1:
        raise NetDslError(f"{what} must be a positive whole number, but `{show(size)}` is {number}{origin}",
                          size.pos, "give the params it reads values that make it 1 or more")
    if number >= MAX_INT:
        raise NetDslError(f"{what} is too large: `{show(size)}` is {number:,}{origin}", size.pos,
                          f"a size is at most {MAX_INT - 1:,}")
    return number


def _check_names(what: str, value: ast.Value, params) -> None:
    """Every name a size uses is a param; a shape function has no tensor to read yet."""
    if isinstance(value, ast.Name) and value.name not in params:
        raise NetDslError(f"{what}: unknown param `{value.name}`{did_you_mean(value.name, params)}", value.pos,
                          f"declare it above the input, as `param {value.name} = 224`; `--set {value.name}=N` "
                          "then changes it")
    if isinstance(value, ast.Call):
        if value.name in SHAPE_FUNCTIONS:
            raise NetDslError(f"{what}: `{value.name}(...)` reads a tensor's shape, and an input comes before "
                              "every tensor", value.pos, SIZE_HINT)
        raise NetDslError(f"{what}: `{value.name}(...)` is not a size", value.pos, SIZE_HINT)
    if isinstance(value, ast.BinOp):
        _check_names(what, value.left, params)
        _check_names(what, value.right, params)


def _from_sets(value: ast.Value, params, seen=()) -> list[str]:
    """`--set NAME=VALUE` for each param the size reads that the command line gave."""
    if isinstance(value, ast.BinOp):
        return list(dict.fromkeys(_from_sets(value.left, params, seen) + _from_sets(value.right, params, seen)))
    if isinstance(value, ast.Name) and value.name in params and value.name not in seen:
        bound = params[value.name]
        if bound.pos.file.startswith("<--set "):
            return [f"--set {value.name}={show(bound)}"]
        return _from_sets(bound, params, seen + (value.name,))
    return []


# `3xS` or `3x224`: a number with `x` and a name glued to it, which the lexer reads as a
# number followed by the name `xS`; and arithmetic written outside brackets.
_GLUED = re.compile(r"(?<![\w.])\d+x\w+|(?<=\s)x\d+\b")
_OPERATOR = re.compile(r"[-+*/]")


def syntax_error(text: str, file: str, line: int, column: int) -> NetDslError | None:
    """A clearer syntax error than the parser's for the two ways an input's sizes go wrong,
    or None. `line` and `column` (1-based) are where the parser stopped; a glued `3x224`
    stops it only at the next line's first word, so the line above is read too."""
    lines = text.splitlines()
    for number in (line, line - 1):
        line_text = lines[number - 1] if 0 < number <= len(lines) else ""
        if not line_text.lstrip().startswith("input ") or ":" not in line_text:
            continue
        glued = _GLUED.search(line_text, line_text.index(":"))
        if glued is not None:
            at, word = glued.start() + 1, glued.group()
            return NetDslError(f"`{word}`: `x` between sizes is a word of its own",
                               Pos(file, number, at, number, at + len(word)),
                               f"write the sizes apart, `{re.sub(r'(?<=[0-9])x|^x', ' x ', word).strip()}`: `3xS` reads "
                               "as 3 and the name `xS`")
        if number == line and _OPERATOR.match(line_text, column - 1):
            return NetDslError(f"unexpected `{line_text[column - 1]}` in the sizes of an input",
                               Pos(file, line, column, line, column + 1),
                               "write arithmetic in a size in brackets: `3 x (2 * s) x (2 * s)`")
    return None
