"""ONNX export checked by onnxruntime: every layer kind on its registry
examples against the numpy reference, and every example network's logits
against the reference executor (relative error below 1e-4)."""
from __future__ import annotations

import numpy as np
import pytest
from networks import EXAMPLES, TWO_TOWER, make_run, well_scaled

from netdsl.cli import main
from netdsl.layers import REGISTRY
from netdsl.layers.base import Context
from netdsl.train.launch import network_from_source

onnx = pytest.importorskip("onnx", reason="the `onnx` extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="the `onnx` extra is not installed")
from onnx import TensorProto, helper  # noqa: E402

from netdsl.inspect.onnx_export import Builder, onnx_model  # noqa: E402
from netdsl.nodes import Node  # noqa: E402

RTOL = 1e-4
SKIPPED = {k for k, layer in REGISTRY.items() if "loss" in layer.traits}  # training only: not exported

# LRN strong enough that a wrong alpha or window shows, with odd and even windows.
STRONG_LRN = """
network strong
input image : 3 x 9 x 9
input label : 4 classes
c1 = conv(image, 7, size=3) -> lrn(3, alpha=0.5, beta=0.75, k=1) -> relu -> lrn(4, alpha=0.3, beta=0.6, k=1.5)
f  = fc(c1, 6) -> tanh
out = fc(f, 4)
loss = softmax_loss(out, label)
train { batch = 2; augment = []; test = center_crop }
"""


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def run_onnx(model, images):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["logits", "probabilities"], {"image": images.astype(np.float32)})


def network_error(net, seed=0) -> float:
    ex = net.executor(backend="reference", batch=2, seed=seed)
    ex.set_params(well_scaled(ex, seed))
    shape = net.graph.nodes[ex.image_input].shape
    images = np.random.default_rng(seed).standard_normal((2, *shape)).astype(np.float32)
    expected = ex.forward(images)
    logits, probabilities = run_onnx(onnx_model(net.graph, dict(ex.params)), images)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    return rel_err(logits, expected)


def test_every_kind_has_a_mapping():
    assert {k for k, layer in REGISTRY.items() if layer.has_onnx()} == set(REGISTRY) - SKIPPED


@pytest.mark.parametrize("kind", sorted(set(REGISTRY) - SKIPPED - {"transfer"}))
def test_each_kind_on_its_examples(kind):
    """A one-layer graph per registry example: onnxruntime against the numpy forward."""
    layer = REGISTRY[kind]
    r = np.random.default_rng(1)
    for example in layer.examples:
        a = {spec.name: spec.default for spec in layer.args} | example.args
        shapes = [tuple(s) for s in example.in_shapes]
        out_shape = layer.output_shape(a, shapes)
        params = {p: r.standard_normal(s).astype(np.float32) for p, s in layer.param_shapes(a, shapes).items()}
        xs = [r.standard_normal((2, *s)).astype(np.float32) for s in shapes]
        expected, _ = layer.forward(a, params, xs, Context(train=False))
        b = Builder({f"y.{p}": v for p, v in params.items()})
        for i, s in enumerate(shapes):
            b.shapes[f"x{i}"] = s
        layer.onnx(b, "y", Node(kind=kind, args=a, shape=out_shape), [f"x{i}" for i in range(len(shapes))])
        graph = helper.make_graph(
            b.nodes, "one", [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, [2, *s])
                             for i, s in enumerate(shapes)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], b.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        got = session.run(["y"], {f"x{i}": x for i, x in enumerate(xs)})[0]
        assert got.shape == expected.shape, (kind, example.note)
        assert rel_err(got, expected) < RTOL, (kind, example.note, rel_err(got, expected))


@pytest.mark.parametrize("source", [TWO_TOWER, STRONG_LRN], ids=["two-tower", "strong-lrn"])
def test_small_networks(source):
    assert network_error(network_from_source(source, "x.net", {})) < RTOL


@pytest.mark.parametrize("name", ["lenet", "cifar"])
def test_example_networks(name):
    import netdsl
    assert network_error(netdsl.load(EXAMPLES / f"{name}.net")) < RTOL


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alexnet", "alexnet-1gpu"])
def test_alexnets(name):
    import netdsl
    assert network_error(netdsl.load(EXAMPLES / f"{name}.net")) < RTOL


def test_export_command_writes_a_model_with_the_checkpoint_weights(tmp_path, capsys):
    run = make_run(tmp_path / "run", seed=4)
    out = tmp_path / "m.onnx"
    assert main(["export", str(run / "best.npz"), "-o", str(out)]) == 0
    assert "opset 18" in capsys.readouterr().out
    model = onnx.load(out)
    onnx.checker.check_model(model)
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    with np.load(run / "best.npz") as data:
        np.testing.assert_array_equal(stored["c1.conv@gpu1.weight"], data["param/c1.conv@gpu1.weight"])
    assert {n.op_type for n in model.graph.node} >= {"Conv", "Concat", "LRN", "MaxPool", "AveragePool", "Gemm"}
