"""Inference graphs through ONNX: `netdsl export` of a network without a loss writes
its final tensors as the outputs, and `netdsl import --no-loss` reads such a graph
back as a network without a loss that computes the same outputs; without
`--no-loss` the import is a classifier (a softmax_loss over the scores, the final
Softmax dropped), as before. A C x 1 x 1 classifier head exports flattened logits."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from netdsl.cli import main  # noqa: E402
from netdsl.inspect.onnx_export import onnx_model  # noqa: E402
from netdsl.train.launch import network_from_source  # noqa: E402
from test_onnx_import import _model, param_count, rel_err  # noqa: E402

RTOL = 1e-5

NO_LOSS = """input image : 3 x 32 x 32
conv1 = conv(image, 8, 3, pad=1) -> relu
fc1 = fc(conv1, 10)
probs = softmax(fc1)
"""


def spread(ex, seed=0) -> dict:
    gen = np.random.default_rng(seed)
    return {k: (gen.standard_normal(v.shape) * 0.05).astype(np.float32) for k, v in ex.params.items()}


def exported(tmp_path, source, batch=3):
    """(network, its reference executor with spread weights, images, the ONNX file)."""
    net = network_from_source(source, "original.net", {})
    ex = net.executor(backend="reference", batch=batch)
    ex.set_params(spread(ex))
    images = np.random.default_rng(1).standard_normal((batch, *net.graph.nodes["image"].shape)).astype(np.float32)
    path = tmp_path / "original.onnx"
    onnx.save(onnx_model(net.graph, dict(ex.params)), path)
    return net, ex, images, path


def imported(tmp_path, onnx_file, *flags):
    net_file = tmp_path / "imported.net"
    assert main(["import", str(onnx_file), "-o", str(net_file), *flags]) == 0
    net = network_from_source(net_file.read_text(), str(net_file), {})
    ex = net.executor(backend="reference", batch=3)
    ex.load(net_file.with_suffix(".npz"))
    return net_file, net, ex


def test_export_of_a_network_without_a_loss_outputs_its_final_tensor(tmp_path):
    _, ex, images, path = exported(tmp_path, NO_LOSS)
    model = onnx.load(path)
    assert [o.name for o in model.graph.output] == ["probs"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": images})
    assert rel_err(got, ex.forward(images)) <= RTOL


def test_import_without_a_loss_round_trips(tmp_path, capsys):
    net, ex, images, path = exported(tmp_path, NO_LOSS)
    net_file, back, back_ex = imported(tmp_path, path, "--no-loss")
    text = net_file.read_text()
    assert "softmax_loss" not in text and "label" not in text and "= softmax(" in text
    assert main(["info", str(net_file)]) == 0
    assert "(no loss" in capsys.readouterr().out
    assert param_count(back) == param_count(net) == 82_154
    assert rel_err(back_ex.forward(images), ex.forward(images)) <= RTOL  # the probabilities
    assert main(["train", str(net_file)]) == 2
    assert "has no loss layer, so it cannot be trained" in capsys.readouterr().err


def test_the_default_import_is_still_a_classifier(tmp_path):
    _, ex, images, path = exported(tmp_path, NO_LOSS)
    net_file, _, back_ex = imported(tmp_path, path)
    assert "loss = softmax_loss(" in net_file.read_text()
    logits = back_ex.forward(images)  # the scores the dropped softmax read
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    assert rel_err(e / e.sum(axis=1, keepdims=True), ex.forward(images)) <= RTOL


def test_an_output_that_is_a_map_imports_only_without_a_loss(tmp_path, capsys):
    path = _model(tmp_path, onnx.helper.make_node("Relu", ["x"], ["y"], name="r"))
    assert main(["import", str(path), "-o", str(tmp_path / "map.net")]) == 2
    err = capsys.readouterr().err
    assert "not a vector of class scores" in err and "--no-loss" in err
    assert main(["import", str(path), "-o", str(tmp_path / "map.net"), "--no-loss"]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "map.net")]) == 0
    net = network_from_source((tmp_path / "map.net").read_text(), "map.net", {})
    shape = net.graph.nodes["image"].shape
    images = np.random.default_rng(2).standard_normal((2, *shape)).astype(np.float32)
    out = net.executor(backend="reference", batch=2).forward(images)
    np.testing.assert_array_equal(out, np.maximum(images, 0))


def test_a_c_x_1_x_1_classifier_exports_flat_logits(tmp_path):
    source = ("input image : 3 x 8 x 8\ninput label : 5 classes\n"
              "scores = conv(image, 5, size=3, pad=1) -> global_avgpool\nloss = softmax_loss(scores, label)\n")
    _, ex, images, path = exported(tmp_path, source)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, probabilities = session.run(["logits", "probabilities"], {"image": images})
    scores = ex.forward(images)
    assert scores.shape == (3, 5, 1, 1) and logits.shape == (3, 5)
    assert rel_err(logits, scores.reshape(3, 5)) <= RTOL
    _, back, back_ex = imported(tmp_path, path)  # a classifier again, its scores the flattened map
    assert rel_err(back_ex.forward(images), scores.reshape(3, 5)) <= RTOL
