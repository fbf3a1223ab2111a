"""`groups=` on one device is the towers' grouped connectivity without the towers:
the same weights, the same numbers, and no cross-device bytes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from netdsl.compiler import compile_graph
from netdsl.report import summarise
from netdsl.runtime.reference import ReferenceExecutor

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

TOWERS = """
input image : 3 x 9 x 8
input label : 5 classes
tower on gpu0, gpu1 {
  c1 = conv(image, 4, size=3, pad=1) -> relu
  c2 = conv(c1, 6, size=[3, 1], dilation=2, pad=[2, 0])
}
scores = fc(all c2, 5) on gpu0
loss = softmax_loss(scores, label)
"""

GROUPED = """
input image : 3 x 9 x 8
input label : 5 classes
c1 = conv(image, 8, size=3, pad=1) -> relu
c2 = conv(c1, 12, size=[3, 1], dilation=2, pad=[2, 0], groups=2)
scores = fc(c2, 5)
loss = softmax_loss(scores, label)
"""

TOWER_OF = {"c1.conv": "c1.conv@{}", "c2": "c2@{}"}  # grouped name -> tower copy name


def test_groups_compute_what_two_towers_compute():
    towers = ReferenceExecutor(compile_graph(text=TOWERS, training=True), 2, seed=1)
    grouped = ReferenceExecutor(compile_graph(text=GROUPED, training=True), 2, seed=2)
    # Tower gpu0 holds the first half of every layer's filters, gpu1 the second.
    weights = {}
    for name, copy in TOWER_OF.items():
        for p in ("weight", "bias"):
            weights[f"{name}.{p}"] = np.concatenate([towers.params[f"{copy.format(d)}.{p}"] for d in ("gpu0", "gpu1")])
    weights |= {k: v for k, v in towers.params.items() if k.startswith("scores.")}
    grouped.set_params(weights)
    r = np.random.default_rng(0)
    images, labels = r.standard_normal((2, 3, 9, 8)).astype(np.float32), r.integers(0, 5, 2)
    np.testing.assert_allclose(grouped.forward(images), towers.forward(images), rtol=1e-5, atol=1e-6)
    _, got = grouped.gradients(images, labels)
    _, want = towers.gradients(images, labels)
    for name, copy in TOWER_OF.items():
        halves = np.concatenate([want[f"{copy.format(d)}.weight"] for d in ("gpu0", "gpu1")])
        np.testing.assert_allclose(got[f"{name}.weight"], halves, rtol=1e-5, atol=1e-7, err_msg=name)


def test_alexnet_groups_has_the_two_gpu_weights_and_no_transfers():
    two_gpu, one = compile_graph(EXAMPLES / "alexnet.net"), compile_graph(EXAMPLES / "alexnet-groups.net")
    s, t = summarise(one, batch=128), summarise(two_gpu, batch=128)
    assert s.parameters == t.parameters == 60_965_224
    assert s.macs == t.macs == 724_406_816
    assert not s.links and not any(d.kind == "transfer" for _, d in one.nodes(data=True))
    for stmt in ("conv2", "conv4", "conv5"):
        filters, per_group, kh, kw = one.nodes[f"{stmt}.conv"].params["weight"]
        tower = two_gpu.nodes[f"{stmt}.conv@gpu0"].params["weight"]
        assert (filters, per_group, kh, kw) == (2 * tower[0],) + tuple(tower[1:])
