"""Text -> AST with a cached LALR parser; Lark's errors become NetDslErrors."""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError

from . import ast, input_sizes
from .errors import NetDslError, Pos, register_source
from .resources import grammar_path

GRAMMAR = grammar_path()

# How the grammar's terminals read in an error message.
_TERMINAL_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "$END": "end of file",
}


@functools.lru_cache(maxsize=None)
def _parser(start: str) -> Lark:
    return Lark(GRAMMAR.read_text(), parser="lalr", start=start, propagate_positions=True,
                maybe_placeholders=False)


def _pos(file: str, item) -> Pos:
    meta = getattr(item, "meta", item)
    return Pos(file, meta.line, meta.column, getattr(meta, "end_line", None),
               getattr(meta, "end_column", None))


# Numbers beyond these are typing mistakes, not sizes or rates: an integer
# must fit int64 and a real number must be a finite double.
MAX_ABS_INT = (1 << 63) - 1
# Lark's tree transformer recurses once per nesting level; deeper brackets
# than this are refused before parsing, with the position of the first one too many.
MAX_NESTING = 64


def _number(token: Token, file: str) -> int | float:
    text = str(token)
    try:
        value: int | float = int(text)
    except ValueError:  # a real number, or more digits than int() reads
        value = float(text)
        if not math.isfinite(value) and not any(c in text for c in ".eE"):
            value = MAX_ABS_INT + 1
    if isinstance(value, int) and abs(value) > MAX_ABS_INT or isinstance(value, float) and not math.isfinite(value):
        shown = text if len(text) <= 24 else f"{text[:10]}...{text[-6:]} ({len(text)} characters)"
        raise NetDslError(f"number too large: `{shown}`", _pos(file, token),
                          "whole numbers go up to 2**63 - 1, real numbers up to about 1.8e308")
    return value


