"""What training needs of a network, checked when the file is compiled so
that `netdsl info` reports it with a position instead of `netdsl train`
failing later without one: one image input, one main loss among several, and
written crops that fit the image input. A network without a loss is an
inference graph (info, compile, export and predict take it); `train` and
`test` ask for one (`require_loss`)."""
from __future__ import annotations

import networkx as nx

from .. import ast
from ..errors import NetDslError, Pos
from ..graph_ops import has_loss, loss_layers, output_node
from ..layers import REGISTRY
from ..values import substitute


def check_inputs(g: nx.DiGraph, settings: dict[str, ast.Setting]) -> None:
    """One image input, and `random_crop` arguments (as written) that fit it."""
    images = [n for n, d in g.nodes(data=True) if d.is_image]
    if len(images) > 1:
        first = g.nodes[images[0]].pos
        raise NetDslError(f"a second image input `{images[1]}`: a network reads one image input", g.nodes[images[1]].pos,
                          f"`{images[0]}` (line {first.line}) is the image input; a second one would never be fed")
    written = settings.get("augment")
    if not images or written is None:
        return  # the default augmentation is checked against the input when training starts
    shape = g.nodes[images[0]].shape
    side = shape[-1]
    items = substitute(written.value, g.graph["params"])
    spec = g.graph["train"]
    for item, call in zip(getattr(items, "items", ()), spec.augment):
        if call.name != "random_crop":
            continue
        size, source = call.kwargs["size"], call.kwargs["from"]
        if size != side:
            raise NetDslError(f"random_crop({size}) does not fit the network's {side}x{side} input `{images[0]}`",
                              item.pos, f"crop the input's size: random_crop({side}, from=...)")
        if source < size:
            raise NetDslError(f"random_crop(from={source}) is smaller than the {size}x{size} crop", item.pos,
                              "`from` is the size images are prepared at; the crop is taken inside it")


def check_losses(g: nx.DiGraph) -> None:
    """Without a loss, nothing (an inference graph, as an ONNX import's); with several, exactly
    one main one. Runs after the forward passes resolved every kind."""
    losses = loss_layers(g)
    # Several losses train on their weighted sum; one of them, written without `weight=`,
    # is the main loss whose scores give the metrics and the prediction.
    main = [n for n in losses if g.nodes[n].args.get("weight") is None]
    if len(losses) > 1 and len(main) > 1:
        first = g.nodes[main[0]].pos
        raise NetDslError(f"a second loss `{main[1]}` without a weight: which one is the main loss is ambiguous",
                          g.nodes[main[1]].pos, f"`{main[0]}` at line {first.line} has none either; give the side "
                          "losses a weight, e.g. `softmax_loss(aux, label, weight=0.3)`")
    if len(losses) > 1 and not main:
        raise NetDslError(f"every one of the {len(losses)} losses has a weight, so none is the main loss",
                          g.nodes[losses[-1]].pos, "leave the weight out of the main one (its weight is 1); "
                          "its scores give the reported errors and the prediction")


def require_loss(g: nx.DiGraph, command: str) -> None:
    """`netdsl train` and `netdsl test` need a loss; `info`, `compile`, `export` and `predict` do not.
    The error points at the network's output, where the loss would read the scores."""
    if has_loss(g):
        return
    kinds = ", ".join(sorted(k for k, layer in REGISTRY.items() if "loss" in layer.traits))
    out = output_node(g)
    raise NetDslError(f"the network has no loss layer, so it cannot be {command}: its output is `{out}`",
                      g.nodes[out].pos or Pos(g.graph["file"], 1, 1),
                      f"end it with a loss ({kinds}), e.g. `loss = softmax_loss(scores, label)`")


def require_class_output(g: nx.DiGraph) -> None:
    """`netdsl predict` ranks classes: the output must be a vector (or C x 1 x 1) of class scores or
    probabilities. A network with a loss has one; an inference graph's may be a map."""
    out = output_node(g)
    shape = tuple(g.nodes[out].shape)
    if any(side != 1 for side in shape[1:]):
        raise NetDslError(f"predict ranks classes, and the network's output `{out}` is {'x'.join(map(str, shape))} "
                          "per image, not a vector of class scores", g.nodes[out].pos or Pos(g.graph["file"], 1, 1),
                          "end the network with one score per class: `... -> global_avgpool -> flatten`, or an "
                          "`fc(classes)`, optionally followed by a `softmax`")
