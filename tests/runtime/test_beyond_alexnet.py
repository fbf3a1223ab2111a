"""Networks past AlexNet built from the newer kinds: a residual block whose
shortcut fans out to a convolution and an add (so its gradient is a sum of
two parts), run by the cpu backend against the reference; the errors of a
residual with mismatched shapes and of a loss after a map; removing a layer
with `--set`; and examples/nin-cifar.net against a torch twin."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_cpu_backend import compare, data, pair

import netdsl
from netdsl.compiler import compile_graph
from netdsl.errors import NetDslError
from netdsl.runtime.reference import ReferenceExecutor

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"

RESIDUAL = """
defaults conv, fc { init = gauss(0.3); bias = 0.1 }
train { optimizer = sgd(lr=0.05, momentum=0.9, weight_decay=0.001) }
input image : 3 x 7 x 5
input label : 4 classes
stem = conv(image, 6, size=3, pad=1) -> relu
branch = conv(stem, 6, size=3, pad=1) -> relu -> conv(6, size=3, pad=1)
res = add(stem, branch) -> relu
scores = fc(res, 4)
loss = softmax_loss(scores, label)
"""


def test_residual_block_matches_the_reference():
    graph = compile_graph(text=RESIDUAL, file="residual.net", training=True)
    assert "stem.relu:gradsum" in graph, "the shortcut's gradient is the sum of the branch's and the add's"
    compare(*pair(graph, batch=3))


def test_added_shapes_must_agree_and_the_error_suggests_a_projection():
    text = RESIDUAL.replace("branch = conv(stem, 6, size=3, pad=1)", "branch = conv(stem, 8, size=3, stride=2, pad=1)")
    with pytest.raises(NetDslError) as caught:
        compile_graph(text=text, file="residual.net", training=True)
    message = str(caught.value)
    assert message.startswith("residual.net:8:") and "add `res.add`" in message
    assert "6x7x5 and 6x4x3" in message
    # a 1x1 stride-2 convolution keeps rows 0, 2, 4, 6 of 7 and columns 0, 2, 4 of 5
    assert "`conv(x, 6, size=1, stride=2)` gives 6x4x3" in message


def test_add_needs_two_inputs():
    with pytest.raises(NetDslError, match="two or more inputs"):
        compile_graph(text=RESIDUAL.replace("add(stem, branch)", "add(branch)"), file="r.net", training=True)


NORMALISED = """
param norm = lrn
defaults lrn { size = 3; alpha = 0.1; beta = 0.75; k = 2 }
defaults conv, fc { init = gauss(0.3); bias = 0.1 }
input image : 3 x 6 x 6
input label : 4 classes
c1 = conv(image, 5, size=3) -> relu -> norm -> maxpool(2)
scores = fc(c1, 4)
loss = softmax_loss(scores, label)
"""


def test_set_norm_identity_removes_the_layer():
    """The layer is written `-> norm` with its arguments under `defaults`, so identity
    (which takes none) can stand in for it; the network then computes what the file
    without that layer computes, with the same weights."""
    removed = compile_graph(text=NORMALISED, overrides={"norm": "identity"}, training=True)
    kept = compile_graph(text=NORMALISED, training=True)
    absent = compile_graph(text=NORMALISED.replace(" -> norm", ""), training=True)
    assert removed.nodes["c1.norm"].kind == "identity" and kept.nodes["c1.norm"].kind == "lrn"
    images, _ = data(absent, 2)
    without = ReferenceExecutor(absent, 2, seed=3)
    for graph, same in ((removed, True), (kept, False)):
        ex = ReferenceExecutor(graph, 2, seed=3)
        ex.set_params(without.params)
        scores = ex.forward(images)
        assert np.array_equal(scores, without.forward(images)) == same


def test_identity_rejects_arguments_instead_of_ignoring_them():
    text = NORMALISED.replace("-> norm", "-> norm(3)")
    with pytest.raises(NetDslError, match="identity takes at most 0 positional"):
        compile_graph(text=text, overrides={"norm": "identity"})


def nin(F, p, x):
    """Network in Network written out in torch from the paper, taking netdsl's weights by name."""
    def mlpconv(name, h, size, pad):
        names = [f"{name}.conv", f"{name}.conv2", f"{name}.conv3"]
        h = F.relu(F.conv2d(h, p[names[0] + ".weight"], p[names[0] + ".bias"], padding=pad))
        for n in names[1:]:
            h = F.relu(F.conv2d(h, p[n + ".weight"], p[n + ".bias"]))
        return h

    h = F.max_pool2d(mlpconv("block1", x, 5, 2), 3, 2, ceil_mode=True)
    h = F.avg_pool2d(mlpconv("block2", h, 5, 2), 3, 2, ceil_mode=True, count_include_pad=False)
    return F.adaptive_avg_pool2d(mlpconv("block3", h, 3, 1), 1).flatten(1)


