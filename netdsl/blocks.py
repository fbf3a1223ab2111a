"""Blocks: a sub-network written once, `block basic(a, w, stride=1) { ... }`,
and expanded where it is used, each use with its own layers and weights.

A use is a call in a chain, and its layers are named under the name the call
would have as a layer: `s2 = basic(s1, 32)` makes `s2.c1.conv`, ...; in
`stage = conv(...) -> basic(32) * 2` the uses are `stage.basic` and
`stage.basic2`. Expansion is syntactic: the block's parameters become the
use's argument values, still unevaluated, so arithmetic and params resolve
later exactly as written values do; the block's statement names get the
use's name in front; the first parameter names the tensor the use reads
(the chain so far, or the use's first argument). An error later raised for a
layer a use made carries a note pointing at the use, innermost first.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

from . import ast
from .errors import NetDslError, did_you_mean


@dataclass
class Scope:
    """What the block's own names mean in one use."""

    values: dict[str, ast.Value] = field(default_factory=dict)  # parameters (and the input) -> values
    locals: dict[str, str] = field(default_factory=dict)  # the block's statements -> their names in this use


def check_block(decl: ast.BlockDecl, kinds, reserved) -> None:
    """The definition on its own: what a use could not report at the right line."""
    if decl.name in kinds:
        raise NetDslError(f"`{decl.name}` is a layer kind and cannot name a block", decl.pos,
                          "pick a name no layer kind has, such as `basic` or `bottleneck`")
    if decl.params[0].default is not None:
        raise NetDslError(f"the first parameter of block `{decl.name}` names its input and takes no default",
                          decl.params[0].default.pos, f"write `block {decl.name}({decl.params[0].name}, ...)`")
    seen: dict[str, object] = {}
    for item in list(decl.params) + list(decl.body):
        what = "parameter" if isinstance(item, ast.BlockParam) else "statement"
        if item.name in reserved:
            raise NetDslError(f"`{item.name}` is a reserved word and cannot name a {what}", item.pos,
                              f"reserved words: {' '.join(reserved)}")
        if item.name in seen:
            first = seen[item.name].pos
            raise NetDslError(f"duplicate name `{item.name}` in block `{decl.name}`", item.pos,
                              f"`{item.name}` is already defined at line {first.line}, column {first.column}")
        seen[item.name] = item
    if not decl.body:
        raise NetDslError(f"block `{decl.name}` has no statements", decl.pos,
                          "its last statement is its output: `block b(a, w) { out = conv(a, w, size=3) }`")


def is_tensor_ref(value: ast.Value, params) -> bool:
    if isinstance(value, ast.AllRef):
        return True
    return isinstance(value, ast.Name) and value.name not in params and value.name not in ("true", "false")


def bind(decl: ast.BlockDecl, call: ast.LayerCall, prefix: str, chained: bool, params) -> Scope:
    """The scope of one use: `call`'s arguments against the block's parameters.
    `chained` says the use reads the chain so far (bound by the caller)."""
    positional = [a for a in call.args if a.key is None]
    keyword = [a for a in call.args if a.key is not None]
    if keyword and positional and call.args.index(positional[-1]) > call.args.index(keyword[0]):
        raise NetDslError("a positional argument follows a keyword argument", positional[-1].pos)
    scope = Scope(locals={s.name: f"{prefix}{s.name}" for s in decl.body})
    source, rest = decl.params[0], decl.params[1:]
    if not chained:
        if not positional or not is_tensor_ref(positional[0].value, params):
            raise NetDslError(f"block `{decl.name}` needs an input", call.pos,
                              f"name the tensor it reads first, as in {decl.name}(image, ...), "
                              f"or chain it: x -> {decl.name}(...)")
        scope.values[source.name] = positional.pop(0).value
    names = [p.name for p in rest]
    if len(positional) > len(rest):
        raise NetDslError(f"block `{decl.name}` takes at most {len(rest)} argument(s) after its input",
                          positional[len(rest)].pos, f"its parameters: {', '.join(names) or 'none'}")
    given = {p.name: a for p, a in zip(rest, positional)}
    for arg in keyword:
        if arg.key == source.name:
            raise NetDslError(f"`{arg.key}` is the input of block `{decl.name}`", arg.pos,
                              "the input is the chain so far or the first argument, never a keyword")
        if arg.key not in names:
            raise NetDslError(f"unknown argument `{arg.key}` of block `{decl.name}`{did_you_mean(arg.key, names)}",
                              arg.pos, f"block {decl.name} takes: {', '.join(names) or 'no arguments'}")
        if arg.key in given:
            raise NetDslError(f"argument `{arg.key}` of block `{decl.name}` is given twice", arg.pos)
        given[arg.key] = arg
    for p in rest:
        if p.name in given:
            scope.values[p.name] = given[p.name].value
        elif p.default is not None:  # a default may use the parameters before it: `out=2*w`
            scope.values[p.name] = rewrite(p.default, scope)
        else:
            raise NetDslError(f"missing required argument `{p.name}` of block `{decl.name}`", call.pos,
                              f"block {decl.name}({', '.join(x.name for x in decl.params)}), defined at line "
                              f"{decl.pos.line}")
    return scope


def rewrite(value: ast.Value, scope: Scope) -> ast.Value:
    """`value` as written in the block, in this use: parameters replaced, local names prefixed."""
    if isinstance(value, ast.Name):
        if value.name in scope.locals:
            return ast.Name(scope.locals[value.name], value.pos)  # where it is read, for errors
        return scope.values.get(value.name, value)
    if isinstance(value, ast.AllRef):
        if value.name in scope.locals:
            return ast.AllRef(scope.locals[value.name], value.pos)
        bound = scope.values.get(value.name)
        return ast.AllRef(bound.name, value.pos) if isinstance(bound, ast.Name) else value
    if isinstance(value, ast.Call):
        return ast.Call(value.name, tuple(_arg(a, scope) for a in value.args), value.pos)
    if isinstance(value, ast.ListVal):
        return ast.ListVal(tuple(rewrite(v, scope) for v in value.items), value.pos)
    if isinstance(value, ast.BinOp):
        return ast.BinOp(value.op, rewrite(value.left, scope), rewrite(value.right, scope), value.pos)
    return value


def _arg(arg: ast.Arg, scope: Scope) -> ast.Arg:
    return ast.Arg(arg.key, rewrite(arg.value, scope), arg.pos)


def rewrite_call(call: ast.LayerCall, scope: Scope) -> ast.LayerCall:
    kind = call.kind
    if kind.name in scope.values:  # a parameter used as a layer kind: `-> act`
        bound = scope.values[kind.name]
        if not isinstance(bound, ast.Name):
            raise NetDslError(f"`{kind.name}` is used as a layer kind here, so it needs a kind's or a block's name, "
                              f"not `{getattr(bound, 'value', '...')}`", bound.pos)
        kind = bound
    repeat = rewrite(call.repeat, scope) if call.repeat is not None else None
    return ast.LayerCall(kind, tuple(_arg(a, scope) for a in call.args), call.pos, repeat)


def note_uses(err: NetDslError, uses) -> NetDslError:
    """Add a note per block use that made the layer (`uses` outermost first)."""
    for block, pos in reversed(uses or ()):
        err.note(f"in block `{block}` used here", pos)
    return err


@contextmanager
def noted(node):
    """Errors raised for `node` point at the uses of the blocks that made it, too."""
    try:
        yield
    except NetDslError as err:
        raise note_uses(err, node.uses) from None
