"""`netdsl show filters`: a convolution's kernels as an image grid, one panel
per tower copy (device), stacked as in Figure 3 of the AlexNet paper (the 48
kernels of each GPU in rows of 16, gpu0 above gpu1).

A layer that reads the RGB image is drawn in colour, each kernel's C x H x W
weights as an H x W x 3 tile; deeper layers are drawn as the mean over their
input channels, in grey. Each tile is stretched to its own minimum and
maximum, since kernels differ in scale and one shared scale would leave the
weak ones black."""
from __future__ import annotations

import math

import numpy as np

from ..errors import NetDslError, did_you_mean
from ..graph_ops import layers, ordered_inputs
from ..train.plots import pyplot

COLUMNS = 16  # Figure 3: rows of 16 kernels
GAP = 1  # pixels between tiles


def conv_statements(g) -> list[str]:
    return list(dict.fromkeys(g.nodes[n].stmt for n in layers(g) if g.nodes[n].kind == "conv"))


def conv_copies(g, layer: str | None) -> list[str]:
    """The conv nodes a --layer names: a statement's tower copies, or one node by its name."""
    statements = conv_statements(g)
    if not statements:
        raise NetDslError("the network has no convolution to show")
    layer = layer or statements[0]
    nodes = [n for n in layers(g) if g.nodes[n].kind == "conv"
             and (g.nodes[n].stmt == layer or n == layer)]
    if not nodes:
        raise NetDslError(f"no convolution `{layer}` in {g.graph['network']}{did_you_mean(layer, statements)}",
                          hint=f"convolutions: {', '.join(statements)}")
    return nodes


def reads_image(g, node: str) -> bool:
    sources = ordered_inputs(g, node)
    return len(sources) == 1 and g.nodes[sources[0]].is_input and g.nodes[sources[0]].shape[0] == 3


def stretch(tile: np.ndarray) -> np.ndarray:
    low, high = float(tile.min()), float(tile.max())
    return (tile - low) / (high - low) if high > low else np.full_like(tile, 0.5)


def kernel_tiles(weight: np.ndarray, colour: bool) -> list[np.ndarray]:
    """One H x W x 3 (colour) or H x W (grey) tile per output channel, each stretched to 0..1."""
    if colour:
        return [stretch(k.transpose(1, 2, 0).astype(np.float64)) for k in weight]
    return [stretch(k.mean(axis=0).astype(np.float64)) for k in weight]


def mosaic(tiles: list[np.ndarray], columns: int) -> np.ndarray:
    """Tiles in rows of `columns` on a white background, GAP pixels apart."""
    h, w = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / columns)
    shape = (rows * (h + GAP) - GAP, columns * (w + GAP) - GAP) + tiles[0].shape[2:]
    out = np.ones(shape)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        out[r * (h + GAP):r * (h + GAP) + h, c * (w + GAP):c * (w + GAP) + w] = tile
    return out


def filter_panels(g, params: dict, layer: str | None = None) -> list[tuple[str, np.ndarray]]:
    """(device title, mosaic) per tower copy of the layer."""
    panels = []
    for node in conv_copies(g, layer):
        weight = params[f"{node}.weight"]
        columns = min(len(weight), COLUMNS)
        panels.append((f"{g.nodes[node].device}  ({node}, {len(weight)} kernels "
                       f"{weight.shape[2]}x{weight.shape[3]}x{weight.shape[1]})",
                       mosaic(kernel_tiles(weight, reads_image(g, node)), columns)))
    return panels


def filters_figure(g, params: dict, layer: str | None = None):
    plt = pyplot()
    panels = filter_panels(g, params, layer)
    height, width = panels[0][1].shape[:2]
    inches = 12.0  # wide enough for 16 tiles of 11x11 at several screen pixels per weight
    fig, axes = plt.subplots(len(panels), 1, squeeze=False,
                             figsize=(inches, len(panels) * (inches * height / width + 0.5) + 0.4))
    for ax, (title, image) in zip(axes[:, 0], panels):
        ax.imshow(image, cmap=None if image.ndim == 3 else "gray", interpolation="nearest", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    colour = "RGB" if panels[0][1].ndim == 3 else "mean over input channels"
    fig.suptitle(f"{g.graph['network']}: {layer or conv_statements(g)[0]} kernels ({colour}, "
                 "each stretched to its own range)", fontsize=10)
    fig.tight_layout()
    return fig


def show_filters(run_or_checkpoint: str, layer: str | None, output: str | None) -> str:
    from .checkpoints import open_checkpoint
    from .pictures import save
    net, _, path, params = open_checkpoint(run_or_checkpoint)
    fig = filters_figure(net.graph, params, layer)
    return save(fig, output or path.parent / f"filters-{layer or conv_statements(net.graph)[0]}.png")
