"""`--set BLOCK[N].LAYER.ARG`: a layer inside one use of a block, the use by its position.

A block's uses are numbered from 1 in the order the network expands them, which is file
order: the statements top to bottom, `call * N` as N uses in a row, and a use inside
another block's body once per use of that block (at the place that block is used). So
`basic[2].c1.batchnorm.eps` is the second `basic` of the file without knowing that its
layers are named `layer1.basic2.c1.batchnorm`; the other uses are left as written.
"""
from __future__ import annotations

import re

from .errors import NetDslError, did_you_mean

USE_PATH = re.compile(r"(?P<block>[A-Za-z_][A-Za-z0-9_]*)\[(?P<index>[^\]]*)\]\.(?P<inner>.+)")


def in_one_use(path: str, layers: dict, blocks: dict) -> tuple[list[str], str] | None:
    """(the layers `BLOCK[N].LAYER` names, a phrase for messages), or None when `path` is not
    of that form. A block that does not exist, a position that is not one of its uses, and a
    layer the block does not have are errors."""
    m = USE_PATH.fullmatch(path)
    if m is None:
        return None
    block, index, inner = m.group("block", "index", "inner")
    if block not in blocks:
        raise NetDslError(f"--set: `{block}[{index}]`: there is no block `{block}`{did_you_mean(block, blocks)}",
                          hint=f"BLOCK[N] names the N-th use of a block; blocks here: "
                               f"{', '.join(sorted(blocks)) or 'none'}")
    uses = _uses(block, layers)
    if not re.fullmatch(r"[0-9]+", index.strip()) or not 1 <= int(index) <= len(uses):
        times = f"{len(uses)} time{'s' * (len(uses) != 1)}"
        err = NetDslError(f"--set: block `{block}` is used {times}; `{block}[{index}]` is not one of its uses",
                          blocks[block].pos,
                          hint=f"uses are numbered from 1 to {len(uses)} in file order: " +
                               ", ".join(f"{block}[{i}] is {prefix}" for i, (prefix, _) in enumerate(uses, 1))
                          if uses else f"`{block}` is declared but not used in this network")
        for i, (prefix, pos) in enumerate(uses, 1):
            err.note(f"{block}[{i}]: {prefix}", pos)
        raise err
    prefix = uses[int(index) - 1][0]
    found = [n for n, d in layers.items() if _use_prefix(n, d, block) == prefix and n[len(prefix) + 1:] == inner]
    if not found:
        names = sorted({n[len(prefix) + 1:] for n, d in layers.items() if _use_prefix(n, d, block) == prefix})
        raise NetDslError(f"--set: block `{block}` has no layer `{inner}`{did_you_mean(inner, names)}",
                          hint=f"its layers, as named inside it (`--set {block}[{index}].LAYER.ARGUMENT` sets one "
                               f"in that use, {prefix}): {', '.join(names)}")
    return found, f"in use {int(index)} of block `{block}`, {prefix}"


def _uses(block: str, layers: dict) -> list[tuple[str, object]]:
    """(the use's name prefix, its call's position) for each use of `block`, in expansion order."""
    seen: dict[str, object] = {}
    for n, d in layers.items():
        prefix = _use_prefix(n, d, block)
        if prefix is not None and prefix not in seen:
            seen[prefix] = d.uses[-1][1]
    return list(seen.items())


def _use_prefix(name: str, node, block: str) -> str | None:
    """`layer1.basic2` for a layer of the use `layer1.basic2` of `block` (its statement is
    `USE.STATEMENT`), None for a layer outside `block`'s body."""
    if not node.uses or node.uses[-1][0] != block:
        return None
    return node.stmt.rpartition(".")[0]
