"""AST -> networkx graph: one node per layer of every chain, before any pass.

This step only records what each statement says: its chain of layer calls
(unresolved), the tower or device it belongs to and where it was written.
The passes then expand towers, resolve names, infer shapes and place devices.
It also gathers the file-wide tables (params, defaults, the train block) and
applies `--set` overrides, so every pass sees the values the user asked for.
"""
from __future__ import annotations

import re

from . import ast, blocks, input_sizes
from .block_use_paths import in_one_use
from .errors import NetDslError, Pos, did_you_mean
from .layers import REGISTRY
from .nodes import NetGraph, Node, Order, Phase, Role
from .parse import parse_text
from .train import spec as train_spec
from .train.requirements import check_inputs
from .values import coerce, substitute

# The grammar's keywords. `x` (in `3 x 32 x 32`) lexes as a name wherever a
# name is allowed, so defining one is refused here rather than by the parser.
RESERVED = ("network", "input", "param", "defaults", "tower", "block", "on", "all", "train", "x")

DEVICE = re.compile(r"gpu\d+\Z")


def check_device(name: ast.Name) -> str:
    if not DEVICE.match(name.name):
        raise NetDslError(f"unknown device `{name.name}`", name.pos,
                          "devices are logical, named gpu0, gpu1, ...; `--devices` maps them onto GPUs or the CPU at run time")
    return name.name