class _ToAst(Transformer):
    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _p(self, item) -> Pos:
        return _pos(self.file, item)

    # values
    def number(self, items):
        return ast.Num(_number(items[0], self.file), self._p(items[0]))

    def string(self, items):
        return ast.Str(items[0][1:-1], self._p(items[0]))

    def name(self, items):
        return ast.Name(str(items[0]), self._p(items[0]))

    def all_ref(self, items):
        return ast.AllRef(str(items[0]), self._p(items[0]))

    @v_args(meta=True)
    def arg(self, meta, items):
        return ast.Arg(None, items[0], _pos(self.file, meta))

    @v_args(meta=True)
    def kwarg(self, meta, items):
        return ast.Arg(str(items[0]), items[1], _pos(self.file, meta))

    @v_args(meta=True)
    def call(self, meta, items):
        return ast.Call(str(items[0]), tuple(items[1:]), self._p(items[0]))

    @v_args(meta=True)
    def add(self, meta, items):
        return ast.BinOp("+", items[0], items[1], _pos(self.file, meta))

    @v_args(meta=True)
    def sub(self, meta, items):
        return ast.BinOp("-", items[0], items[1], _pos(self.file, meta))

    @v_args(meta=True)
    def mul(self, meta, items):
        return ast.BinOp("*", items[0], items[1], _pos(self.file, meta))

    @v_args(meta=True)
    def div(self, meta, items):
        return ast.BinOp("/", items[0], items[1], _pos(self.file, meta))

    @v_args(meta=True)
    def list(self, meta, items):
        return ast.ListVal(tuple(items), _pos(self.file, meta))

    def set_value(self, items):
        return items[0]

    def names(self, items):
        return tuple(ast.Name(str(t), self._p(t)) for t in items)

    @v_args(meta=True)
    def setting(self, meta, items):
        return ast.Setting(str(items[0]), items[1], self._p(items[0]))

    # layers
    @v_args(meta=True)
    def layer_call(self, meta, items):
        kind = items[0]
        args = tuple(i for i in items[1:] if isinstance(i, ast.Arg))
        repeat = next((i for i in items[1:] if not isinstance(i, ast.Arg)), None)
        return ast.LayerCall(ast.Name(str(kind), self._p(kind)), args, _pos(self.file, meta), repeat)

    def chain(self, items):
        return tuple(items)

    def placement(self, items):
        return ast.Name(str(items[0]), self._p(items[0]))

    def layer_stmt(self, items):
        device = items[2] if len(items) > 2 else None
        return ast.LayerStmt(str(items[0]), items[1], device, self._p(items[0]))

    # statements
    @v_args(meta=True)
    def network(self, meta, items):
        return ast.NetworkDecl(str(items[0]), self._p(items[0]))

    def size_expr(self, items):
        return _Bracketed(items[0])

    def input_image(self, items):
        sizes = items[1:]
        if len(sizes) == 1 and isinstance(sizes[0], ast.Name):
            # One bare name: a label input sized by a param (`input label : classes`) or `auto`.
            return ast.InputDecl(str(items[0]), None, sizes[0].name, self._p(items[0]))
        # Sizes stay values: params and `--set` decide them when the graph is built.
        sizes = tuple(s.value if isinstance(s, _Bracketed) else s for s in sizes)
        return ast.InputDecl(str(items[0]), sizes, None, self._p(items[0]))

    def input_label(self, items):
        # `K classes`, or a param's name (`input label : n classes`): the graph resolves names
        count = str(items[1]) if items[1].type == "NAME" else _int_dim(items[1], self.file)
        return ast.InputDecl(str(items[0]), None, count, self._p(items[0]))

    def param(self, items):
        return ast.ParamDecl(str(items[0]), items[1], self._p(items[0]))

    @v_args(meta=True)
    def defaults(self, meta, items):
        return ast.DefaultsDecl(items[0], tuple(items[1:]), _pos(self.file, meta))

    @v_args(meta=True)
    def tower(self, meta, items):
        return ast.TowerDecl(items[0], tuple(items[1:]), _pos(self.file, meta))

    def block_param(self, items):
        return ast.BlockParam(str(items[0]), items[1] if len(items) > 1 else None, self._p(items[0]))

    def block(self, items):
        params = tuple(i for i in items[1:] if isinstance(i, ast.BlockParam))
        body = tuple(i for i in items[1:] if isinstance(i, ast.LayerStmt))
        return ast.BlockDecl(str(items[0]), params, body, self._p(items[0]))

    @v_args(meta=True)
    def train(self, meta, items):
        return ast.TrainDecl(tuple(items), _pos(self.file, meta))


@dataclass(frozen=True)
class _Bracketed:
    """An input size written in brackets, so `input v : (n)` is a size and not a label count."""

    value: ast.Value


def _int_dim(token: Token, file: str) -> int:
    value = _number(token, file)
    if not isinstance(value, int) or value <= 0:
        raise NetDslError(f"a size must be a positive whole number, not `{token}`", _pos(file, token))
    return value


def parse_text(text: str, file: str = "<string>", start: str = "start"):
    """Parse `text`; `start="set_value"` parses the right-hand side of a --set."""
    text = text.removeprefix("\ufeff")  # a byte-order mark some editors write; invisible, so never an error
    register_source(file, text)
    _check_nesting(text, file)
    try:
        tree = _parser(start).parse(text)
        result = _ToAst(file).transform(tree)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text, file, start) from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, NetDslError):
            raise exc.orig_exc from None
        raise
    if start == "start":
        return ast.Program(file, tuple(s for s in result.children if not isinstance(s, Token)))
    return result


def _check_nesting(text: str, file: str) -> None:
    depth = 0
    for match in _BRACKETS.finditer(text):
        ch = match.group()
        if ch in ("(", "[", "{"):
            depth += 1
            if depth > MAX_NESTING:
                raise NetDslError(f"brackets nested more than {MAX_NESTING} deep",
                                  _pos_of_offset(text, file, match.start()), "no network needs this much nesting")
        elif ch in (")", "]", "}"):
            depth = max(depth - 1, 0)


