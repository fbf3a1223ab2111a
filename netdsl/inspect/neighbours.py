"""`netdsl neighbours CHECKPOINT --data DIR IMAGE... [--layer fc7] [-k 6]`:
for each query image, the training images whose activations at a layer are
closest in Euclidean distance (the paper's Figure 4, right, uses the last
hidden layer, fc7), drawn as one picture per query.

The activations are computed by walking the graph with each layer kind's
numpy forward at test time, the reference executor's arithmetic, stopping at
the layer. A statement in a tower (fc7) means every tower's copy of its
output, concatenated in tower order: the whole 4096-unit layer."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.augment import center_crop
from ..data.folder import decode_square
from ..train.launch import decoder_reason
from ..errors import NetDslError, did_you_mean
from ..layers import REGISTRY
from ..layers.base import Context
from ..graph_ops import layers, ordered_inputs, topological
from ..train.datasets import data_plan, input_scale, input_size
from ..train.plots import pyplot

CHUNK = 32  # images per forward walk: bounds memory for big layers


def feature_nodes(g, layer: str | None) -> list[str]:
    """The nodes whose outputs, concatenated, are the layer's activations."""
    from ..passes.build_backward import loss_node
    forward = [n for n in layers(g) if not _joins(g, n)]
    if layer is None:  # the last hidden layer: what feeds the scores layer
        hidden = ordered_inputs(g, ordered_inputs(g, loss_node(g))[0])[0]
        while _joins(g, hidden):  # `all fc7`: look through the link
            hidden = ordered_inputs(g, hidden)[0]
        layer = g.nodes[hidden].stmt
    if layer in g and g.nodes[layer].is_layer:
        return [layer]
    copies = [n for n in forward if g.nodes[n].stmt == layer]
    if not copies:
        statements = list(dict.fromkeys(g.nodes[n].stmt for n in forward))
        raise NetDslError(f"no layer `{layer}` in {g.graph['network']}{did_you_mean(layer, statements)}",
                          hint=f"layers: {', '.join(statements)}")
    last = {}
    for n in copies:  # topological order: the last node of each device's copy is its output
        last[g.nodes[n].device] = n
    return list(last.values())


def _joins(g, node) -> bool:
    """Concats and transfers only move values: a layer's output is what feeds them."""
    return bool(REGISTRY[g.nodes[node].kind].traits & {"concat", "transfer"})


def activations(g, params: dict, images: np.ndarray, nodes: list[str]) -> np.ndarray:
    """N x D: the nodes' outputs at test time, flattened and concatenated."""
    needed = set(nodes)
    for n in list(needed):
        needed |= {a for a in _ancestors(g, n)}
    values = {}
    for node in topological(g):
        d = g.nodes[node]
        if node not in needed:
            continue
        if d.is_input:
            values[node] = images
            continue
        layer = REGISTRY[d.kind]
        p = {name: params[f"{node}.{name}"] for name in d.params}
        values[node], _ = layer.forward(d.args, p, [values[u] for u in ordered_inputs(g, node)],
                                        Context(train=False, stream=node))
    return np.concatenate([values[n].reshape(len(images), -1) for n in nodes], axis=1)


def _ancestors(g, node):
    import networkx as nx
    return nx.ancestors(g, node) | {node}


def nearest(features: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices Q x k, distances Q x k), nearest first."""
    sq = (queries ** 2).sum(1)[:, None] - 2 * queries @ features.T + (features ** 2).sum(1)[None]
    order = np.argsort(sq, axis=1, kind="stable")[:, :k]
    return order, np.sqrt(np.maximum(np.take_along_axis(sq, order, axis=1), 0))


def neighbours(checkpoint: str, data_dir: str, images: list[str], layer: str | None, k: int):
    """Per query: (path, query crop, [(train crop, class name, distance)]), and the layer's name."""
    from ..train.launch import open_data
    from .checkpoints import open_checkpoint
    if k < 1:
        raise NetDslError(f"-k {k}: ask for at least one neighbour")
    net, config, _, params = open_checkpoint(checkpoint)
    g = net.graph
    nodes = feature_nodes(g, layer)
    _, data = open_data(net, data_dir)
    side, scale = input_size(net)[1], np.float32(input_scale(net))
    prepared, _, _ = data_plan(net)
    top = (data.size - side) // 2
    crop = lambda pixels: pixels[:, top:top + side, top:top + side]
    train = data.train_images
    features = np.concatenate([activations(g, params, center_crop(train[i:i + CHUNK], side, data.mean) * scale, nodes)
                               for i in range(0, len(train), CHUNK)]).astype(np.float64)
    queries = []
    for path in images:
        try:
            queries.append(decode_square(path, prepared))
        except Exception as exc:  # any decoder failure is a bad input file
            raise NetDslError(f"cannot read image {path}: {decoder_reason(exc)}") from None
    queries = np.stack(queries)
    q = activations(g, params, center_crop(queries, side, data.mean) * scale, nodes).astype(np.float64)
    index, distance = nearest(features, q, min(k, len(train)))
    names = data.class_names or data.classes
    results = []
    for row, path in enumerate(images):
        found = [(crop(train[i:i + 1])[0], names[data.train_labels[i]], float(dist))
                 for i, dist in zip(index[row], distance[row])]
        results.append((path, crop(queries[row:row + 1])[0], found))
    return results, "+".join(nodes), index, distance


def neighbours_figure(path: str, query: np.ndarray, found: list, layer: str):
    plt = pyplot()
    fig, axes = plt.subplots(1, len(found) + 1, figsize=(2.2 * (len(found) + 1), 2.8), squeeze=False)
    axes = axes[0]
    axes[0].imshow(query, interpolation="nearest")
    axes[0].set_title("query", fontsize=9)
    for ax, (pixels, name, distance) in zip(axes[1:], found):
        ax.imshow(pixels, interpolation="nearest")
        ax.set_title(f"{name}\nd = {distance:.3g}", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for side in axes[0].spines.values():
        side.set_color("red")
        side.set_linewidth(2)
    fig.suptitle(f"nearest training images at {layer} (Euclidean) to {Path(path).name}", fontsize=9)
    fig.tight_layout()
    return fig


def show_neighbours(checkpoint: str, data_dir: str, images: list[str], layer: str | None, k: int,
                    output: str | None) -> list[str]:
    from .checkpoints import checkpoint_file
    from .pictures import save
    results, layer_name, _, _ = neighbours(checkpoint, data_dir, images, layer, k)
    out = Path(output) if output else checkpoint_file(checkpoint).parent
    return [save(neighbours_figure(path, query, found, layer_name), out / f"neighbours-{Path(path).stem}.png")
            for path, query, found in results]
