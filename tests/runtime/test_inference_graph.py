"""Networks at the two ends of a classifier, against PyTorch on the reference and
cpu backends: one without a loss ending in a `softmax` (an inference graph: its
output is the probabilities, and `predict` shows them as they are), and a
`softmax_loss` over C x 1 x 1 scores (Network in Network's head: a convolution
with one filter per class, then a global average pool), which is the loss of
the flattened C scores with the gradient in the map's shape."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is the oracle here")
F = torch.nn.functional

from netdsl.cli import main  # noqa: E402
from netdsl.data.folder import decode_square  # noqa: E402
from netdsl.train.launch import network_from_source  # noqa: E402
from tolerances import assert_close  # noqa: E402

BACKENDS = ["reference", "cpu"]
RTOL = 1e-5

NO_LOSS = """input image : 3 x 12 x 12
conv1 = conv(image, 6, 3, pad=1) -> relu
fc1 = fc(conv1, 7)
probs = softmax(fc1)
train { augment = [random_crop(12, from=12), scale(0.01)] }
"""

NIN_HEAD = """input image : 3 x 9 x 9
input label : 5 classes
c1 = conv(image, 6, 3, pad=1) -> relu
scores = conv(c1, 5, size=1) -> global_avgpool
loss = softmax_loss(scores, label)
"""


def weights(ex, seed=0) -> dict:
    gen = np.random.default_rng(seed)
    return {k: (gen.standard_normal(v.shape) * 0.3).astype(np.float32) for k, v in ex.params.items()}


def conv(p, name, x, pad):
    return F.conv2d(x, torch.from_numpy(p[f"{name}.weight"]), torch.from_numpy(p[f"{name}.bias"]), padding=pad)


def torch_probs(p, images):
    x = torch.relu(conv(p, "conv1.conv", torch.from_numpy(images), 1))
    scores = F.linear(x.flatten(1), torch.from_numpy(p["fc1.weight"]), torch.from_numpy(p["fc1.bias"]))
    return torch.softmax(scores, dim=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_output_of_a_network_without_a_loss_is_its_softmax(backend):
    net = network_from_source(NO_LOSS, "noloss.net", {})
    ex = net.executor(backend=backend, batch=3)
    p = weights(ex)
    ex.set_params(p)
    images = np.random.default_rng(1).standard_normal((3, 3, 12, 12)).astype(np.float32)
    got = ex.forward(images)
    assert got.shape == (3, 7)
    assert_close(got, torch_probs(p, images).numpy(), RTOL, "probs")
    assert_close(ex.forward(images[:1]), torch_probs(p, images[:1]).numpy(), RTOL, "probs of a short batch")


def test_predict_shows_the_softmax_as_it_is(tmp_path, capsys):
    from PIL import Image
    net_file = tmp_path / "noloss.net"
    net_file.write_text(NO_LOSS)
    ex = network_from_source(NO_LOSS, str(net_file), {}).executor(backend="reference", batch=1)
    p = weights(ex, 2)
    ex.set_params(p)
    ex.save(net_file.with_suffix(".npz"))
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(image)
    for backend in BACKENDS:
        assert main(["predict", str(net_file.with_suffix(".npz")), str(image), "--backend", backend]) == 0
        ranked = capsys.readouterr().out.splitlines()[1:]
        pixels = decode_square(str(image), 12).astype(np.float32).transpose(2, 0, 1)[None] * np.float32(0.01)
        want = torch_probs(p, pixels)[0].numpy()
        order = np.argsort(-want, kind="stable")[:5]
        assert [line.split()[-1] for line in ranked] == [str(i) for i in order], backend
        shown = [float(line.split()[0][:-1]) / 100 for line in ranked]
        np.testing.assert_allclose(shown, want[order], atol=6e-5)  # printed to 0.01%


def test_predict_refuses_an_output_that_is_a_map(tmp_path, capsys):
    net_file = tmp_path / "map.net"
    net_file.write_text("input image : 3 x 12 x 12\nc = conv(image, 4, 3, pad=1) -> softmax\n"
                        "train { augment = [random_crop(12, from=12)] }\n")
    network_from_source(net_file.read_text(), str(net_file), {}).executor(batch=1).save(net_file.with_suffix(".npz"))
    assert main(["predict", str(net_file.with_suffix(".npz")), str(net_file), "--backend", "reference"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{net_file}:2:33: error: predict ranks classes, and the network's output `c.softmax` is "
                          "4x12x12 per image"), err
    assert "hint: end the network with one score per class" in err


def torch_nin(p, images, labels):
    params = {k: torch.from_numpy(v.astype(np.float64)).requires_grad_() for k, v in p.items()}
    x = torch.from_numpy(images.astype(np.float64))
    for name, pad in (("c1.conv", 1), ("scores.conv", 0)):
        x = F.conv2d(x, params[f"{name}.weight"], params[f"{name}.bias"], padding=pad)
        x = torch.relu(x) if name == "c1.conv" else x
    scores = x.mean(dim=(2, 3), keepdim=True)  # N x 5 x 1 x 1
    loss = F.cross_entropy(scores.flatten(1), torch.from_numpy(labels))
    loss.backward()
    return scores.detach().numpy(), loss.item(), {k: v.grad.numpy() for k, v in params.items()}


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_loss_of_c_x_1_x_1_scores_is_cross_entropy_of_the_flattened_scores(backend):
    net = network_from_source(NIN_HEAD, "nin_head.net", {})
    ex = net.executor(backend=backend, batch=4)
    p = weights(ex, 4)
    ex.set_params(p)
    gen = np.random.default_rng(5)
    images = gen.standard_normal((4, 3, 9, 9)).astype(np.float32)
    labels = gen.integers(0, 5, 4)
    want_scores, want_loss, want_grads = torch_nin(p, images, labels)
    scores = ex.forward(images)
    assert scores.shape == (4, 5, 1, 1)
    assert_close(scores, want_scores, RTOL, "scores")
    loss, grads = ex.gradients(images, labels, train=False)
    assert_close(loss, want_loss, RTOL, "loss")
    for name, want in want_grads.items():
        assert_close(grads[name], want, 1e-4, name)
    metrics = ex.evaluate(images, labels)
    top1 = float((want_scores.reshape(4, 5).argmax(axis=1) != labels).mean())
    assert metrics["top1_error"] == top1 and metrics["loss"] == pytest.approx(want_loss, rel=RTOL)
