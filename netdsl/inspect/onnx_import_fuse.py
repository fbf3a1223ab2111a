"""Patterns torch.onnx.export (and `netdsl export`) writes for one netdsl kind,
rewritten to the single ONNX operator OPS maps, before the graph is walked:

- SiLU, x sigmoid(x): `Sigmoid(x)` and `Mul(x, s)` -> Swish(x) (ONNX's op from opset 24);
- hard swish below opset 14: `HardSigmoid(x)` (alpha 1/6, beta 1/2) and `Mul(x, h)` -> HardSwish(x);
- GELU below opset 20, 0.5 x (1 + erf(x / sqrt 2)): Div by sqrt 2 (or Mul by 1/sqrt 2), Erf,
  Add 1, and the product of x, that sum and 0.5 in any grouping (torch multiplies x first,
  netdsl's exporter 0.5 x first) -> Gelu(x);
- adaptive pooling as netdsl's exporter writes it where windows overlap, windows sliced,
  reduced and concatenated -> one adaptive pool (onnx_import_adaptive.py);
- torch's LocalResponseNorm, x / (k + alpha avg_pool3d(pad(x^2)))^beta with an If between ->
  LRN (onnx_import_lrn.py).

A pattern is fused only where its inner tensors feed nothing else and are not graph outputs,
so that no other node loses a value it reads; an unfused Sigmoid or HardSigmoid stays a layer
of its own (then `mul` multiplies the two), an Erf outside GELU's pattern is refused here,
naming the node and the pattern, as netdsl has no erf. The fused node takes the name of the
pattern's last node, which the .net name is made from.
"""
from __future__ import annotations

import math
from collections import Counter

from . import onnx_import_adaptive as adaptive
from . import onnx_import_lrn as lrn
from .onnx_import_activations import is_netdsl_hard_sigmoid
from .onnx_import_graph import Graph, _unsupported, attrs

GELU_PATTERN = "0.5 x (1 + erf(x / sqrt 2)) (Div by sqrt 2, Erf, Add 1, Mul by x, Mul by 0.5)"

# Mul(x, gate(x)) -> one operator; the check says whether the gate's attributes are the kind's
GATED = {
    "Sigmoid": ("Swish", lambda node: True),
    "HardSigmoid": ("HardSwish", lambda node: is_netdsl_hard_sigmoid(attrs(node))),
}


class _Index:
    """Who produces and who reads each tensor (by alias-resolved name)."""

    def __init__(self, g: Graph, nodes, outputs):
        self.g = g
        self.outputs = {g.name(o) for o in outputs}
        self.producer = {g.name(o): n for n in nodes for o in n.output if o}
        self.readers: dict[str, list] = {}
        for n in nodes:
            for t in dict.fromkeys(g.name(t) for t in n.input if t):
                self.readers.setdefault(t, []).append(n)

    def only_reader(self, tensor: str):
        """The one node reading an inner tensor, or None (read twice, or a graph output)."""
        readers = self.readers.get(self.g.name(tensor), [])
        return readers[0] if len(readers) == 1 and self.g.name(tensor) not in self.outputs else None

    def scalar(self, tensor: str) -> float | None:
        value = self.g.consts.get(self.g.name(tensor))
        return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None


