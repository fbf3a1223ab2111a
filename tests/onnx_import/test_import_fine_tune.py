"""The weights `netdsl import` writes, used by `train --init`, `test` and `predict`:
a PyTorch module's first training step (loss and the SGD update) is PyTorch's
own on the same batch, so the imported weights are really the ones used."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
nn = torch.nn

from netdsl.cli import main  # noqa: E402
from netdsl.data.folder import decode_square  # noqa: E402
from netdsl.data.synthetic import make_shapes  # noqa: E402
from netdsl.train.launch import start_run  # noqa: E402

TRAIN = """
train { batch = 8; epochs = 1; seed = 2; optimizer = sgd(lr=0.05, momentum=0.9, weight_decay=0.0005)
        schedule = constant; augment = [random_crop(16, from=16), scale(0.01)]; test = center_crop }
"""


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(torch.max_pool2d(torch.relu(self.bn(self.conv(x))), 2), 1))


@pytest.fixture()
def imported(tmp_path, monkeypatch):
    """(torch module, .net file with a train block, its weights, a 16 px shapes folder)."""
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = Small()
    with torch.no_grad():  # statistics that are not the defaults, so loading them shows
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
        model.bn.weight.uniform_(0.5, 1.5)
    model.eval()
    onnx_file = tmp_path / "small.onnx"
    torch.onnx.export(model, torch.randn(1, 3, 16, 16), str(onnx_file), dynamo=False,
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    net_file = tmp_path / "small.net"
    assert main(["import", str(onnx_file), "-o", str(net_file)]) == 0
    net_file.write_text(net_file.read_text() + TRAIN)  # the imported file has no train block of its own
    data = make_shapes(tmp_path / "shapes", classes=10, train_per_class=8, val_per_class=2, size=16, seed=3)
    return model, net_file, net_file.with_suffix(".npz"), data


def test_first_step_of_an_imported_model_is_pytorchs(imported, tmp_path, capsys):
    model, net_file, weights, data = imported
    trainer = start_run(str(net_file), {}, str(data), str(tmp_path / "run"), "reference", 1, None, None, 1, None,
                        False, init=str(weights))
    out = capsys.readouterr().out
    assert f"init: 6 of 6 parameter tensors loaded from {weights}, and 2 running-state tensors" in out
    ex = trainer.ex
    assert np.array_equal(ex.state["bn.running_mean"], model.bn.running_mean.numpy())
    assert np.array_equal(ex.state["bn.running_var"], model.bn.running_var.numpy())
    torch_params = dict(model.named_parameters())
    assert set(torch_params) == set(ex.params)
    for name, p in torch_params.items():
        assert np.array_equal(ex.params[name], p.detach().numpy()), name

    seen = {}
    inner = ex.step

    def step(images, labels):
        out = inner(images, labels)
        if not seen:
            seen.update(images=np.array(images), labels=np.array(labels), loss=out["loss"],
                        after={k: v.copy() for k, v in ex.params.items()})
        return out
    ex.step = step
    trainer.run()

    model.train()  # batch statistics in the forward, as netdsl's training step
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.0005)
    logits = model(torch.from_numpy(seen["images"]))
    loss = nn.functional.cross_entropy(logits, torch.from_numpy(seen["labels"]).long())
    assert seen["loss"] == pytest.approx(loss.item(), rel=1e-5)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()  # zero momentum before it: PyTorch's first step is plain SGD with decay, as --init's
    for name, p in model.named_parameters():
        want = p.detach().numpy()
        assert np.linalg.norm(seen["after"][name] - want) <= 1e-5 * np.linalg.norm(want), name


def test_test_and_predict_take_the_imported_weights(imported, tmp_path, capsys):
    model, net_file, weights, data = imported
    image = sorted((data / "val").rglob("*.jpeg"))[0]
    assert main(["predict", str(weights), str(image), "--backend", "reference"]) == 0
    ranked = capsys.readouterr().out.splitlines()[1:]
    pixels = decode_square(str(image), 16).astype(np.float32).transpose(2, 0, 1)[None] * np.float32(0.01)
    with torch.no_grad():
        p = torch.softmax(model(torch.from_numpy(pixels)), 1)[0].numpy()
    best = int(np.argmax(p))
    assert ranked[0].split()[-1] == str(best) and float(ranked[0].split()[0][:-1]) == pytest.approx(100 * p[best],
                                                                                                    abs=0.006)

    assert main(["test", "--checkpoint", str(weights), "--data", str(data), "--backend", "reference",
                 "--no-progress"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    classes = sorted(p.name for p in (data / "val").iterdir())
    files = sorted((data / "val").rglob("*.jpeg"))
    batch = np.stack([decode_square(str(f), 16).astype(np.float32).transpose(2, 0, 1) for f in files]) * 0.01
    labels = torch.tensor([classes.index(f.parent.name) for f in files])
    with torch.no_grad():  # no mean image subtracted: none belongs to imported weights
        want = nn.functional.cross_entropy(model(torch.from_numpy(batch.astype(np.float32))), labels).item()
    assert line.startswith("20 validation images (centre crop): loss ")
    assert float(line.split("loss ")[1].split(",")[0]) == pytest.approx(want, abs=6e-5)
    assert main(["test", "--checkpoint", str(weights), "--data", str(data), "--backend", "reference",
                 "--transform", "none", "--no-progress"]) == 0  # the ensemble path: no mean image either
    assert capsys.readouterr().out.strip().splitlines()[-1] == line

    moved = tmp_path / "elsewhere.npz"
    moved.write_bytes(weights.read_bytes())
    assert main(["predict", str(moved), str(image), "--backend", "reference"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {moved} is not in a run directory (no config.json beside it)")
    assert main(["predict", "--net", str(net_file), str(moved), str(image), "--backend", "reference"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ranked
    assert main(["test", str(net_file), "--checkpoint", str(moved), "--data", str(data), "--backend", "reference",
                 "--no-progress"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == line
