"""Repeated structure of an imported network written as blocks.

The importer first has one Row per layer, in the ONNX graph's (topological)
order. A cut is a place in that order where exactly one tensor is live: the
output of the layer just before it, which nothing before it reads and
everything after it may. Between two cuts lies a region with one input
tensor and one output tensor: a residual unit with its shortcut and add, an
inverted residual, an inception module with its concat, a unit with a
squeeze-and-excitation branch inside it. A plain chain has a cut after every
layer, so its regions are single layers.

Regions of two or more layers whose kinds, wiring and arguments agree are
one block, used once per region, when there are at least two of them. The
arguments a use may vary are the ones SLOTS names (a conv's filters, stride
and groups, an fc's outputs), and only as whole numbers; every other
argument must be written alike. Slots whose values agree in every use are
written into the block; slots that vary together in every use (a conv's
filters and the next conv's, a depthwise conv's filters and groups) share
one parameter.

Nothing is guessed: a region that matches no other, a single layer, or a
chain of regions (VGG's conv-relu pairs, an inverted residual without its
shortcut) stays flat. The layers inside a use are named `USE.INNER` by
netdsl, so their checkpoint keys are renamed to match (`renamed`). Uses in
a row, each reading the one before with the same arguments, are one stack
`STMT = block(x, ...) * N`, whose layers netdsl names `STMT.block.INNER`,
`STMT.block2.INNER`, ... convert() builds the written file and checks that
its parameters are the checkpoint's, name for name and shape for shape; a
file that fails is written without stacks, then flat.

Layers the output does not need (GoogLeNet's side classifiers) are left out
of the cuts and stay flat where they are; a region whose inner tensors they
read is not gathered, nor stacked past an output they read.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

# kind -> the arguments a use may vary: (key, default when omitted); key None is the first positional argument
SLOTS = {"conv": ((None, None), ("stride", 1), ("groups", 1)), "fc": ((None, None),)}
SLOT_PARAM = {None: "width", "stride": "stride", "groups": "groups"}


@dataclass
class Row:
    """One imported layer: its .net name, kind, inputs (.net names), argument texts and weights."""
    name: str
    kind: str
    sources: list[str]
    args: list[str]
    params: dict[str, np.ndarray] = field(default_factory=dict)
    state: dict[str, np.ndarray] = field(default_factory=dict)
    raw: str = ""   # the ONNX node's name, whose path names a block's use and its layers

    def text(self, name: str | None = None, sources: list[str] | None = None, args: list[str] | None = None) -> str:
        call = ", ".join((self.sources if sources is None else sources) + (self.args if args is None else args))
        return f"{name or self.name} = {self.kind}({call})"


@dataclass
class Gathered:
    """The file's statements with blocks: definitions, then (top-level name, text, graph node of its shape)."""
    blocks: list[str]
    statements: list[tuple[str, str, str]]
    renamed: dict[str, str]   # flat layer name -> its name inside a block use (`use.inner`)
    refs: dict[str, str]      # flat name of a use's output -> the use's name


def _slots(row: Row):
    """(signature of the arguments with the slots masked, slot keys, slot values, argument index of each or None)."""
    literal = list(row.args)
    keys, values, where = [], [], []
    for key, default in SLOTS.get(row.kind, ()):
        if key is None:
            index = 0 if row.args and "=" not in row.args[0] else None
            value = row.args[0] if index is not None else None
        else:
            index = next((i for i, a in enumerate(row.args) if a.startswith(f"{key}=")), None)
            value = str(default) if index is None else row.args[index].partition("=")[2]
        if value is None or not re.fullmatch(r"\d+", value):
            continue  # not a whole number ([2, 1], a missing filter count): it stays in the signature
        keys.append(key)
        values.append(int(value))
        where.append(index)
        if index is not None:
            literal[index] = None
    return tuple(a for a in literal if a is not None), tuple(keys), values, where


def _regions(rows: list[Row], output: str) -> list[tuple[int, int, str]]:
    """(first, last, input tensor) of each region between two cuts, in order."""
    last_read = {}
    for i, row in enumerate(rows):
        for s in row.sources:
            last_read[s] = i
    last_read[output] = len(rows)
    live, regions, start, entry = {"image"}, [], 0, "image"
    for i, row in enumerate(rows):
        live -= {s for s in row.sources if last_read[s] == i}
        if last_read.get(row.name, -1) > i:
            live.add(row.name)
        if live == {row.name}:
            regions.append((start, i, entry))
            start, entry = i + 1, row.name
    return regions