def fuse(g: Graph, nodes: list, outputs: list[str]) -> list:
    """The nodes with every pattern above replaced by its one operator, in topological order."""
    from onnx import helper
    index = _Index(g, nodes, outputs)
    replaced: dict[int, object] = {}  # id of a pattern's last node -> the fused node
    dropped: set[int] = set()         # ids of the pattern's other nodes
    for node in nodes:
        if id(node) in dropped or id(node) in replaced:
            continue
        match = _gated(index, node) if node.op_type in GATED else _gelu(index, node) if node.op_type == "Erf" else None
        if node.op_type == "Erf" and match is None:
            raise _unsupported(node, f"an Erf outside GELU's pattern {GELU_PATTERN} cannot be expressed")
        if match is not None:
            op_type, x, inner, last = match
            dropped.update(id(n) for n in inner)
            replaced[id(last)] = helper.make_node(op_type, [x], [last.output[0]], name=last.name or last.output[0])
        pool = adaptive.match(index, node) if node.op_type == "Concat" else None
        if pool is not None:
            x, inner, reduce_op, out = pool
            dropped.update(id(n) for n in inner)
            replaced[id(node)] = helper.make_node(adaptive.ADAPTIVE, [x], [node.output[0]],
                                                  name=node.name or node.output[0],
                                                  kind=adaptive.REDUCE_KINDS[reduce_op], out=list(out))
        norm = lrn.match(index, node) if node.op_type == "Div" else None
        if norm is not None:
            x, inner, a = norm
            dropped.update(id(n) for n in inner)
            op_type = "LRN" if a["size"] % 2 else lrn.TORCH_LRN  # ONNX's LRN centres an even window otherwise
            replaced[id(node)] = helper.make_node(op_type, [x], [node.output[0]], name=node.name or node.output[0], **a)
    return [replaced.get(id(n), n) for n in nodes if id(n) not in dropped]


def _gated(index: _Index, gate):
    op_type, matches = GATED[gate.op_type]
    mul = index.only_reader(gate.output[0])
    x = index.g.name(gate.input[0])
    if mul is None or mul.op_type != "Mul" or not matches(gate):
        return None
    if sorted(index.g.name(t) for t in mul.input) != sorted([x, index.g.name(gate.output[0])]):
        return None
    return op_type, x, [gate], mul


def _gelu(index: _Index, erf):
    g = index.g
    scaled = index.producer.get(g.name(erf.input[0]))
    if scaled is None or index.only_reader(scaled.output[0]) is not erf or len(scaled.input) != 2:
        return None
    x = _scaled_input(index, scaled)
    plus = index.only_reader(erf.output[0])
    if x is None or plus is None or plus.op_type != "Add":
        return None
    others = [t for t in plus.input if g.name(t) != g.name(erf.output[0])]
    if len(others) != 1 or not _near(index.scalar(others[0]), 1.0):
        return None
    top = plus
    for _ in range(3):  # x, 1 + erf and 0.5 are multiplied by at most three Muls
        top = index.only_reader(top.output[0])
        if top is None or top.op_type != "Mul":
            return None
        leaves, inner = _product(index, top)
        factors = Counter(g.name(t) for t in leaves if index.scalar(t) is None)
        constants = [index.scalar(t) for t in leaves if index.scalar(t) is not None]
        if factors == Counter([x, g.name(plus.output[0])]) and _near(math.prod(constants), 0.5):
            return "Gelu", x, [scaled, erf, plus, *inner], top
    return None


def _scaled_input(index: _Index, scaled) -> str | None:
    """x of x / sqrt 2 or x * (1 / sqrt 2), with x computed."""
    g = index.g
    a, b = scaled.input
    if scaled.op_type == "Div" and _near(index.scalar(b), math.sqrt(2.0)) and index.scalar(a) is None:
        return g.name(a)
    if scaled.op_type == "Mul":
        for x, c in ((a, b), (b, a)):
            if _near(index.scalar(c), math.sqrt(0.5)) and index.scalar(x) is None:
                return g.name(x)
    return None


def _product(index: _Index, top) -> tuple[list[str], list]:
    """The factors of a tree of Muls ending at `top` (its inputs, and theirs where an input is a
    Mul read only by the tree), and the tree's Muls other than `top`."""
    leaves, inner = [], []
    for t in top.input:
        below = index.producer.get(index.g.name(t))
        if below is not None and below.op_type == "Mul" and index.only_reader(t) is top:
            sub_leaves, sub_inner = _product(index, below)
            leaves += sub_leaves
            inner += [below, *sub_inner]
        else:
            leaves.append(t)
    return leaves, inner


def _near(value: float | None, target: float) -> bool:
    return value is not None and abs(value - target) <= 1e-6 * abs(target)