# Brackets outside comments and strings (a comment or a string is matched whole and skipped).
_BRACKETS = re.compile(r'#[^\n]*|"[^"\n]*"|[()\[\]{}]')


def parse_file(path: str | Path) -> ast.Program:
    from .userpaths import check_regular_file
    path = check_regular_file(path, "network file")  # a FIFO would block the read; a directory cannot be read
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NetDslError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise NetDslError(f"{path} is not a UTF-8 text file") from None
    return parse_text(text, str(path))


# ------------------------------------------------------------ syntax errors

def _describe_expected(names, start: str) -> str:
    terminals = {t.name: t for t in _parser(start).terminals}
    words = []
    for name in sorted(names):
        if name in _TERMINAL_WORDS:
            words.append(_TERMINAL_WORDS[name])
        elif name in terminals and terminals[name].pattern.type == "str":
            words.append(f"`{terminals[name].pattern.value}`")
    words = sorted(set(words))
    if not words:
        return ""
    if len(words) > 6:
        words = words[:6] + ["..."]
    return "expected " + (words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1])


def _unclosed(text: str, upto: int, opener: str, closer: str) -> int | None:
    """Offset of the innermost `opener` still open at `upto` (comments skipped)."""
    stack, i = [], 0
    while i < min(upto, len(text)):
        ch = text[i]
        if ch == "#":
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl
            continue
        if ch == opener:
            stack.append(i)
        elif ch == closer and stack:
            stack.pop()
        i += 1
    return stack[-1] if stack else None


def _pos_of_offset(text: str, file: str, offset: int) -> Pos:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return Pos(file, line, col, line, col + 1)


def _syntax_error(exc: UnexpectedInput, text: str, file: str, start: str) -> NetDslError:
    if isinstance(exc, UnexpectedCharacters):
        pos = Pos(file, exc.line, exc.column, exc.line, exc.column + 1)
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else "?"
        return NetDslError(f"unexpected character `{char}`", pos,
                           "names are letters, digits and `_`; comments start with `#`")
    token = getattr(exc, "token", None)
    at_end = isinstance(exc, UnexpectedEOF) or (token is not None and token.type == "$END")
    if not at_end and token is not None and getattr(token, "line", None) is not None:
        sizes = input_sizes.syntax_error(text, file, token.line, token.column)
        if sizes is not None:
            return sizes
    expected = getattr(exc, "expected", None) or getattr(exc, "allowed", set())
    offset = len(text) if at_end else token.start_pos
    if "RBRACE" in expected or (at_end and _unclosed(text, offset, "{", "}") is not None):
        brace = _unclosed(text, offset, "{", "}")
        if brace is not None and at_end:
            return NetDslError("unterminated block: this `{` is never closed",
                               _pos_of_offset(text, file, brace), "add the matching `}` after the block's last statement")
    if "RPAR" in expected or "RSQB" in expected:
        opener, closer = ("(", ")") if "RPAR" in expected else ("[", "]")
        open_at = _unclosed(text, offset, opener, closer)
        if open_at is not None and "COMMA" in expected:
            where = _pos_of_offset(text, file, open_at)
            pos = _token_pos(text, file, token, at_end)
            found = "end of file" if at_end else f"`{token}`"
            return NetDslError(f"missing `{closer}`: found {found} inside the `{opener}` opened at line "
                               f"{where.line}, column {where.column}", pos,
                               f"close the list with `{closer}`, or separate arguments with `,`")
    pos = _token_pos(text, file, token, at_end)
    found = "end of file" if at_end else f"`{token}`"
    return NetDslError(f"unexpected {found}", pos, _describe_expected(expected, start) or None)


def _token_pos(text: str, file: str, token, at_end: bool) -> Pos:
    if at_end or token is None or getattr(token, "line", None) is None:
        return _pos_of_offset(text, file, max(len(text.rstrip()) - 1, 0))
    return Pos(file, token.line, token.column, token.end_line, token.end_column)
