"""Resolve names: turn each layer call into a layer kind, typed arguments and
input edges.

For every layer, in file order:
  kind       the written name, or the value of a `param` naming a kind;
  inputs     the previous layer of the chain, then leading positional
             arguments that name tensors. Inside a tower a name means this
             tower's copy; `all x` means every tower's copy, concatenated
             along channels by an inserted `concat` node. Reading a tower's
             tensor from outside it without `all` is an error: that tensor
             lives on several devices;
  arguments  positional then keyword, then the file's `defaults` for the
             kind, then the kind's own defaults, each converted to its type
             and checked; `channels(x)`, `height(x)`, `width(x)` read the
             shapes of what precedes the layer (netdsl/shape_refs.py).
A layer with one input that is given several gets them concatenated too.
"""
from __future__ import annotations

import networkx as nx

from .. import ast, shape_refs
from ..blocks import noted
from ..errors import NetDslError, did_you_mean
from ..layers import REGISTRY
from ..nodes import Node, Part, Role
from ..values import coerce, from_command_line, show, substitute
from .infer_shapes import infer_upto


def _kind(call: ast.LayerCall, params) -> str:
    value = substitute(call.kind, params)
    name = value.name if isinstance(value, ast.Name) else getattr(value, "value", None)
    if not isinstance(name, str) or name not in REGISTRY:
        shown = call.kind.name if name is None else str(name)
        via = f" (the value of param `{call.kind.name}`)" if call.kind.name in params else ""
        raise NetDslError(f"unknown layer kind `{shown}`{via}{did_you_mean(shown, REGISTRY)}", call.kind.pos,
                          f"known kinds: {', '.join(sorted(REGISTRY))}")
    return name


def _is_tensor_ref(value: ast.Value, params) -> bool:
    if isinstance(value, ast.AllRef):
        return True
    return isinstance(value, ast.Name) and value.name not in params and value.name not in ("true", "false")


def _lookup(g: nx.DiGraph, ref: ast.Value, node: Node) -> list[str]:
    """The node(s) a tensor reference reads."""
    tensors = g.graph["tensors"]
    entry = tensors.get(ref.name)
    if entry is None:
        raise NetDslError(f"undefined name `{ref.name}`{did_you_mean(ref.name, list(tensors) + list(g.graph['params']))}",
                          ref.pos, "a layer reads an input or a statement defined above it")
    if entry["order"] > node.order.index:
        raise NetDslError(f"`{ref.name}` is used before its definition at line {entry['pos'].line}", ref.pos,
                          "statements run in file order; move this one below it")
    copies = entry["nodes"]
    if isinstance(ref, ast.AllRef):
        if not entry["tower"]:
            raise NetDslError(f"`all {ref.name}`: `all` gathers the copies of a tensor defined inside a tower, "
                              f"and `{ref.name}` is not", ref.pos, f"write plain `{ref.name}`")
        return list(copies.values())
    if entry["tower"] is None:
        return [copies[None]]
    if node.tower == entry["tower"]:
        return [copies[node.device]]
    devices = ", ".join(entry["tower"])
    raise NetDslError(f"`{ref.name}` exists once per device of its tower ({devices}): reading it from here needs a "
                      "cross-device link", ref.pos, f"write `all {ref.name}` to concatenate every tower's copy "
                      "(an explicit cross-GPU link)")


def _shape_reader(g: nx.DiGraph, node: Node) -> shape_refs.ShapeReader:
    """The shapes of the tensor(s) a reference names, as `node` would read them."""
    def read(ref: ast.Value) -> list[tuple[int, ...]]:
        names = _lookup(g, ref, node)
        infer_upto(g, names)
        return [tuple(g.nodes[n].shape) for n in names]
    return read


