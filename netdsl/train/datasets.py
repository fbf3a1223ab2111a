"""From a network's `train` block to data: the size to prepare images at, the
training and test augmentation, and the built-in default dataset used when
`--data` is not given."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data.augment import AugmentSpec
from ..errors import NetDslError
from ..graph_ops import image_input
from ..paths import cache_dir

# The default dataset: small enough that an AlexNet epoch runs in minutes on
# two CPU cores, large enough that a CIFAR-scale net learns it well.
DEFAULT_CLASSES = 10
DEFAULT_TRAIN_PER_CLASS = 64
DEFAULT_VAL_PER_CLASS = 16
DEFAULT_IMAGE_SIZE = 64


def input_size(net) -> tuple[int, int, int]:
    g = net.graph
    image = image_input(g)
    shape = g.nodes[image].shape
    if len(shape) != 3 or shape[0] != 3 or shape[1] != shape[2]:
        raise NetDslError(f"training from image folders needs a square RGB input (3 x S x S), "
                          f"and `{image}` is {'x'.join(map(str, shape))}", g.nodes[image].pos)
    return shape


def class_count(net) -> int:
    g = net.graph
    return next(g.nodes[n].shape[0] for n in g if g.nodes[n].label)


def data_plan(net, ten_crop: bool | None = None) -> tuple[int, AugmentSpec, AugmentSpec]:
    """(size to prepare at, training augmentation, evaluation augmentation)."""
    spec = net.train
    side = input_size(net)[1]
    crop = spec.augmentation("random_crop")
    if crop is not None and crop.kwargs["size"] != side:
        raise NetDslError(f"random_crop({crop.kwargs['size']}) does not match the network's {side}x{side} input",
                          hint=f"use random_crop({side}, from=...) in the train block")
    prepared = crop.kwargs["from"] if crop is not None else side
    if prepared < side:
        raise NetDslError(f"random_crop(from={prepared}) is smaller than the {side}x{side} input")
    lighting = spec.augmentation("pca_lighting")
    elastic = spec.augmentation("elastic")
    train = AugmentSpec(crop=side, flip=spec.augmentation("hflip") is not None,
                        pca_std=lighting.kwargs["std"] if lighting else 0.0, crop_mode="random",
                        elastic=(elastic.kwargs["alpha"], elastic.kwargs["sigma"]) if elastic else None)
    ten = spec.test.name == "ten_crop" if ten_crop is None else ten_crop
    test = AugmentSpec(crop=side, crop_mode="ten" if ten else "center")
    return prepared, train, test


def checkpoint_test_plan(net, config: dict, ten_crop: bool | None = None) -> AugmentSpec:
    """Evaluation augmentation for a checkpoint: a run's subtracts the mean image, weights
    outside a run (`config["network_only"]`, as `netdsl import` writes) have none."""
    test = data_plan(net, ten_crop=ten_crop)[2]
    return replace(test, mean_subtract=False) if config.get("network_only") else test


def input_scale(net) -> float:
    """The `scale(factor)` augmentation's factor, applied to every batch (1 if absent)."""
    scale = net.train.augmentation("scale")
    return scale.kwargs["factor"] if scale is not None else 1.0


def scaled(batches, factor: float):
    """(images * factor, labels) for each batch; the images are the loader's own arrays."""
    for images, labels in batches:
        if factor != 1.0:
            images *= np.float32(factor)
        yield images, labels


def default_dataset() -> Path:
    """The generated shapes dataset, written once into the cache."""
    from ..data.synthetic import make_shapes
    root = cache_dir("datasets") / f"shapes-{DEFAULT_CLASSES}x{DEFAULT_TRAIN_PER_CLASS}-{DEFAULT_IMAGE_SIZE}px"
    done = root / ".complete"
    if not done.exists():
        make_shapes(root, classes=DEFAULT_CLASSES, train_per_class=DEFAULT_TRAIN_PER_CLASS,
                    val_per_class=DEFAULT_VAL_PER_CLASS, size=DEFAULT_IMAGE_SIZE, seed=0)
        done.touch()
    return root