class _Builder:
    def __init__(self, program: ast.Program):
        self.g = NetGraph(file=program.file, network=None, params={}, defaults={}, tensors={})
        self.train: dict[str, ast.Setting] = {}
        self.blocks: dict[str, ast.BlockDecl] = {}
        self.defined: dict[str, Pos] = {}
        self.order = 0

    def gather(self, program: ast.Program) -> None:
        """Params, blocks and train settings first: a block may be used above its
        definition, and `--set` reaches a repetition count before it expands."""
        for s in program.statements:
            if isinstance(s, ast.ParamDecl):
                self.g.graph["params"][s.name] = s.value
            elif isinstance(s, ast.BlockDecl):
                blocks.check_block(s, REGISTRY, RESERVED)
                self.blocks.setdefault(s.name, s)
            elif isinstance(s, ast.TrainDecl):
                for setting in s.settings:
                    self.train[setting.key] = setting

    def _define(self, name: str, pos: Pos, what: str) -> None:
        if name in RESERVED:
            raise NetDslError(f"`{name}` is a reserved word and cannot name a {what}", pos,
                              f"reserved words: {' '.join(RESERVED)}")
        if name in self.defined:
            first = self.defined[name]
            raise NetDslError(f"duplicate name `{name}`", pos,
                              f"`{name}` is already defined at line {first.line}, column {first.column}; pick another {what} name")
        self.defined[name] = pos

    def _class_count(self, s: ast.InputDecl) -> int:
        """A label input's size: a number, a param's value, or (`auto`) the param `classes`,
        which `netdsl train` sets from the data (the file's value serves info and compile)."""
        if isinstance(s.classes, int):
            return s.classes
        name = "classes" if s.classes == "auto" else s.classes
        if s.classes == "auto":
            self.g.graph["classes_from_data"] = True
        params = self.g.graph["params"]
        if name not in params:
            raise NetDslError(f"`input {s.name} : {s.classes}` needs a `param {name}`", s.pos,
                              f"declare `param {name} = 1000` (the count where no data sizes it) and write "
                              f"the output layer's width as `{name}`, e.g. fc(x, {name})")
        count = coerce(f"the class count `{name}`", "int", params[name], params)
        if count < 1:
            raise NetDslError(f"the class count `{name}` must be a positive whole number, not {count}",
                              substitute(params[name], params).pos)
        return count

    def _add(self, name: str, **attrs) -> None:
        self.g.add_node(name, order=Order(Phase.FORWARD, self.order), **attrs)
        self.order += 1

    def statement(self, s) -> None:
        if isinstance(s, ast.NetworkDecl):
            if self.g.graph["network"] is not None:
                raise NetDslError("the network is already named", s.pos, "a file holds one `network` statement")
            self.g.graph["network"] = s.name
        elif isinstance(s, ast.InputDecl):
            self._define(s.name, s.pos, "input")
            params = self.g.graph["params"]
            shape = input_sizes.evaluate(s, params) if s.shape is not None else (self._class_count(s),)
            self._add(s.name, role=Role.INPUT, kind="input", label=s.shape is None, shape=shape,
                      device="host", pos=s.pos, stmt=s.name, tower=None)
            self.g.graph["tensors"][s.name] = {"nodes": {None: s.name}, "tower": None, "pos": s.pos, "order": self.order}
        elif isinstance(s, ast.ParamDecl):
            self._define(s.name, s.pos, "param")  # its value was gathered first
        elif isinstance(s, ast.BlockDecl):
            self._define(s.name, s.pos, "block")
        elif isinstance(s, ast.DefaultsDecl):
            for kind in s.kinds:
                if kind.name not in REGISTRY:
                    raise NetDslError(f"unknown layer kind `{kind.name}`{did_you_mean(kind.name, REGISTRY)}", kind.pos,
                                      f"known kinds: {', '.join(sorted(REGISTRY))}")
                table = self.g.graph["defaults"].setdefault(kind.name, {})
                for setting in s.settings:
                    table[setting.key] = setting
        elif isinstance(s, ast.TowerDecl):
            devices = tuple(check_device(d) for d in s.devices)
            if len(set(devices)) != len(devices):
                raise NetDslError("a tower lists the same device twice", s.devices[0].pos)
            for inner in s.body:
                self.layer_statement(inner, devices)
        elif isinstance(s, ast.LayerStmt):
            self.layer_statement(s, None)

    def layer_statement(self, s: ast.LayerStmt, tower: tuple[str, ...] | None, prefix: str = "",
                        scope: blocks.Scope | None = None, uses: tuple = (), placed: str | None = None) -> None:
        """One statement's layers; inside a block use, `prefix` is the use's name and dot,
        `scope` what the block's names mean there, `uses` the (block, position) chain."""
        stmt = prefix + s.name
        self._define(stmt, s.pos, "layer")
        if tower is not None and s.device is not None:
            raise NetDslError("a statement inside a tower cannot choose its own device", s.device.pos,
                              "the tower's `on` list places every statement; move this one out of the tower")
        device = check_device(s.device) if s.device is not None else placed
        links = self._links(s, scope)
        if not links:
            self._pass_through(s, stmt, scope, tower)
            return
        seen: dict[str, int] = {}
        previous = None
        for word, call in links:
            seen[word] = seen.get(word, 0) + 1
            if len(links) == 1:
                name = stmt
            else:
                name = f"{stmt}.{word}" + (str(seen[word]) if seen[word] > 1 else "")
            block = self._block_of(call)
            if block is not None:
                previous = self._use(block, call, name, previous, tower, device, uses)
                continue
            self._add(name, role=Role.LAYER, call=call, head=previous is None, stmt=stmt, tower=tower,
                      placed=device, pos=call.pos, uses=uses)
            if previous is not None:
                self.g.add_edge(previous, name, slot=0)
            previous = name
        self.g.graph["tensors"][stmt] = {"nodes": {None: previous}, "tower": tower, "pos": s.pos, "order": self.order}

    def _links(self, s: ast.LayerStmt, scope) -> list[tuple[str, ast.LayerCall]]:
        """(written kind, call) per layer or block use, `call * N` written out N times."""
        links = []
        for call in s.chain:
            word = call.kind.name  # names follow the text, so `--set act=tanh` keeps them
            if scope is not None:
                call = blocks.rewrite_call(call, scope)
            count = 1
            if call.repeat is not None:
                count = coerce("a repetition count (`* N`)", "int", call.repeat, self.g.graph["params"])
                if count < 0:
                    raise NetDslError(f"a repetition count must be 0 or more, not {count}",
                                      substitute(call.repeat, self.g.graph["params"]).pos)
            links += [(word, call)] * min(count, 1) + [(word, _chained(call, self.g.graph["params"]))] * (count - 1)
        return links

    def _pass_through(self, s: ast.LayerStmt, stmt: str, scope, tower) -> None:
        """Every call of `s` used 0 times (`--set n=0` switching a block or layer off): the
        statement names its input tensor unchanged, so the layers after it read that
        tensor and their shapes follow from it (an `fc` after it gets the input's size)."""
        first = blocks.rewrite_call(s.chain[0], scope) if scope is not None else s.chain[0]
        params = self.g.graph["params"]
        refs = []
        for arg in first.args:
            if arg.key is not None or not blocks.is_tensor_ref(arg.value, params):
                break
            refs.append(arg.value)
        what = "its only call" if len(s.chain) == 1 else f"each of its {len(s.chain)} calls"
        if len(refs) != 1 or isinstance(refs[0], ast.AllRef):
            reads = "no tensor" if not refs else f"{len(refs)} tensors" if len(refs) > 1 else "`all` copies"
            raise NetDslError(f"`{s.name}` repeats {what} 0 times, so it passes its input through, but its first "
                              f"call reads {reads}", s.pos,
                              "a statement switched off by `* 0` must read exactly one tensor, which it passes on "
                              "unchanged; keep one call at least once")
        entry = self.g.graph["tensors"].get(refs[0].name)
        if entry is None:
            known = list(self.g.graph["tensors"]) + list(params)
            raise NetDslError(f"undefined name `{refs[0].name}`{did_you_mean(refs[0].name, known)}", refs[0].pos,
                              "a layer reads an input or a statement defined above it")
        if entry["tower"] != tower and entry["tower"] is not None:
            raise NetDslError(f"`{s.name}` passes `{refs[0].name}` through from another tower's devices",
                              refs[0].pos, "keep the statement's call at least once, or define it in that tower")
        self.g.graph["tensors"][stmt] = {**entry, "nodes": dict(entry["nodes"]), "pos": s.pos, "order": self.order}

    def _block_of(self, call: ast.LayerCall) -> ast.BlockDecl | None:
        value = substitute(call.kind, self.g.graph["params"])
        return self.blocks.get(value.name) if isinstance(value, ast.Name) else None

    def _use(self, block: ast.BlockDecl, call: ast.LayerCall, name: str, previous: str | None,
             tower, device, uses) -> str:
        """Expand one use of `block` named `name`; returns its output node."""
        if any(b == block.name for b, _ in uses):
            raise NetDslError(f"block `{block.name}` uses itself", call.pos,
                              "a block cannot contain itself; write the repetition as `call * N` instead")
        scope = blocks.bind(block, call, f"{name}.", previous is not None, self.g.graph["params"])
        if previous is not None:
            # The chain so far, under a name no user can write (it holds a dot).
            source = f"{name}.{block.params[0].name}"
            self.g.graph["tensors"][source] = {"nodes": {None: previous}, "tower": tower, "pos": call.pos,
                                               "order": self.order}
            scope.values[block.params[0].name] = ast.Name(source, call.pos)
        inner = uses + ((block.name, call.pos),)
        try:
            for statement in block.body:
                self.layer_statement(statement, tower, f"{name}.", scope, inner, device)
        except NetDslError as err:
            raise err.note(f"in block `{block.name}` used here", call.pos) from None
        return self.g.graph["tensors"][f"{name}.{block.body[-1].name}"]["nodes"][None]

    def apply_overrides(self, overrides: dict[str, str]) -> dict[str, ast.Value]:
        """Params and train settings, before the statements (a param may be a `* N` count);
        returns the rest, layer arguments, for `apply_layer_overrides` once the layers exist."""
        params, rest = self.g.graph["params"], {}
        for key, text in overrides.items():
            value = parse_text(text, f"<--set {key}>", start="set_value")
            if key in params:
                params[key] = value
            elif not train_spec.with_override(self.train, key, value):
                rest[key] = value
        return rest

    def apply_layer_overrides(self, overrides: dict[str, ast.Value]) -> None:
        """`--set LAYER.ARG=value`, LAYER as `netdsl info` prints it less `@device` (every
        tower copy follows), a block's layers by their full name (`layer1.basic.c1.conv`:
        one use), `BLOCK.LAYER` as named inside the block (`basic.c1.conv`: every use), or
        `BLOCK[N].LAYER` (`basic[2].c1.conv`: the N-th use, block_use_paths.py).
        The value wins over the call's own and `defaults`."""
        layers = {n: d for n, d in self.g.nodes(data=True) if d.is_layer}
        for key, value in overrides.items():
            name, _, arg = key.rpartition(".")
            if name in layers:
                kind, names = self._arg_names(layers[name])
                if names is not None and arg not in names:
                    raise NetDslError(f"--set: {name} ({kind}) has no argument `{arg}`{did_you_mean(arg, names)}",
                                      hint=f"{kind} takes: {', '.join(names) or 'no arguments'}")
                layers[name].overrides[arg] = ast.Arg(arg, value, value.pos)
                continue
            every = self._in_every_use(name, layers)
            every, where = (every, f"in every use of block `{name.split('.')[0]}`") if every else \
                in_one_use(name, layers, self.blocks) or ([], "")
            if every:
                for layer in every:
                    kind, names = self._arg_names(layers[layer])
                    if names is not None and arg not in names:
                        raise NetDslError(f"--set: {name} ({kind}, {where}) "
                                          f"has no argument `{arg}`{did_you_mean(arg, names)}",
                                          hint=f"{kind} takes: {', '.join(names) or 'no arguments'}")
                    layers[layer].overrides[arg] = ast.Arg(arg, value, value.pos)
                continue
            block = name.split(".")[0]
            if block in self.blocks:
                inner = self._block_layers(block, layers)
                wrong = name[len(block) + 1:]
                raise NetDslError(f"--set: block `{block}` has no layer `{wrong}`{did_you_mean(wrong, inner)}"
                                  if wrong else f"--set: `{block}` is a block, not a layer",
                                  hint=f"its layers, as named inside it (`--set {block}.LAYER.ARGUMENT` sets one in "
                                       f"every use): {', '.join(inner) or 'none used in this network'}")
            inside = [f"{n}.{arg}" for n, d in layers.items()
                      if d.stmt == name and arg in (self._arg_names(d)[1] or ())]
            if inside:
                raise NetDslError(f"--set: `{name}` is a statement of several layers, not one layer",
                                  hint=f"name the layer: {', '.join(inside)}")
            known = sorted(self.g.graph["params"]) + train_spec.settable(self.train)
            every = known + [f"{n}.{a}" for n, d in layers.items() for a in self._arg_names(d)[1] or ()]
            raise NetDslError(f"--set: unknown name `{key}`{did_you_mean(key, every)}",
                              hint=f"names --set accepts here: {', '.join(known)}; and LAYER.ARGUMENT for "
                                   f"these layers (as `netdsl info` names them, without @device): "
                                   f"{', '.join(layers)}" + (f"; or BLOCK.LAYER.ARGUMENT, the layer named as "
                                   f"inside the block, for every use of {', '.join(sorted(self.blocks))}"
                                   if self.blocks else ""))

    def _in_every_use(self, path: str, layers: dict[str, Node]) -> list[str]:
        """`BLOCK.LAYER` (`basic.c1.conv`): that layer in every use of the block, the
        layer named as inside the block's body, wherever and however deep it is used."""
        block, _, inner = path.partition(".")
        if block not in self.blocks or not inner:
            return []
        return [n for n, d in layers.items()
                if d.uses and d.uses[-1][0] == block and n[len(d.stmt.rpartition(".")[0]) + 1:] == inner]

    @staticmethod
    def _block_layers(block: str, layers: dict[str, Node]) -> list[str]:
        """The layers written in `block`'s body, named as inside it: a layer's statement
        is `USE.STATEMENT`, so what follows the use's name is the same in every use."""
        return sorted({n[len(d.stmt.rpartition(".")[0]) + 1:] for n, d in layers.items()
                       if d.uses and d.uses[-1][0] == block})

    def _arg_names(self, node: Node) -> tuple[str, list[str] | None]:
        """A layer node's kind and argument names (None: not a known kind, resolve_names says so)."""
        kind = substitute(node.call.kind, self.g.graph["params"])
        layer = REGISTRY.get(kind.name) if isinstance(kind, ast.Name) else None
        return (kind.name if layer else "?"), ([spec.name for spec in layer.args] if layer else None)