def _arguments(layer, kind: str, positional: list[ast.Arg], keyword: list[ast.Arg], g: nx.DiGraph, call,
               overrides: dict[str, ast.Arg], read: shape_refs.ShapeReader) -> dict:
    params = g.graph["params"]
    given: dict[str, ast.Arg] = {}
    names = [s.name for s in layer.args]
    if len(positional) > len(names):
        extra = positional[len(names)]
        raise NetDslError(f"{kind} takes at most {len(names)} positional argument(s) after its inputs", extra.pos,
                          f"its arguments: {', '.join(names) or 'none'}")
    for spec, arg in zip(layer.args, positional):
        given[spec.name] = arg
    for arg in keyword:
        if arg.key not in names:
            raise NetDslError(f"unknown argument `{arg.key}` of {kind}{did_you_mean(arg.key, names)}", arg.pos,
                              f"{kind} takes: {', '.join(names) or 'no arguments'}")
        if arg.key in given:
            raise NetDslError(f"argument `{arg.key}` of {kind} is given twice", arg.pos)
        given[arg.key] = arg
    defaults = g.graph["defaults"].get(kind, {})
    values = {}
    for spec in layer.args:
        # `--set LAYER.ARG` first, then the call's own, then `defaults`.
        source = overrides.get(spec.name) or given.get(spec.name) or defaults.get(spec.name)
        if source is None:
            if spec.required:
                raise NetDslError(f"missing required argument `{spec.name}` of {kind}", call.pos,
                                  f"{kind}({', '.join(names)}): {spec.doc or spec.name}")
            values[spec.name] = spec.default
            continue
        written = shape_refs.evaluate(source.value, params, read)
        value = coerce(f"`{spec.name}` of {kind}", spec.type, written, params)
        complaint = spec.check(value) if spec.check and value is not None else None
        if complaint:
            given_set = from_command_line(source.value, params)
            if given_set is None:
                raise NetDslError(f"`{spec.name}` of {kind} {complaint}", written.pos,
                                  f"{kind}({spec.name}=...): {spec.doc}" if spec.doc else None)
            option = given_set.pos.file.strip("<>")
            raise NetDslError(f"`{spec.name}` of {kind} {complaint}, but {option} gives {show(given_set)}",
                              given_set.pos, f"the file's value is replaced by `{option}`; give it a value that "
                              f"fits").note(f"`{spec.name}` of {kind} reads `{source.value.name}` here",
                                            source.value.pos)
        values[spec.name] = value
    for key, setting in defaults.items():
        if key not in names:
            raise NetDslError(f"unknown argument `{key}` of {kind}{did_you_mean(key, names)}", setting.pos,
                              f"{kind} takes: {', '.join(names) or 'no arguments'}")
    complaint = layer.check_args(values)
    if complaint:
        message, hint = complaint if isinstance(complaint, tuple) else (complaint, None)
        raise NetDslError(f"{kind}: {message}", call.pos, hint)
    return values


def _add_helper_layer(g: nx.DiGraph, consumer: str, part: str, kind: str, pos, **extra) -> str:
    """A layer the pass inserts before `consumer`, named `statement.part` (then part2,
    part3, ...), in its statement, tower and device."""
    attrs = g.nodes[consumer]
    base = f"{attrs.stmt}.{part}" + (f"@{attrs.device}" if attrs.tower else "")
    name, i = base, 1
    while name in g:
        i += 1
        name = base.replace(f".{part}", f".{part}{i}")
    g.add_node(name, role=Role.LAYER, kind=kind, stmt=attrs.stmt, tower=attrs.tower, device=attrs.device,
               placed=attrs.placed, pos=pos, order=attrs.order.beside(Part.BEFORE), head=True, uses=attrs.uses,
               **extra)
    return name


def _concat(g: nx.DiGraph, consumer: str, sources: list[tuple[str, bool]], pos) -> str:
    name = _add_helper_layer(g, consumer, "cat", "concat", pos)
    for slot, (src, marked) in enumerate(sources):
        g.add_edge(src, name, slot=slot, marked=marked)
    return name


