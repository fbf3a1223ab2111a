"""The parsed form of a .net file: frozen dataclasses carrying source positions.

Values stay syntactic here (a `Name` may later turn out to be a param, a
tensor or a layer kind); the passes decide what each means.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from .errors import Pos


# ---------------------------------------------------------------- values

@dataclass(frozen=True)
class Num:
    value: int | float
    pos: Pos = field(compare=False)


@dataclass(frozen=True)
class Str:
    value: str
    pos: Pos = field(compare=False)


@dataclass(frozen=True)
class Name:
    name: str
    pos: Pos = field(compare=False)


@dataclass(frozen=True)
class AllRef:
    """`all x`: every tower's copy of x, concatenated along channels."""

    name: str
    pos: Pos = field(compare=False)


@dataclass(frozen=True)
class Arg:
    key: str | None  # None for a positional argument
    value: "Value"
    pos: Pos = field(compare=False)


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Arg, ...]
    pos: Pos = field(compare=False)


@dataclass(frozen=True)
class ListVal:
    items: tuple["Value", ...]
    pos: Pos = field(compare=False)


@dataclass(frozen=True)
class BinOp:
    """`left op right` on whole numbers (op one of + - * /), evaluated where the value is used."""

    op: str
    left: "Value"
    right: "Value"
    pos: Pos = field(compare=False)


Value = Union[Num, Str, Name, AllRef, Call, ListVal, BinOp]


# ------------------------------------------------------------ statements

@dataclass(frozen=True)
class NetworkDecl:
    name: str
    pos: Pos


@dataclass(frozen=True)
class InputDecl:
    """`input image : 3 x 224 x 224` (shape) or `input label : 1000 classes`; `classes` may
    also name a param (`input label : classes`) or be `auto` (the param `classes`, which
    `netdsl train` sets from the training folder's class count). The sizes of a shape are
    values (numbers, param names, arithmetic), evaluated when the graph is built."""

    name: str
    shape: tuple["Value", ...] | None
    classes: int | str | None
    pos: Pos


@dataclass(frozen=True)
class ParamDecl:
    name: str
    value: Value
    pos: Pos


@dataclass(frozen=True)
class Setting:
    key: str
    value: Value
    pos: Pos


@dataclass(frozen=True)
class DefaultsDecl:
    kinds: tuple[Name, ...]
    settings: tuple[Setting, ...]
    pos: Pos


@dataclass(frozen=True)
class LayerCall:
    kind: Name  # a layer kind, a block, or a param whose value names one
    args: tuple[Arg, ...]
    pos: Pos
    repeat: Value | None = None  # `call * N`: N copies in a row


@dataclass(frozen=True)
class LayerStmt:
    name: str
    chain: tuple[LayerCall, ...]
    device: Name | None
    pos: Pos  # the statement's name


@dataclass(frozen=True)
class TowerDecl:
    devices: tuple[Name, ...]
    body: tuple[LayerStmt, ...]
    pos: Pos


@dataclass(frozen=True)
class BlockParam:
    name: str
    default: Value | None
    pos: Pos


@dataclass(frozen=True)
class BlockDecl:
    """`block NAME(input, params) { statements }`: its output is the last statement's."""

    name: str
    params: tuple[BlockParam, ...]  # the first names the block's input tensor
    body: tuple[LayerStmt, ...]
    pos: Pos


@dataclass(frozen=True)
class TrainDecl:
    settings: tuple[Setting, ...]
    pos: Pos


Statement = Union[NetworkDecl, InputDecl, ParamDecl, DefaultsDecl, LayerStmt, TowerDecl, BlockDecl, TrainDecl]


@dataclass(frozen=True)
class Program:
    file: str
    statements: tuple[Statement, ...]
