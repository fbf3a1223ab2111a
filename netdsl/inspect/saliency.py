"""`netdsl show saliency CHECKPOINT IMAGE [--class K]`: which pixels the
class score depends on most (Simonyan, Vedaldi & Zisserman 2013, "Deep
Inside Convolutional Networks"): the gradient of the class's score (the
logit, before the softmax, so other classes do not enter) with respect to
the input crop, through the reference executor's own backward pass. The map
is the largest absolute gradient over the three colour channels per pixel.

The reference executor is used whatever the training backend was: it is the
oracle, and the one that hands out the image's gradient."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.augment import center_crop
from ..data.folder import decode_square
from ..train.launch import decoder_reason
from ..errors import NetDslError
from ..train.datasets import data_plan, input_scale, input_size
from ..train.plots import pyplot
from .checkpoints import open_executor


def read_crop(net, run_dir: Path, image: str) -> tuple[np.ndarray, np.ndarray]:
    """(network input 1 x 3 x S x S, the crop as RGB uint8 S x S x 3 for display)."""
    prepared, _, _ = data_plan(net)
    side = input_size(net)[1]
    try:
        pixels = decode_square(image, prepared)
    except Exception as exc:  # any decoder failure is a bad input file
        raise NetDslError(f"cannot read image {image}: {decoder_reason(exc)}") from None
    mean_file = run_dir / "mean.npy"
    mean = np.load(mean_file) if mean_file.exists() else None
    top = (prepared - side) // 2
    return (center_crop(pixels[None], side, mean) * np.float32(input_scale(net)),
            pixels[top:top + side, top:top + side])


def saliency(checkpoint: str, image: str, klass: int | None = None):
    """(map S x S, crop RGB, class index, its probability, class names)."""
    from ..layers.softmax_loss import log_softmax
    net, config, ex = open_executor(checkpoint, backend="reference", batch=1)
    names = config.get("class_names") or config.get("classes") or []
    x, crop = read_crop(net, Path(ex_path(checkpoint)).parent, image)
    scores = ex.forward(x)[0]
    if klass is None:
        klass = int(np.argmax(scores))
    if not 0 <= klass < len(scores):
        raise NetDslError(f"--class {klass} is outside the network's {len(scores)} classes (0..{len(scores) - 1})")
    one_hot = np.zeros((1, len(scores)), np.float32)
    one_hot[0, klass] = 1
    grad = ex.input_gradient(x, one_hot)[0]
    probability = float(np.exp(log_softmax(scores[None].astype(np.float64))[0, klass]))
    return np.abs(grad).max(axis=0), crop, klass, probability, names


def ex_path(checkpoint: str) -> Path:
    from .checkpoints import checkpoint_file
    return checkpoint_file(checkpoint)


def saliency_figure(heat: np.ndarray, crop: np.ndarray, title: str):
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    shown = heat / heat.max() if heat.max() > 0 else heat
    axes[0].imshow(crop, interpolation="nearest")
    axes[0].set_title("input (centre crop)")
    image = axes[1].imshow(shown, cmap="hot", interpolation="nearest", vmin=0, vmax=1)
    axes[1].set_title("|d score / d pixel|, max over RGB")
    fig.colorbar(image, ax=axes[1], fraction=0.046, pad=0.04, label="relative to the largest")
    axes[2].imshow(crop, interpolation="nearest")
    axes[2].imshow(shown, cmap="jet", alpha=0.5, interpolation="bilinear", vmin=0, vmax=1)
    axes[2].set_title("overlay")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def show_saliency(checkpoint: str, image: str, klass: int | None, output: str | None) -> str:
    from .pictures import save
    heat, crop, klass, probability, names = saliency(checkpoint, image, klass)
    name = names[klass] if klass < len(names) else f"class {klass}"
    fig = saliency_figure(heat, crop, f"saliency of class {klass} ({name}, p = {probability:.1%}) for {image}")
    return save(fig, output or ex_path(checkpoint).parent / f"saliency-{Path(image).stem}.png")
