"""Text helpers for the templates, so generated code reads as if written by hand.

Arithmetic with a constant the template knows at render time drops what
does nothing (the expression is a C expression as text, or an int):

    offset(expr, k)    expr + k, or expr - |k|; expr itself when k is 0
    times(expr, k)     expr * k; expr when k is 1, 0 when k is 0
    over(expr, k)      expr / k (C integer division); expr when k is 1
    mod(expr, k)       expr % k; 0 when k is 1

An operand that would bind wrongly, or read ambiguously, next to the new
operator is put in parentheses: times("row % 3", 2) is "(row % 3) * 2".
Two ints fold into one number, with C's truncating division.

    tidy               filter: a translation unit with no blank line at either end
                       and never two blank lines in a row

`TextHelpers` registers them (jinja2 loads an extension by its dotted name).
"""
from __future__ import annotations

import re

from jinja2.ext import Extension

_BLANK_RUNS = re.compile(r"\n(?:[ \t]*\n)+")

# Operators that, at the top level of an operand, call for parentheses next to
# each new operator: a sum stays bare where a constant is added to it, a product
# where it is multiplied again; a quotient or remainder is bracketed even where C
# would read it the same, since `a / b * c` makes the reader stop. A leading
# minus is a sign, not an operator.
_LOOSER = {"+": set("<>=!&|^?:,"), "*": set("+-/%<>=!&|^?:,"), "/": set("+-*/%<>=!&|^?:,")}


def _top_level_operators(expr: str) -> set[str]:
    depth, found = 0, set()
    for position, char in enumerate(expr):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif depth == 0 and not (char == "-" and not expr[:position].strip()):
            found.add(char)
    return found


def _operand(expr, op: str) -> str:
    text = str(expr).strip()
    if _top_level_operators(text) & _LOOSER[op]:
        return f"({text})"
    return text


def _number(expr):
    """An int, also where the expression is an integer literal ("0" from mod, say)."""
    if isinstance(expr, str) and re.fullmatch(r"\s*-?\d+\s*", expr):
        return int(expr)
    return expr


def offset(expr, k: int) -> str:
    expr = _number(expr)
    if isinstance(expr, int):
        return str(expr + k)
    if k == 0:
        return str(expr)
    return f"{_operand(expr, '+')} {'+' if k > 0 else '-'} {abs(k)}"


def times(expr, k: int) -> str:
    expr = _number(expr)
    if isinstance(expr, int):
        return str(expr * k)
    if k == 0:
        return "0"
    if k == 1:
        return str(expr)
    return f"{_operand(expr, '*')} * {k}"


def over(expr, k: int) -> str:
    if k == 0:
        raise ZeroDivisionError(f"over({expr!r}, 0)")
    expr = _number(expr)
    if isinstance(expr, int):
        quotient = abs(expr) // abs(k)
        return str(quotient if (expr < 0) == (k < 0) else -quotient)
    if k == 1:
        return str(expr)
    return f"{_operand(expr, '/')} / {k}"


def mod(expr, k: int) -> str:
    if k == 0:
        raise ZeroDivisionError(f"mod({expr!r}, 0)")
    expr = _number(expr)
    if isinstance(expr, int):
        return str(expr - k * int(over(expr, k)))
    if k == 1:
        return "0"
    return f"{_operand(expr, '/')} % {k}"


def tidy(text: str) -> str:
    return _BLANK_RUNS.sub("\n\n", text.strip("\n")) + "\n"


class TextHelpers(Extension):
    """Adds the helpers above to an environment: `env.add_extension(...TextHelpers)`."""

    def __init__(self, environment):
        super().__init__(environment)
        environment.globals.update(offset=offset, times=times, over=over, mod=mod)
        environment.filters["tidy"] = tidy