def test_nin_example_matches_a_torch_twin():
    torch = pytest.importorskip("torch", reason="PyTorch (the `oracle` extra) is not installed")
    from test_torch_networks import EXAMPLES, rel_err, well_scaled_params

    F = torch.nn.functional
    net = netdsl.load(EXAMPLES / "nin-cifar.net")
    widths = [(3, 192, 5), (192, 160, 1), (160, 96, 1), (96, 192, 5), (192, 192, 1), (192, 192, 1),
              (192, 192, 3), (192, 192, 1), (192, 10, 1)]
    twin = torch.nn.Sequential(*[torch.nn.Conv2d(i, o, k) for i, o, k in widths])
    expected = sum(v.numel() for v in twin.parameters())
    assert expected == 966_986
    assert sum(int(np.prod(s)) for n in net.graph for s in net.graph.nodes[n].params.values()) == expected

    ex = net.executor(backend="reference", batch=2, seed=0)
    ex.set_params(well_scaled_params(ex))
    images = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    labels = np.array([3, 9])
    logits = ex.forward(images)
    loss, grads = ex.gradients(images, labels, train=False)
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in ex.params.items()}
    t_logits = nin(F, p, torch.tensor(images, dtype=torch.float64))
    t_loss = F.cross_entropy(t_logits, torch.tensor(labels))
    t_loss.backward()
    assert rel_err(logits, t_logits.detach().numpy()) < 1e-4
    assert abs(float(loss) - t_loss.item()) < 1e-4 * abs(t_loss.item())
    worst = max((rel_err(grads[k], p[k].grad.numpy()), k) for k in grads)
    assert worst[0] < 1e-4, f"largest gradient mismatch: {worst[1]} ({worst[0]:.2e})"


def test_softmax_loss_after_a_map_asks_for_flatten():
    """C x 1 x 1 scores are class scores, as after torch's flatten; a wider map is not."""
    one_by_one = NORMALISED.replace("scores = fc(c1, 4)", "scores = conv(c1, 4, size=2)")
    assert compile_graph(text=one_by_one).nodes["scores"].shape == (4, 1, 1)
    text = NORMALISED.replace("scores = fc(c1, 4)", "scores = conv(c1, 4, size=1)")
    with pytest.raises(NetDslError, match="4x2x2") as caught:
        compile_graph(text=text)
    assert "-> flatten" in str(caught.value)


def test_spatial_lrn_needs_an_odd_window():
    text = NORMALISED.replace("size = 3;", "size = 4; region = within;")
    with pytest.raises(NetDslError, match="region=within needs an odd size"):
        compile_graph(text=text)
    graph = compile_graph(text=NORMALISED.replace("size = 3;", "size = 3; region = within;"))
    assert graph.nodes["c1.norm"].args["region"] == "within"


