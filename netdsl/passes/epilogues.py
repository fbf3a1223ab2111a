"""Which activations run in the epilogue of the matrix product before them.

On the cuda target the tensor-core products add a layer's bias as they write
its output (a convolution's in N x C x H x W order, templates/_gemm_mma.j2); a
ReLU that is the only reader of that output can be applied there too, as the
value leaves the accumulators, instead of by a kernel that reads and writes the
whole tensor again. The pair then has one tensor, the ReLU's output: the ReLU's
backward reads only that output (dx = dy where y > 0), and a convolution's or
fully connected layer's backward never reads its own output, so nothing the
step needs is lost. A layer kind says whether its product has such an
epilogue (`Layer.activation_epilogue`); the renderer says which activations
it can apply there (`epilogue_activation`: those whose backward reads
only their output: relu, tanh, sigmoid, elu, ...), and the target whether its
products have an epilogue at all (Target.product_epilogue); the lowering asks
both, since no pass but it may render.

The graph allows it when the layer's output has exactly one reader, such an
activation on the same physical device, and is not itself an output of the
network.
"""
from __future__ import annotations

from typing import Callable

import networkx as nx

from ..graph_ops import ordered_inputs, output_nodes
from ..layers import REGISTRY


def activation_epilogues(g: nx.DiGraph, placement: Callable[[str], str],
                         fusable: Callable[[str], object]) -> dict[str, str]:
    """{layer: the activation node its epilogue computes}, for a target whose products have one;
    `fusable(node)` says whether an activation node can be applied there."""
    kept = set(output_nodes(g))
    fused = {}
    for node, d in g.nodes(data=True):
        if not d.is_layer or not REGISTRY[d.kind].activation_epilogue or node in kept:
            continue
        readers = [v for v in g.successors(node) if g.nodes[v].is_layer]
        if len(readers) != 1:
            continue
        act = g.nodes[readers[0]]
        if ("activation" in REGISTRY[act.kind].traits and ordered_inputs(g, readers[0]) == [node]
                and placement(act.device) == placement(d.device) and fusable(readers[0])):
            fused[node] = readers[0]
    return fused
