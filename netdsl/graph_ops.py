"""Questions every pass and executor asks of the checked graph, answered in
one place: node order, the layers and inputs, a node's inputs in slot order,
the loss layers, the outputs, the bytes a value takes."""
from __future__ import annotations

import math

import networkx as nx

from .errors import NetDslError
from .layers import REGISTRY

BYTES_PER_VALUE = 4  # float32 activations


def ordered_inputs(g: nx.DiGraph, name: str) -> list[str]:
    return [u for u, _ in sorted(g.in_edges(name), key=lambda e: g.edges[e]["slot"])]


def topological(g: nx.DiGraph) -> list[str]:
    """Topological order with ties broken by file order: the order users read."""
    return list(nx.lexicographical_topological_sort(g, key=lambda n: g.nodes[n].order))


def layers(g: nx.DiGraph) -> list[str]:
    """The forward layers, in topological order."""
    return [n for n in topological(g) if g.nodes[n].is_layer]


def forward_nodes(g: nx.DiGraph) -> list[str]:
    """Inputs and forward layers, in topological order: what inference runs."""
    return [n for n in topological(g) if g.nodes[n].role.forward]


def image_input(g: nx.DiGraph) -> str:
    """The one input of images (graph.build checks there is exactly one)."""
    return next(n for n in g if g.nodes[n].is_image)


def label_input(g: nx.DiGraph) -> str | None:
    return next((n for n in g if g.nodes[n].is_input and g.nodes[n].label), None)


def loss_layers(g: nx.DiGraph) -> list[str]:
    """The loss layers, in topological order: none in an inference graph (an ONNX import's)."""
    return [n for n in layers(g) if "loss" in REGISTRY[g.nodes[n].kind].traits]


def has_loss(g: nx.DiGraph) -> bool:
    """Whether the network can be trained and tested; without a loss it only infers."""
    return bool(loss_layers(g))


def loss_weights(g: nx.DiGraph) -> dict[str, float]:
    """Every loss layer and its weight in the total the backward differentiates; {} without one.

    Several losses (GoogLeNet's side classifiers) need one main loss, the one
    written without `weight=`: its scores give the metrics and the prediction."""
    losses = loss_layers(g)
    if len(losses) > 1:
        main = [n for n in losses if g.nodes[n].args.get("weight") is None]
        if len(main) != 1:
            names = ", ".join(main or losses)
            raise NetDslError(f"{len(losses)} losses need exactly one main loss, written without `weight=`; "
                              f"{'these have none' if main else 'every one has one'}: {names}",
                              g.nodes[(main or losses)[-1]].pos,
                              hint="weight the side losses: `softmax_loss(aux, label, weight=0.3)`")
    weights = {n: g.nodes[n].args.get("weight") for n in losses}
    return {n: 1.0 if w is None else w for n, w in weights.items()}


def loss_node(g: nx.DiGraph) -> str | None:
    """The main loss: the only one, or the one of several written without `weight=`; None without one."""
    weights = loss_weights(g)
    if len(weights) <= 1:
        return next(iter(weights), None)
    return next(n for n in weights if g.nodes[n].args.get("weight") is None)


def final_tensors(g: nx.DiGraph) -> list[str]:
    """The forward layers no other layer reads, in topological order: an inference graph's outputs."""
    return [n for n in layers(g) if not any(g.nodes[v].is_layer for v in g.successors(n))]


def output_node(g: nx.DiGraph) -> str:
    """The tensor a prediction reads: the main loss's scores, or, in a network without a loss,
    its final tensor (the last one in file order where several are)."""
    loss = loss_node(g)
    return ordered_inputs(g, loss)[0] if loss is not None else final_tensors(g)[-1]


def output_nodes(g: nx.DiGraph) -> list[str]:
    """What the network computes for its caller: the main loss's scores, or every final tensor."""
    loss = loss_node(g)
    return [ordered_inputs(g, loss)[0]] if loss is not None else final_tensors(g)


def is_transfer(g: nx.DiGraph, node: str) -> bool:
    return "transfer" in REGISTRY[g.nodes[node].kind].traits


def value_bytes(g: nx.DiGraph, node: str) -> int:
    """Bytes of one image's worth of a node's output."""
    return math.prod(g.nodes[node].shape) * BYTES_PER_VALUE