def _chained(call: ast.LayerCall, params) -> ast.LayerCall:
    """A repeated call after its first copy: it reads the copy before it, so the
    tensors the call names (leading positional arguments) belong to the first only."""
    args = list(call.args)
    while args and args[0].key is None and blocks.is_tensor_ref(args[0].value, params):
        args.pop(0)
    return ast.LayerCall(call.kind, tuple(args), call.pos, call.repeat)


def default_name(file: str) -> str:
    """The network's name when the file has no `network` statement: the file's name, made a
    plain word, since `compile` and `train` put it in a path (`...net` must not give `..`)."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", file.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".net"))
    return stem if re.search(r"[A-Za-z0-9]", stem) else "network"


def build(program: ast.Program, overrides: dict[str, str] | None = None) -> NetGraph:
    b = _Builder(program)
    b.gather(program)
    layer_overrides = b.apply_overrides(overrides or {})
    for statement in program.statements:
        b.statement(statement)
    b.apply_layer_overrides(layer_overrides)
    if b.g.graph["network"] is None:
        b.g.graph["network"] = default_name(program.file)
    b.g.graph["train"] = train_spec.validate(b.train, b.g.graph["params"])
    check_inputs(b.g, b.train)
    if not any(d.is_layer for _, d in b.g.nodes(data=True)):
        raise NetDslError("the file defines no layers", Pos(program.file, 1, 1),
                          "add a statement such as `conv1 = conv(image, 32, size=3)`")
    return b.g
