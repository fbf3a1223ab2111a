"""The one error type users see, and the one formatter for it.

Every problem in a user's input (a .net file, a --set override, a bad
argument) becomes a NetDslError carrying the source position, so the CLI can
print `file:line:col: message`, the offending line, a caret and a hint, and
exit with status 2 instead of a traceback.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

# Source text by file name, registered by the parser, so that an error raised
# by any later pass can show the offending line.
_SOURCES: dict[str, str] = {}

# Source lines longer than this are shown as a window around the caret, so a
# megabyte-long line gives a message of a few lines, not of megabytes.
SHOWN_LINE = 120


def register_source(filename: str, text: str) -> None:
    _SOURCES[filename] = text


@dataclass(frozen=True)
class Pos:
    """A 1-based position in a source file (end is exclusive)."""

    file: str
    line: int
    column: int
    end_line: int | None = None
    end_column: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class NetDslError(Exception):
    def __init__(self, message: str, pos: Pos | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.hint = hint
        # (message, position) pairs shown after the error: where a block holding
        # the error's line was used, innermost use first.
        self.notes: list[tuple[str, Pos]] = []

    def note(self, message: str, pos: Pos) -> "NetDslError":
        self.notes.append((message, pos))
        return self

    def __str__(self) -> str:
        return format_error(self)


def format_error(err: NetDslError) -> str:
    """`file:line:col: error: message`, the source line, a caret run, the hint,
    then each note the same way (`file:line:col: note: ...`)."""
    prefix = f"{err.pos}: " if err.pos else ""
    lines = [f"{prefix}error: {err.message}", *_quote(err.pos)]
    if err.hint:
        lines.append(f"hint: {err.hint}")
    for message, pos in err.notes:
        lines += [f"{pos}: note: {message}", *_quote(pos)]
    return "\n".join(lines)


def _quote(pos: Pos | None) -> list[str]:
    """The source line at `pos` and a caret run under it (nothing when the source is unknown)."""
    text = _SOURCES.get(pos.file) if pos else None
    if text is None:
        return []
    src_lines = text.splitlines()
    if not 1 <= pos.line <= len(src_lines):
        return []
    src = src_lines[pos.line - 1].expandtabs(1)
    col = max(pos.column, 1)
    width = 1
    if pos.end_line == pos.line and pos.end_column:
        width = max(pos.end_column - col, 1)
    width = min(width, max(len(src) - col + 1, 1))
    src, col, width = _window(src, col, width)
    gutter = f"{pos.line:>5} | "
    return [gutter + src, " " * (len(gutter) + col - 1) + "^" * width]


def _window(src: str, col: int, width: int) -> tuple[str, int, int]:
    """At most SHOWN_LINE characters of `src` around column `col`, with `...` where cut."""
    if len(src) <= SHOWN_LINE:
        return src, col, width
    width = min(width, SHOWN_LINE // 2)
    start = max(min(col - 1 - SHOWN_LINE // 3, len(src) - SHOWN_LINE), 0)
    shown = src[start:start + SHOWN_LINE]
    head = "..." if start > 0 else ""
    tail = "..." if start + SHOWN_LINE < len(src) else ""
    return head + shown + tail, col - start + len(head), width


def did_you_mean(word: str, choices) -> str:
    """' (did you mean `x`?)' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""