def _signature(rows: list[Row], entry: str):
    index = {row.name: i for i, row in enumerate(rows)}
    return tuple((row.kind, tuple("in" if s == entry else index[s] for s in row.sources), *_slots(row)[:2])
                 for row in rows)


OP_WORD = re.compile(r"[A-Z][A-Za-z]*(_\d+)?")


def _common(lists: list[list[str]]) -> list[str]:
    """The words every list starts with."""
    common = []
    for group in zip(*lists):
        if len(set(group)) != 1:
            break
        common.append(group[0])
    return common


def _paths(members: list[Row]) -> tuple[list[str], list[str]]:
    """(the words of the ONNX node names every layer of a region starts with, each layer's own
    words): `/layer1/layer1.0/conv1/Conv` -> layer1, layer1, 0 and conv1; `s1.basic.c1.conv:Conv`
    -> s1, basic and c1_conv. An op word ends a name (dropped, or lowercased where it is all)."""
    words = [[w for w in re.split(r"[/.:]", r.raw) if w] for r in members]
    common = _common(words)[:max(min(len(w) for w in words) - 1, 0)]  # every layer keeps a word of its own
    tails = []
    for w, r in zip(words, members):
        tail = w[len(common):]
        if len(tail) > 1 and OP_WORD.fullmatch(tail[-1]):
            tail = tail[:-1]
        tails.append("_".join(tail).lower() if len(tail) == 1 and OP_WORD.fullmatch(tail[0]) else
                     "_".join(tail) or r.kind)
    return common, tails


def gather(rows: list[Row], output: str, kinds, stacks: bool = True) -> Gathered | None:
    """The rows with repeated regions as block uses, or None when nothing repeats. Layers the
    output does not need (GoogLeNet's side classifiers) stay flat where they are, and a region
    whose inner tensors they read is not gathered."""
    from .onnx_import import Names
    needed = {output}
    for row in reversed(rows):
        if row.name in needed:
            needed |= set(row.sources)
    main = [row for row in rows if row.name in needed]
    side_reads = {s for row in rows if row.name not in needed for s in row.sources}
    regions = [(main[a:b + 1], entry) for a, b, entry in _regions(main, output)]
    found: dict = {}
    for i, (members, entry) in enumerate(regions):
        if len(members) >= 2 and not side_reads & {r.name for r in members[:-1]}:
            found.setdefault(_signature(members, entry), []).append(i)
    regions = _extended(regions, [g for g in found.values() if len(g) >= 2], side_reads)
    groups: dict = {}
    for members, entry in regions:
        if len(members) >= 2 and not side_reads & {r.name for r in members[:-1]}:
            groups.setdefault(_signature(members, entry), []).append(members[0].name)
    firsts = {first: sig for sig, found in groups.items() if len(found) >= 2 for first in found}
    if not firsts:
        return None
    top = Names()
    top.used |= {row.name for row in rows} - {r.name for m, _ in regions if m[0].name in firsts for r in m}
    top.used |= set(kinds)
    blocks, block_of = [], {}  # signature -> (name, inner names, parameter of each slot, text)
    for sig in dict.fromkeys(firsts[m[0].name] for m, _ in regions if m[0].name in firsts):
        instances = [(m, e) for m, e in regions if m[0].name in groups[sig]]
        block_of[sig] = _define(instances, top)
        blocks.append(block_of[sig][3])
    region_ending = {m[-1].name: (m, e) for m, e in regions if m[0].name in firsts}
    gathered = {r.name for m, _ in region_ending.values() for r in m}
    items: list = []  # flat Rows, and runs of uses of one block with one set of arguments: [block, args, uses]
    for row in rows:  # in the file's order; a use where its region's last layer was
        if row.name not in gathered:
            items.append(row)
            continue
        if row.name not in region_ending:
            continue
        members, entry = region_ending[row.name]
        name, inner, params, _ = block_of[firsts[members[0].name]]
        values = [v for r in members for v in _slots(r)[2]]
        args = [str(values[params.index(p)]) for p in dict.fromkeys(p for p in params if p is not None)]
        path = _paths(members)[0]
        use = (top.new("_".join(path) or name), path, members, entry)
        last = items[-1] if items else None
        # a use reading the one before it, alike: a stack `* N`, unless a side layer reads the one before
        # (a block name ending in a digit would blur the names inside the stack)
        if (stacks and isinstance(last, list) and last[:2] == [name, args] and not name[-1].isdigit()
                and entry == last[2][-1][2][-1].name and entry not in side_reads):
            last[2].append(use)
        else:
            items.append([name, args, [use]])
    return _statements(items, blocks, {sig[0]: sig[1] for sig in block_of.values()}, top)


