"""Infer shapes: in topological order, ask each layer kind for its output
shape (C x H x W, or a vector), parameter shapes and multiply-adds per image.
A kind's ShapeError (a kernel larger than its input, channels that do not
match) gets the layer's source position here.

Needs: resolved kinds, arguments and input edges.
"""
from __future__ import annotations

import math

import networkx as nx

from ..blocks import noted
from ..errors import NetDslError
from ..graph_ops import ordered_inputs, topological  # noqa: F401 (re-exported)
from ..layers import REGISTRY, ShapeError
from ..nodes import Node


def infer_shapes(g: nx.DiGraph) -> nx.DiGraph:
    for name in topological(g):
        node = g.nodes[name]
        if not node.is_layer:
            continue
        with noted(node):
            _infer(g, name, node)
    return g


def infer_upto(g: nx.DiGraph, names: list[str]) -> None:
    """Shapes of `names` and of everything they read, before the pass runs: for a layer
    argument that reads a shape (netdsl/shape_refs.py) while later layers are unresolved."""
    needed = set(names).union(*(nx.ancestors(g, n) for n in names))
    for name in topological(g.subgraph(needed)):
        node = g.nodes[name]
        if node.is_layer and node.shape is None:
            with noted(node):
                _infer(g, name, node)


def _infer(g: nx.DiGraph, name: str, node: Node) -> None:
    layer = REGISTRY[node.kind]
    in_shapes = [tuple(g.nodes[u].shape) for u in ordered_inputs(g, name)]
    is_loss = "loss" in layer.traits
    for slot, u in enumerate(ordered_inputs(g, name)):
        label = g.nodes[u].label
        if label and not (is_loss and slot == 1):
            raise NetDslError(f"`{u}` is a label input; only a loss layer can read it, as its second input",
                              node.pos)
        if is_loss and slot == 1 and not label:
            raise NetDslError(f"{node.kind} `{name}` reads `{u}` where it needs a label input", node.pos,
                              f"write {node.kind}(scores, label), the label being an `input NAME : K classes`")
    try:
        node.shape = tuple(layer.output_shape(node.args, in_shapes))
    except ShapeError as exc:
        message = exc.message
        if "concat" in layer.traits:  # its message counts the inputs in reading order: name them
            message += " (inputs: " + ", ".join(f"{i} `{u}`" for i, u in enumerate(ordered_inputs(g, name), 1)) + ")"
        raise NetDslError(f"{node.kind} `{name}`: {message}", node.pos, exc.hint) from None
    node.params = {k: tuple(v) for k, v in layer.param_shapes(node.args, in_shapes).items()}
    _check_size(name, node)
    node.macs = int(layer.macs(node.args, in_shapes, node.shape))


# A tensor or parameter above this many values per image (8 GiB of float32)
# cannot be allocated at any batch size; catching it here gives a position.
MAX_ELEMENTS = 1 << 31


def _check_size(name: str, node: Node) -> None:
    for what, shape in [("output", node.shape)] + [(f"parameter `{k}`", v) for k, v in node.params.items()]:
        if math.prod(shape) > MAX_ELEMENTS:
            raise NetDslError(f"{node.kind} `{name}`: its {what} would hold {math.prod(shape):,} values "
                              f"({'x'.join(map(str, shape))}), more than fits in memory", node.pos,
                              f"at most {MAX_ELEMENTS:,} values per tensor")
