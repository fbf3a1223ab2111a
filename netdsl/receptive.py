"""Receptive field and effective stride of every forward node, in input pixels.

A window layer of size k, stride s and dilation d grows the field by
(d*(k-1)) times the stride its input already has, and multiplies that stride
by s (the usual recurrence, e.g. Araujo et al., Distill 2019). A layer that
sees its whole input (fc, global pooling) covers the field of one window as
large as the input. A node with several inputs (concat, add, the loss) takes
the largest field among them: the question is how far back any of its outputs
can see. Channel grouping does not change a spatial field. Each axis has its
own field and stride: a convolution may be 1 x 7 or stride 2 x 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from .graph_ops import topological
from .layers import REGISTRY


@dataclass(frozen=True)
class Field:
    size: tuple[int, int]    # receptive field, input pixels (rows, columns)
    stride: tuple[int, int]  # input pixels between neighbouring outputs (rows, columns)

    def grown(self, extent: tuple[int, int], stride: tuple[int, int]) -> Field:
        """The field after a window of `extent` input elements moving by `stride`."""
        return Field(tuple(f + (e - 1) * s for f, e, s in zip(self.size, extent, self.stride)),
                     tuple(s * t for s, t in zip(self.stride, stride)))


def pixels(pair: tuple[int, int]) -> str:
    """One number for a square field or stride, `rows x columns` otherwise."""
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _window(node) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(extent, stride) of a node's spatial window per axis, or None if it keeps the field."""
    a = node.args
    if node.kind == "conv":
        g = REGISTRY["conv"].geometry(a)
        return (g.span_h, g.span_w), (g.sh, g.sw)
    if node.kind in ("maxpool", "avgpool"):
        return (a["size"],) * 2, (a["stride"] or a["size"],) * 2
    if node.kind == "lrn" and a.get("region") == "within":  # a spatial neighbourhood
        return (a["size"],) * 2, (1, 1)
    return None


def receptive_fields(g: nx.DiGraph) -> dict[str, Field]:
    fields: dict[str, Field] = {}
    for name in topological(g):
        node = g.nodes[name]
        if not node.role.forward:
            continue
        if node.is_input:
            if node.is_image:
                fields[name] = Field((1, 1), (1, 1))
            continue
        inputs = [(fields[p], g.nodes[p].shape) for p in g.predecessors(name) if p in fields]
        if not inputs:
            continue
        field, in_shape = max(inputs, key=lambda fs: (fs[0].size, fs[0].stride))
        window = _window(node)
        if window is None and node.kind in ("fc", "global_avgpool") and len(in_shape) == 3:
            window = tuple(in_shape[1:]), tuple(in_shape[1:])  # one window over the whole input
        fields[name] = field.grown(*window) if window is not None else field
    return fields