def resnet20(F, p, x, train):
    """He et al.'s CIFAR ResNet-20 with 1x1 projection shortcuts, in torch from the paper,
    taking netdsl's weights by name (batch statistics in training, the initial ones at test)."""
    def conv(name, h, stride=1, pad=1):
        return F.conv2d(h, p[f"{name}.weight"], p[f"{name}.bias"], stride=stride, padding=pad)

    def bn(name, h):
        c = h.shape[1]
        mean, var = (None, None) if train else (h.new_zeros(c), h.new_ones(c))
        return F.batch_norm(h, mean, var, p[f"{name}.weight"], p[f"{name}.bias"], training=train, eps=1e-5)

    h = F.relu(bn("stem.batchnorm", conv("stem.conv", x)))
    # the example's block uses: s1.basic, s1.basic2, s1.basic3, then s2.down, s2.basic, s2.basic2, ...
    for stage in (1, 2, 3):
        uses = (["basic", "basic2", "basic3"] if stage == 1 else ["down", "basic", "basic2"])
        for use in uses:
            name = f"s{stage}.{use}"
            stride = 2 if use == "down" else 1
            shortcut = bn(f"{name}.proj.batchnorm", conv(f"{name}.proj.conv", h, stride, 0)) if stride == 2 else h
            branch = F.relu(bn(f"{name}.c1.batchnorm", conv(f"{name}.c1.conv", h, stride)))
            branch = bn(f"{name}.c2.batchnorm", conv(f"{name}.c2.conv", branch))
            h = F.relu(branch + shortcut)
    return F.linear(F.adaptive_avg_pool2d(h, 1).flatten(1), p["scores.weight"], p["scores.bias"])


@pytest.mark.parametrize("train", [True, False], ids=["train", "test"])
def test_resnet20_example_matches_a_torch_twin(train):
    torch = pytest.importorskip("torch", reason="PyTorch (the `oracle` extra) is not installed")
    from test_torch_networks import EXAMPLES, rel_err, well_scaled_params

    F = torch.nn.functional
    net = netdsl.load(EXAMPLES / "resnet20-cifar.net")
    ex = net.executor(backend="reference", batch=2, seed=0)
    ex.set_params(well_scaled_params(ex))
    # the twin's count: torch modules with the same layout, conv biases included
    convs = [(3, 16, 3)] + [(16, 16, 3)] * 6 + [(16, 32, 1), (16, 32, 3)] + [(32, 32, 3)] * 5 + \
            [(32, 64, 1), (32, 64, 3)] + [(64, 64, 3)] * 5
    modules = [torch.nn.Conv2d(i, o, k) for i, o, k in convs] + [torch.nn.BatchNorm2d(o) for _, o, _ in convs]
    expected = sum(v.numel() for m in modules + [torch.nn.Linear(64, 10)] for v in m.parameters())
    assert sum(v.size for v in ex.params.values()) == expected == 273_258
    assert sum(v.size for v in ex.state.values()) == 2 * sum(o for _, o, _ in convs)

    images = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    labels = np.array([3, 9])
    loss, grads = ex.gradients(images, labels, train=train)
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in ex.params.items()}
    t_logits = resnet20(F, p, torch.tensor(images, dtype=torch.float64), train)
    t_loss = F.cross_entropy(t_logits, torch.tensor(labels))
    t_loss.backward()
    assert abs(float(loss) - t_loss.item()) < 1e-4 * abs(t_loss.item())
    worst = max((rel_err(grads[k], p[k].grad.numpy()), k) for k in grads
                if float(p[k].grad.norm()) > 1e-6 * float(t_loss.item()))  # conv biases before bn: ~0 in training
    assert worst[0] < 1e-4, f"largest gradient mismatch: {worst[1]} ({worst[0]:.2e})"


def test_readme_residual_block_compiles():
    readme = (EXAMPLES_DIR.parent / "docs" / "language.md").read_text()
    block = readme.split("A residual block (")[1].split("```\n")[1]
    text = "input image : 3 x 8 x 8\ninput label : 4 classes\n" + block + "s = fc(b2, 4)\nloss = softmax_loss(s, label)\n"
    g = compile_graph(text=text, training=True)
    assert g.nodes["b2.add"].shape == (32, 4, 4)
    assert "stem.relu:gradsum" in g  # the shortcut's gradient: branch plus add
