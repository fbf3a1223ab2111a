"""`netdsl show augment FILE --data DIR`: what the train block's augmentation
does to a few training images. One row per image: the centre crop without
augmentation, then independent draws of the training augmentation (random
crop, mirror, PCA lighting, elastic distortion: whatever the file asks for).
Draw j is what the loader's generator for (seed, epoch j, batch 0) does to a
batch made of these images, so the picture is the same every time. Pixels
are drawn as the images are, without the mean subtraction and input scale
the network then applies."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..compiler import Network, compile_graph
from ..data.augment import AUGMENT_STREAM, augment_batch, center_crop, counter_rng
from ..errors import NetDslError
from ..train.datasets import data_plan, input_size
from ..train.launch import open_data
from ..userpaths import check_out_dir, check_regular_file


def augmented_samples(net, data, count: int, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns): uint8 count x (1 + draws) x c x c x 3 images and their training labels."""
    _, train_aug, _ = data_plan(net)
    spec = dataclasses.replace(train_aug, mean_subtract=False)
    side = input_size(net)[1]
    total = len(data.train_labels)
    if total == 0:
        raise NetDslError("the data has no training images to show")
    rows = np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(int))  # spread over the classes
    images = np.asarray(data.train_images[rows])
    columns = [center_crop(images, side)]
    for draw in range(draws):
        rng = counter_rng(seed, AUGMENT_STREAM, draw, 0)
        columns.append(augment_batch(images, spec, rng, data.mean, data.eigval, data.eigvec))
    grid = np.stack(columns, axis=1).transpose(0, 1, 3, 4, 2)  # N x columns x c x c x 3
    return np.clip(np.rint(grid), 0, 255).astype(np.uint8), data.train_labels[rows]


def call_text(call) -> str:
    args = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in call.kwargs.items())
    return f"{call.name}({args})" if args else call.name


def show_augment(file: str, overrides: dict, data_dir: str | None, count: int = 6, draws: int = 5, seed: int = 0,
                 output: str | None = None) -> str:
    from .pictures import save
    from ..train.plots import pyplot
    check_regular_file(file, "network file")
    path = output or "augment.png"
    check_out_dir(Path(path).parent, run=False)
    net = Network(compile_graph(file, overrides=overrides, training=True))
    _, data = open_data(net, data_dir)
    grid, labels = augmented_samples(net, data, count, draws, seed)
    plt = pyplot()
    n, m = grid.shape[:2]
    fig, axes = plt.subplots(n, m, figsize=(1.6 * m, 1.6 * n + 0.6), squeeze=False)
    for i in range(n):
        for j in range(m):
            axes[i, j].imshow(grid[i, j], interpolation="nearest")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[i, 0].set_ylabel(data.class_names[labels[i]] if labels[i] < len(data.class_names) else str(labels[i]),
                              fontsize=8)
    axes[0, 0].set_title("centre crop", fontsize=8)
    for j in range(1, m):
        axes[0, j].set_title(f"draw {j}", fontsize=8)
    augment = ", ".join(call_text(a) for a in net.train.augment)
    fig.suptitle(f"{net.graph.graph['network']}: augment = [{augment}]", fontsize=9)
    fig.tight_layout()
    return save(fig, path)