def resolve_names(g: nx.DiGraph) -> nx.DiGraph:
    params = g.graph["params"]
    layers = sorted((n for n, d in g.nodes(data=True) if d.call is not None), key=lambda n: g.nodes[n].order)
    for name in layers:
        with noted(g.nodes[name]):
            _resolve(g, name, params)
    return g


def _resolve(g: nx.DiGraph, name: str, params) -> None:
    node = g.nodes[name]
    call: ast.LayerCall = node.call
    node.call = None
    kind = _kind(call, params)
    layer = REGISTRY[kind]
    inputs: list[tuple[list[str], bool]] = [([u], False) for u in g.predecessors(name)]
    args = list(call.args)
    wanted = layer.n_inputs
    while args and args[0].key is None and _is_tensor_ref(args[0].value, params) and \
            (wanted is None or wanted == 1 or len(inputs) < wanted):
        ref = args.pop(0).value
        inputs.append((_lookup(g, ref, node), isinstance(ref, ast.AllRef)))
    if not inputs:
        raise NetDslError(f"{kind} needs an input", call.pos,
                          f"name the tensor it reads first, as in {kind}(image, ...), or chain it: x -> {kind}")
    positional = [a for a in args if a.key is None]
    keyword = [a for a in args if a.key is not None]
    if keyword and positional and args.index(positional[-1]) > args.index(keyword[0]):
        raise NetDslError("a positional argument follows a keyword argument", positional[-1].pos)
    node.kind, node.args = kind, _arguments(layer, kind, positional, keyword, g, call, node.overrides,
                                            _shape_reader(g, node))
    sources = _gather(g, name, layer, inputs, call.pos)
    for u in list(g.predecessors(name)):
        g.remove_edge(u, name)
    for slot, (src, marked) in enumerate(sources):
        g.add_edge(src, name, slot=slot, marked=marked)


def _copy(g: nx.DiGraph, consumer: str, source: str, pos) -> str:
    """An identity node reading `source`, for a layer that reads it again (`concat(p, p)`):
    the graph holds one edge per pair of nodes, so a second edge from the same tensor would
    vanish. Through the copy, backward sums the two reads' gradients as for any tensor read
    by two layers, as PyTorch's autograd does for `torch.cat([p, p])`."""
    name = _add_helper_layer(g, consumer, "again", "identity", pos, args={})
    g.add_edge(source, name, slot=0, marked=False)
    return name


def _gather(g, name, layer, inputs, pos) -> list[tuple[str, bool]]:
    """One (source, marked) per input slot, concatenating where a slot receives several and
    reading a tensor read before in this layer through a copy."""
    seen: set[str] = set()
    for group, _ in inputs:
        for i, src in enumerate(group):
            if src in seen and "loss" in layer.traits:
                raise NetDslError(f"{layer.kind} reads `{src}` twice", pos,
                                  f"a loss reads the scores, then the label: {layer.kind}(scores, label)")
            if src in seen:
                group[i] = _copy(g, name, src, pos)
            seen.add(group[i])
    if layer.n_inputs is None:
        return [(src, marked) for group, marked in inputs for src in group]
    if layer.n_inputs == 1:
        flat = [(src, marked) for group, marked in inputs for src in group]
        return flat if len(flat) == 1 else [(_concat(g, name, flat, pos), False)]
    if len(inputs) != layer.n_inputs:
        names = ", ".join("abcdefgh"[:layer.n_inputs])
        raise NetDslError(f"{layer.kind} takes {layer.n_inputs} inputs, got {len(inputs)}", pos,
                          f"name each: `y = {layer.kind}({names})`, or in a chain `a -> {layer.kind}({names[3:]})`")
    return [(group[0], marked) if len(group) == 1 else (_concat(g, name, [(s, marked) for s in group], pos), False)
            for group, marked in inputs]