def _statements(items, blocks, inner_of, top) -> Gathered:
    statements, renamed, refs = [], {}, {}
    ref = lambda t: refs.get(t, t)  # noqa: E731 - a use's output goes by its statement's name
    for item in items:
        if isinstance(item, Row):
            statements.append((item.name, item.text(sources=[ref(s) for s in item.sources]), item.name))
            continue
        name, args, uses = item
        inner = inner_of[name]
        call = f"{name}({', '.join([ref(uses[0][3])] + args)})"
        if len(uses) == 1:
            stmt, prefixes = uses[0][0], [uses[0][0]]
        else:  # named as the stack's uses are named inside it: STMT.block, STMT.block2, ...
            common = _common([u[1] for u in uses])
            stmt = top.new("_".join(common)) if common else uses[0][0]
            prefixes = [f"{stmt}.{name}{k + 1 if k else ''}" for k in range(len(uses))]
            call += f" * {len(uses)}"
        statements.append((stmt, f"{stmt} = {call}", f"{prefixes[-1]}.{inner[-1]}"))
        for prefix, (_, _, members, _) in zip(prefixes, uses):
            renamed |= {r.name: f"{prefix}.{n}" for r, n in zip(members, inner)}
        refs[uses[-1][2][-1].name] = stmt
    return Gathered(blocks, statements, renamed, refs)


def _extended(regions, groups: list[list[int]], side_reads: set[str]):
    """The regions with each group's instances grown by the single layers after them (the relu
    after a residual unit's add), one at a time while the layer after every instance is alike."""
    regions = [(list(members), entry) for members, entry in regions]
    taken = {i for group in groups for i in group}
    absorbed: set[int] = set()
    for group in groups:
        ends = list(group)  # the last region each instance has absorbed so far
        while True:
            after = [j + 1 for j in ends]
            if any(j >= len(regions) or j in taken or j in absorbed or len(regions[j][0]) != 1 for j in after):
                break
            rows = [regions[j][0][0] for j in after]
            exits = [regions[i][0][-1].name for i in group]
            if side_reads & set(exits):  # an exit a side layer reads stays an exit
                break
            if len({(r.kind, _slots(r)[:2]) for r in rows}) != 1 or any(
                    set(r.sources) != {e} for r, e in zip(rows, exits)) or len({len(r.sources) for r in rows}) != 1:
                break
            for i, j in zip(group, after):
                regions[i][0].append(regions[j][0][0])
                absorbed.add(j)
            ends = after
    return [region for j, region in enumerate(regions) if j not in absorbed]


def _define(instances, top):
    """(block name, inner layer names, the parameter each slot reads or None, definition text)."""
    from .onnx_import import Names
    members, entry = instances[0]
    _, tails = _paths(members)
    # named as the module is where at least two uses' paths end in it (basic, basic2, ...; inception)
    stems = Counter(re.sub(r"\d+$", "", words[-1]) for words in (_paths(m)[0] for m, _ in instances) if words)
    stem = next((w for w, n in stems.most_common() if n >= 2 and re.fullmatch(r"[A-Za-z]\w*", w)), "unit")
    name = top.new(stem)
    inner_names = Names()
    inner = [inner_names.new(tail) for tail in tails]
    own_name = {r.name: n for r, n in zip(members, inner)}
    table = [[v for r in m for v in _slots(r)[2]] for m, _ in instances]  # instance x slot
    keys = [k for r in members for k in _slots(r)[1]]
    params, by_values = [], {}
    for slot, key in enumerate(keys):
        column = tuple(row[slot] for row in table)
        if len(set(column)) == 1:
            params.append(None)  # the same in every use: written in the block
            continue
        if column not in by_values:
            by_values[column] = inner_names.new(SLOT_PARAM[key])
        params.append(by_values[column])
    arg = inner_names.new("a")
    lines, slot = [], 0
    for r, own in zip(members, inner):
        args = list(r.args)
        _, row_keys, _, where = _slots(r)
        for key, index in zip(row_keys, where):
            p = params[slot]
            slot += 1
            if p is None:
                continue
            if key is None:
                args[index] = p
            elif index is None:
                args.append(f"{key}={p}")
            else:
                args[index] = f"{key}={p}"
        sources = [arg if s == entry else own_name[s] for s in r.sources]
        lines.append("  " + r.text(own, sources, args))
    header = ", ".join([arg] + list(dict.fromkeys(p for p in params if p is not None)))
    text = "\n".join([f"block {name}({header}) {{   # used {len(instances)} times"] + lines + ["}"])
    return name, inner, params, text
