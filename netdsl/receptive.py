"""Receptive field and effective stride of every forward node, in input pixels.

A window layer of size k, stride s and dilation d grows the field by
(d*(k-1)) times the stride its input already has, and multiplies that stride
by s (the usual recurrence, e.g. Araujo et al., Distill 2019). A layer that
sees its whole input (fc, global pooling) covers the field of one window as
large as the input. A node with several inputs (concat, add, the loss) takes
the largest field among them: the question is how far back any of its outputs
can see. Channel grouping does not change a spatial field. Only square
windows exist in the DSL, so one number describes both axes.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from .graph_ops import topological


@dataclass(frozen=True)
class Field:
    size: int    # receptive field, input pixels on a side
    stride: int  # input pixels between neighbouring outputs


def _window(node) -> tuple[int, int] | None:
    """(extent, stride) of a node's spatial window, or None if it keeps the field."""
    a = node.args
    if node.kind == "conv":
        return a.get("dilation", 1) * (a["size"] - 1) + 1, a["stride"]
    if node.kind in ("maxpool", "avgpool"):
        return a["size"], a["stride"] or a["size"]
    if node.kind == "lrn" and a.get("region") == "within":  # a spatial neighbourhood
        return a["size"], 1
    return None


def receptive_fields(g: nx.DiGraph) -> dict[str, Field]:
    fields: dict[str, Field] = {}
    for name in topological(g):
        node = g.nodes[name]
        if not node.role.forward:
            continue
        if node.is_input:
            if node.is_image:
                fields[name] = Field(1, 1)
            continue
        inputs = [(fields[p], g.nodes[p].shape) for p in g.predecessors(name) if p in fields]
        if not inputs:
            continue
        field, in_shape = max(inputs, key=lambda fs: (fs[0].size, fs[0].stride))
        window = _window(node)
        if window is None and node.kind in ("fc", "global_avgpool") and len(in_shape) == 3:
            window = (max(in_shape[1:]), 1)  # one window over the whole input
            fields[name] = Field(field.size + (window[0] - 1) * field.stride, field.stride * max(in_shape[1:]))
            continue
        if window is not None:
            extent, stride = window
            field = Field(field.size + (extent - 1) * field.stride, field.stride * stride)
        fields[name] = field
    return fields
