"""A small DenseNet (Huang et al. 2017) written in PyTorch: stem conv, two dense blocks of
bottleneck layers (BN, ReLU, 1x1 conv, BN, ReLU, 3x3 conv, the output concatenated with the
layer's input by torch.cat), a transition (BN, ReLU, 1x1 conv, avgpool 2), global average
pool and a linear classifier. Exported by torch.onnx.export and `netdsl import`ed, its
logits are PyTorch's; trained from the imported weights (`netdsl train FILE --init CKPT`),
its loss and gradients on one batch are PyTorch's."""
from __future__ import annotations

import numpy as np
import pytest
from test_onnx_import import RTOL, imported_logits, param_count, rel_err, spread_batch_norms

from netdsl.cli import main
from netdsl.data.synthetic import make_shapes
from netdsl.train.launch import start_run

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
nn = torch.nn

TRAIN = """
train { batch = 4; epochs = 1; seed = 2; optimizer = sgd(lr=0.05, momentum=0.9)
        schedule = constant; augment = [random_crop(16, from=16), scale(0.01)]; test = center_crop }
"""


class Bottleneck(nn.Module):
    def __init__(self, c_in, growth, width=4):
        super().__init__()
        self.norm1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, width * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(width * growth)
        self.conv2 = nn.Conv2d(width * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv1(torch.relu(self.norm1(x)))
        return torch.cat([x, self.conv2(torch.relu(self.norm2(y)))], 1)


def dense_block(c_in, layers, growth):
    return nn.Sequential(*[Bottleneck(c_in + i * growth, growth) for i in range(layers)]), c_in + layers * growth


class Transition(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.norm, self.conv = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x):
        return nn.functional.avg_pool2d(self.conv(torch.relu(self.norm(x))), 2)


class DenseNet(nn.Module):
    def __init__(self, growth=4, classes=6):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.block1, c = dense_block(8, 3, growth)
        self.trans1 = Transition(c, c // 2)
        self.block2, c = dense_block(c // 2, 4, growth)
        self.norm = nn.BatchNorm2d(c)
        self.classifier = nn.Linear(c, classes)

    def forward(self, x):
        x = self.block2(self.trans1(self.block1(self.stem(x))))
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(torch.relu(self.norm(x)), 1), 1))


def exported(tmp_path, opset):
    torch.manual_seed(0)
    module = DenseNet()
    spread_batch_norms(module)
    torch.onnx.export(module, torch.randn(2, 3, 16, 16), str(tmp_path / "densenet.onnx"), opset_version=opset,
                      dynamo=False, training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    return module, tmp_path / "densenet.onnx"


@pytest.mark.parametrize("opset", [13, 17])
def test_densenet_logits_are_pytorchs(tmp_path, opset):
    module, path = exported(tmp_path, opset)
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = module(images).numpy()
    net, _, logits = imported_logits(tmp_path, path, images.numpy())
    assert rel_err(logits, expected) <= RTOL
    assert param_count(net) == sum(p.numel() for p in module.parameters())
    text = (tmp_path / "imported.net").read_text()
    # the seven dense layers are one block (its concat and two batch norms), used as stacks of 3 and 4
    assert "# used 7 times" in text and "* 3" in text and "* 4" in text, text
    assert text.count(" = concat(") == 1 and text.count(" = batchnorm(") == 2 + 2, text


def test_densenet_trained_from_the_import_has_pytorchs_loss_and_gradients(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path / "cache"))
    module, path = exported(tmp_path, 17)
    net_file = tmp_path / "densenet.net"
    assert main(["import", str(path), "-o", str(net_file), "--flat"]) == 0  # torch's names, one per layer
    net_file.write_text(net_file.read_text() + TRAIN)
    weights = net_file.with_suffix(".npz")
    data = make_shapes(tmp_path / "shapes", classes=6, train_per_class=2, val_per_class=1, size=16, seed=3)
    trainer = start_run(str(net_file), {}, str(data), str(tmp_path / "run"), "reference", 1, None, None, 1, None,
                        False, init=str(weights))
    tensors = len(list(module.parameters()))
    assert f"init: {tensors} of {tensors} parameter tensors loaded from {weights}" in capsys.readouterr().out
    ex = trainer.ex

    def netdsl_name(torch_name):
        """`block1.0.conv1.weight` is `block1_block1_0_conv1.weight`: torch scopes the node
        `/block1/block1.0/conv1/Conv`, a Sequential's child by its parent's name and index."""
        *parts, param = torch_name.split(".")
        scopes = [f"{parts[i - 1]}_{p}" if p.isdigit() else p for i, p in enumerate(parts)]
        return f"{'_'.join(scopes)}.{param}"
    params = dict(module.named_parameters())
    assert {netdsl_name(n) for n in params} == set(ex.params)
    for name, p in params.items():
        assert np.array_equal(ex.params[netdsl_name(name)], p.detach().numpy()), name

    rng = np.random.default_rng(7)
    images = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    labels = np.array([0, 5, 2, 3])
    loss, grads = ex.gradients(images, labels, train=True)
    module.train()  # batch statistics in the forward, as netdsl's training step
    t_loss = nn.functional.cross_entropy(module(torch.from_numpy(images)), torch.from_numpy(labels))
    t_loss.backward()
    assert float(loss) == pytest.approx(t_loss.item(), rel=1e-5)
    for name, p in params.items():
        assert rel_err(grads[netdsl_name(name)], p.grad.numpy()) <= RTOL, name
