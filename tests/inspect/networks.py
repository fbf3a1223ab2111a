"""Small networks and hand-made run directories for the inspection tests:
a run directory holds what `netdsl train` writes, without the minutes of
training, so each test builds one in milliseconds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from netdsl.train.launch import network_from_source
from netdsl.train.trainer import write_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# Two towers with `all` links, every layer kind but sigmoid in the towers.
TWO_TOWER = """
network twotower
input image : 3 x 16 x 16
input label : 5 classes
param act = relu
tower on gpu0, gpu1 {
  c1 = conv(image, 4, size=3, pad=1) -> act -> lrn(3, alpha=1e-4, beta=0.75, k=2) -> maxpool(3, stride=2, ceil=true)
  c2 = conv(all c1, 6, size=3, pad=1) -> sigmoid -> avgpool(3, stride=2, pad=1)
  f  = fc(all c2, 6) -> tanh -> dropout(0.5)
}
out  = fc(all f, 5) on gpu0
loss = softmax_loss(out, label)
train { batch = 2; epochs = 1; augment = []; test = center_crop }
"""


def well_scaled(ex, seed: int = 0) -> dict:
    """He-scaled weights so activations and gradients are O(1) (tiny inits make every picture flat)."""
    r = np.random.default_rng(seed)
    out = {}
    for name, value in ex.params.items():
        fan_in = int(np.prod(value.shape[1:])) if value.ndim > 1 else 1
        scale = np.sqrt(2.0 / fan_in) if value.ndim > 1 else 0.1
        out[name] = (r.standard_normal(value.shape) * scale).astype(np.float32)
    return out


def make_run(directory: Path, source: str = TWO_TOWER, overrides: dict | None = None, seed: int = 0,
             history: list[dict] | None = None, classes: int | None = None) -> Path:
    """A run directory with config.json, checkpoint.npz, best.npz and metrics.jsonl."""
    directory = Path(directory)
    overrides = overrides or {}
    net = network_from_source(source, f"{directory.name}.net", overrides)
    ex = net.executor(backend="reference", batch=2, seed=seed)
    ex.set_params(well_scaled(ex, seed))
    label = next(n for n in net.graph if net.graph.nodes[n].label)
    count = classes or net.graph.nodes[label].shape[0]
    names = [f"s{i:04d}" for i in range(count)]  # the folder names of the shapes data (make_shapes)
    write_config(directory, {"file": f"{directory.name}.net", "source": source, "overrides": overrides,
                             "data": "", "backend": "reference", "classes": names, "class_names": names,
                             "options": {"epochs": 1, "batch": 2, "seed": seed, "workers": 1, "save_every": 0,
                                         "progress": False}})
    ex.save(directory / "checkpoint.npz", state=json.dumps({}))
    ex.save(directory / "best.npz")
    if history is not None:
        (directory / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    return directory
