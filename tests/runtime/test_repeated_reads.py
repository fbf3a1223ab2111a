"""A layer that reads one tensor twice (`concat(p, p)`, `add(p, p)`, `fc(p, p, N)`) reads
the second time through an identity copy, so backward sums both reads' gradients as
PyTorch's autograd does: the reference against the same network written in PyTorch,
and the cpu backend against the reference."""
from __future__ import annotations

import numpy as np
import pytest
from test_cpu_backend import compare, pair

from netdsl.compiler import compile_graph

NET = """
network twice
input image : 2 x 6 x 5
input label : 4 classes
defaults conv, fc {{ init = gauss(0.4); bias = 0.1 }}
p = conv(image, 3, size=3, pad=1) -> tanh
{body}
loss = softmax_loss(s, label)
train {{ batch = 3; optimizer = sgd(lr=0.1, momentum=0.9) }}
"""

# body -> the same head in PyTorch, from the conv's output x and the image
BODIES = {
    "concat": ("c = concat(p, p) -> conv(3, size=1)\ns = fc(c, 4)",
               lambda F, p, x, image: F.linear(F.conv2d(cat(x, x), p["c.conv.weight"], p["c.conv.bias"]).flatten(1),
                                               p["s.weight"], p["s.bias"])),
    "add": ("a = add(p, p)\ns = fc(a, 4)",
            lambda F, p, x, image: F.linear((x + x).flatten(1), p["s.weight"], p["s.bias"])),
    "mul": ("m = mul(p, p)\ns = fc(m, 4)",
            lambda F, p, x, image: F.linear((x * x).flatten(1), p["s.weight"], p["s.bias"])),
    "fc of three reads": ("s = fc(p, image, p, 4)",
                          lambda F, p, x, image: F.linear(cat(x.flatten(1), image.flatten(1), x.flatten(1)),
                                                          p["s.weight"], p["s.bias"])),
}


def cat(*xs):
    import torch
    return torch.cat(xs, dim=1)


def graph(body: str):
    return compile_graph(text=NET.format(body=body), file="twice.net", training=True)


@pytest.mark.parametrize("name", list(BODIES))
def test_reference_matches_pytorch(name):
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle here")
    F = torch.nn.functional
    body, head = BODIES[name]
    _, ref = pair(graph(body), batch=3)
    rng = np.random.default_rng(7)
    images = rng.standard_normal((3, 2, 6, 5)).astype(np.float32)
    labels = np.array([3, 0, 2])
    loss, grads = ref.gradients(images, labels, train=False)
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in ref.params.items()}
    image = torch.tensor(images, dtype=torch.float64)
    x = torch.tanh(F.conv2d(image, p["p.conv.weight"], p["p.conv.bias"], padding=1))
    scores = head(F, p, x, image)
    t_loss = F.cross_entropy(scores, torch.tensor(labels))
    t_loss.backward()
    assert abs(float(loss) - t_loss.item()) < 1e-5 * abs(t_loss.item())
    assert set(grads) == set(p)
    for key, grad in grads.items():
        expected = p[key].grad.numpy()
        assert np.linalg.norm(grad - expected) < 1e-4 * np.linalg.norm(expected), key


@pytest.mark.parametrize("name", list(BODIES))
def test_cpu_backend_matches_the_reference(name):
    compare(*pair(graph(BODIES[name][0]), batch=3))


def test_the_second_read_is_an_identity_layer_named_after_the_reader():
    g = compile_graph(text=NET.format(body=BODIES["concat"][0]), file="twice.net", training=True)
    copy = g.nodes["c.again"]
    assert copy.kind == "identity" and list(g.predecessors("c.again")) == ["p.tanh"]
