"""A squeeze-and-excitation block (Hu et al. 2018) written with the broadcasting
`mul` and `add` and MobileNetV3's activations: the cpu backend against the
reference executor (every layer's output, every gradient, three SGD steps),
and the reference's loss and gradients against the same block written by hand
in PyTorch with netdsl's weights."""
from __future__ import annotations

import numpy as np
import pytest
from test_cpu_backend import compare, pair

from netdsl.compiler import compile_graph

SE = """
network se
input image : 3 x 7 x 6
input label : 5 classes
defaults conv, fc { init = gauss(0.3); bias = 0.1 }
feat = conv(image, 8, size=3, pad=1) -> hard_swish
squeeze = global_avgpool(feat) -> conv(4, size=1) -> relu6 -> conv(8, size=1) -> hard_sigmoid
scaled = mul(feat, squeeze)
shift = global_avgpool(image) -> conv(8, size=1) -> silu
y = add(scaled, shift) -> gelu -> clip(-1.5, 2)
scores = fc(y, 5)
loss = softmax_loss(scores, label)
train { batch = 3; optimizer = sgd(lr=0.05, momentum=0.9) }
"""


def graph():
    return compile_graph(text=SE, file="se.net", training=True)


def test_cpu_backend_matches_the_reference():
    compare(*pair(graph(), batch=3))


def test_reference_matches_the_block_written_in_pytorch():
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle here")
    F = torch.nn.functional
    _, ref = pair(graph(), batch=3)
    rng = np.random.default_rng(3)
    images = rng.standard_normal((3, 3, 7, 6)).astype(np.float32)
    labels = np.array([1, 4, 0])
    loss, grads = ref.gradients(images, labels, train=False)
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in ref.params.items()}

    def conv(name, h, pad=0):
        return F.conv2d(h, p[f"{name}.weight"], p[f"{name}.bias"], padding=pad)

    x = F.hardswish(conv("feat.conv", torch.tensor(images, dtype=torch.float64), pad=1))
    s = F.adaptive_avg_pool2d(x, 1)
    s = F.hardsigmoid(conv("squeeze.conv2", F.relu6(conv("squeeze.conv", s))))
    shift = F.silu(conv("shift.conv", F.adaptive_avg_pool2d(torch.tensor(images, dtype=torch.float64), 1)))
    y = F.hardtanh(F.gelu(x * s + shift), -1.5, 2.0)
    scores = F.linear(y.flatten(1), p["scores.weight"], p["scores.bias"])
    t_loss = F.cross_entropy(scores, torch.tensor(labels))
    t_loss.backward()
    assert abs(float(loss) - t_loss.item()) < 1e-5 * abs(t_loss.item())
    for name, grad in grads.items():
        expected = p[name].grad.numpy()
        err = np.linalg.norm(grad - expected) / np.linalg.norm(expected)
        assert err < 1e-4, (name, err)


def test_onnx_export_and_torch_twin_give_the_reference_logits():
    """Every new kind in one graph: onnxruntime on the export and the PyTorch twin."""
    torch = pytest.importorskip("torch", reason="PyTorch runs the twin")
    ort = pytest.importorskip("onnxruntime", reason="the `onnx` extra is not installed")
    from netdsl.inspect.onnx_export import onnx_model
    from netdsl.inspect.torch_twin import TorchTwin

    text = SE.replace("-> clip(-1.5, 2)", "-> clip(-1.5, 2) -> adaptive_maxpool(4) -> adaptive_avgpool([3, 2]) "
                                          "-> softmax")
    g = compile_graph(text=text, file="se.net", training=True)
    _, ref = pair(g, batch=2)
    images = np.random.default_rng(4).standard_normal((2, 3, 7, 6)).astype(np.float32)
    expected = ref.forward(images)
    session = ort.InferenceSession(onnx_model(g, dict(ref.params)).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    logits, probabilities = session.run(["logits", "probabilities"], {"image": images})
    twin = TorchTwin(g, dict(ref.params)).forward(torch.from_numpy(images)).detach().numpy()
    for name, got in (("onnx", logits), ("torch twin", twin)):
        err = np.linalg.norm(got - expected) / np.linalg.norm(expected)
        assert err < 1e-4, (name, err)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
