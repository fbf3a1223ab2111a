"""`netdsl import` of the newer kinds' ONNX ops (Clip, HardSigmoid, HardSwish, Mul,
mid-graph Softmax, Gelu) and of the patterns exporters write for one kind
(SiLU's Sigmoid and Mul, GELU's erf arithmetic below opset 20): PyTorch
modules exported by torch.onnx.export, imported, and their logits on the
reference executor checked against onnxruntime running the same file and
against PyTorch; parameter counts against PyTorch's."""
from __future__ import annotations

import numpy as np
import pytest
from test_onnx_import import RTOL, imported_logits, param_count, rel_err, spread_batch_norms

from netdsl.cli import main
from netdsl.inspect.onnx_export import onnx_model
from netdsl.train.launch import network_from_source

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
nn = torch.nn


def onnxruntime_logits(path, images):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion, ReLU6, 3x3 depthwise, ReLU6, linear 1x1 projection."""

    def __init__(self, c, expand):
        super().__init__()
        h = c * expand
        self.block = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                                   nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), nn.BatchNorm2d(h),
                                   nn.ReLU6(), nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.block(x)


class SqueezeExcite(nn.Module):
    def __init__(self, c, squeezed, gate):
        super().__init__()
        self.squeeze = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, squeezed, 1), nn.SiLU(),
                                     nn.Conv2d(squeezed, c, 1), gate)

    def forward(self, x):
        return x * self.squeeze(x)


class MidSoftmax(nn.Module):
    def forward(self, x):
        return torch.softmax(x, dim=1)


class Clamped(nn.Module):
    def forward(self, x):
        return torch.clamp(x, min=0.0)


def head(c, classes=5):
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes)]


def mobilenet_v2_block():
    return nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU6(), InvertedResidual(6, 3), *head(6))


def squeeze_excite(gate):
    return lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.SiLU(), SqueezeExcite(8, 3, gate), *head(8))


def mobilenet_v3_activations():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Hardswish(), nn.Conv2d(8, 8, 3, padding=1, groups=4),
                         nn.Hardtanh(-0.5, 1.5), nn.Conv2d(8, 6, 1), Clamped(), nn.Hardsigmoid(), *head(6))


def gelu_mlp():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 12),
                         nn.GELU(), nn.Linear(12, 5))


def softmax_mid_graph():
    """Softmax over the channels of a map and of a vector, and a final one on the output."""
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), MidSoftmax(), nn.Conv2d(6, 4, 1), *head(4, 9),
                         nn.Softmax(dim=1), nn.Linear(9, 5), nn.Softmax(dim=1))


def export_and_import(tmp_path, module, opset, preserve=True):
    torch.manual_seed(0)
    spread_batch_norms(module)
    images = torch.randn(3, 3, 16, 16)
    kwargs = {"training": torch.onnx.TrainingMode.PRESERVE, "do_constant_folding": False} if preserve else {}
    torch.onnx.export(module, images, str(tmp_path / "m.onnx"), opset_version=opset, dynamo=False, **kwargs)
    net, _, logits = imported_logits(tmp_path, tmp_path / "m.onnx", images.numpy())
    return net, images, logits, (tmp_path / "imported.net").read_text()


CASES = {  # name: (module, opsets, kinds the .net must hold, kinds it must not)
    "mobilenet_v2_block": (mobilenet_v2_block, [13, 17], {"relu6", "batchnorm", "add"}, {"clip"}),
    "squeeze_excite": (squeeze_excite(nn.Hardsigmoid()), [13, 18], {"silu", "hard_sigmoid", "mul"}, {"sigmoid"}),
    "squeeze_excite_sigmoid_gate": (squeeze_excite(nn.Sigmoid()), [17], {"silu", "sigmoid", "mul"}, set()),
    "mobilenet_v3_activations": (mobilenet_v3_activations, [13, 17],
                                 {"hard_swish", "clip", "relu", "hard_sigmoid"}, {"mul"}),
    "gelu": (gelu_mlp, [17, 20], {"gelu"}, {"mul"}),
    "softmax_mid_graph": (softmax_mid_graph, [13, 18], {"softmax"}, set()),
}


@pytest.mark.parametrize("name,opset", [(n, o) for n, case in CASES.items() for o in case[1]])
def test_pytorch_module_with_the_newer_kinds(tmp_path, name, opset):
    make, _, present, absent = CASES[name]
    module = make()
    net, images, logits, text = export_and_import(tmp_path, module, opset)
    kinds = {net.graph.nodes[n].kind for n in net.graph if net.graph.nodes[n].is_layer}
    assert present <= kinds and not absent & kinds, (kinds, text)
    with torch.no_grad():
        expected = module(images).numpy()
    runtime = onnxruntime_logits(tmp_path / "m.onnx", images.numpy())
    if isinstance(module[-1], nn.Softmax):  # the final softmax is the loss's: the import ends at the scores
        assert "softmax_loss" in text
        logits = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    assert rel_err(runtime, expected) <= RTOL
    assert rel_err(logits, runtime) <= RTOL
    assert param_count(net) == sum(p.numel() for p in module.parameters())


def test_folded_batch_norms_keep_relu6_and_the_logits(tmp_path):
    module = mobilenet_v2_block()
    net, images, logits, text = export_and_import(tmp_path, module, 17, preserve=False)
    assert "batchnorm" not in text and text.count("relu6(") == 3
    assert rel_err(logits, onnxruntime_logits(tmp_path / "m.onnx", images.numpy())) <= RTOL


NEW_KINDS = """
network newkinds
input image : 3 x 8 x 8
input label : 4 classes
feat = conv(image, 6, size=3, pad=1) -> relu6 -> conv(6, size=3, pad=1, groups=3) -> hard_swish
gate = adaptive_avgpool(feat, out=1) -> conv(3, size=1) -> silu -> conv(6, size=1) -> hard_sigmoid
scaled = mul(feat, gate) -> gelu -> clip(-1.5, 2) -> softmax
maps = add(scaled, feat) -> global_avgpool -> flatten
out = fc(maps, 4)
loss = softmax_loss(out, label)
"""


def test_netdsl_export_of_the_newer_kinds_imports_back(tmp_path):
    """netdsl's exporter writes GELU as 0.5 x first, then times (1 + erf): the other grouping."""
    net = network_from_source(NEW_KINDS, "newkinds.net", {})
    ex = net.executor(backend="reference", batch=2, seed=0)
    images = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    expected = ex.forward(images, train=False)
    onnx.save(onnx_model(net.graph, dict(ex.params)), tmp_path / "m.onnx")
    imported, _, logits = imported_logits(tmp_path, tmp_path / "m.onnx", images)
    kinds = sorted(imported.graph.nodes[n].kind for n in imported.graph if imported.graph.nodes[n].is_layer)
    assert {"relu6", "hard_swish", "silu", "hard_sigmoid", "mul", "gelu", "clip", "softmax"} <= set(kinds)
    assert "sigmoid" not in kinds and kinds.count("mul") == 1
    assert param_count(imported) == param_count(net)
    assert rel_err(logits, expected) <= RTOL


def _graph(tmp_path, nodes, inits=(), opset=17, shape=(2, 4, 3, 3), classes=3):
    """x -> nodes -> `h` -> Flatten -> Gemm -> y, saved; its path."""
    from onnx import TensorProto, helper, numpy_helper
    r = np.random.default_rng(5)
    features = int(np.prod(shape[1:]))
    inits = dict(inits) | {"w_out": r.standard_normal((features, classes)), "b_out": r.standard_normal(classes)}
    nodes = [*nodes, helper.make_node("Flatten", ["h"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w_out", "b_out"], ["y"], name="out")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [shape[0], classes])],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return path


@pytest.mark.parametrize("opset,bounds,kind", [
    (10, {"min": 0.0, "max": 6.0}, "n = relu6(image)"),          # opset 6 to 10: the bounds are attributes
    (10, {"min": -0.25, "max": 0.5}, "n = clip(image, min=-0.25, max=0.5)"),
    (10, {"min": 0.0}, "n = relu(image)"),                          # the other end at its default: unbounded
    (13, {"lo": -1.0, "hi": 0.75}, "n = clip(image, min=-1, max=0.75)"),
    (13, {"lo": 0.0}, "n = relu(image)"),                           # max absent
])
def test_clip_bounds_as_attributes_or_inputs_against_onnxruntime(tmp_path, opset, bounds, kind):
    from onnx import helper
    if opset >= 11:  # the bounds are optional inputs: an empty name, or none after the last given
        inputs = ["x", "lo" if "lo" in bounds else "", "hi" if "hi" in bounds else ""]
        while not inputs[-1]:
            inputs.pop()
        node, inits = helper.make_node("Clip", inputs, ["h"], name="n"), {k: np.float32(v) for k, v in bounds.items()}
    else:
        node, inits = helper.make_node("Clip", ["x"], ["h"], name="n", **bounds), {}
    path = _graph(tmp_path, [node], inits, opset)
    images = np.random.default_rng(2).uniform(-4, 8, (2, 4, 3, 3)).astype(np.float32)
    net, _, logits = imported_logits(tmp_path, path, images)
    assert kind in (tmp_path / "imported.net").read_text()
    assert rel_err(logits, onnxruntime_logits(path, images)) <= RTOL


def _errors():
    from onnx import helper
    conv = helper.make_node("Conv", ["x", "w1"], ["c"], name="one_channel")
    w1 = {"w1": np.ones((1, 4, 1, 1))}
    return {
        "hard_sigmoid_alpha": ([helper.make_node("HardSigmoid", ["x"], ["h"], name="hs", alpha=0.2)], {}, 17,
                               "`hs` (HardSigmoid): alpha=0.2"),
        "gelu_tanh": ([helper.make_node("Gelu", ["x"], ["h"], name="g", approximate="tanh")], {}, 20,
                      "`g` (Gelu): approximate='tanh'"),
        "swish_alpha": ([helper.make_node("Swish", ["x"], ["h"], name="sw", alpha=2.0)], {}, 24,
                        "`sw` (Swish): alpha=2"),
        "mul_constant": ([helper.make_node("Mul", ["x", "k"], ["h"], name="scale")], {"k": np.full(4, 2.0)}, 17,
                         "`scale` (Mul): multiplying by the constant `k`"),
        "mul_shapes": ([conv, helper.make_node("Mul", ["x", "c"], ["h"], name="prod")], w1, 17,
                       "`prod` (Mul): a product of 4 x 3 x 3 and 1 x 3 x 3"),
        "softmax_axis": ([helper.make_node("Softmax", ["x"], ["h"], name="sm", axis=2)], {}, 13,
                         "`sm` (Softmax): axis=2"),
        "softmax_default_axis": ([helper.make_node("Softmax", ["x"], ["h"], name="sm")], {}, 13,
                                 "`sm` (Softmax): the default axis (3, the last from opset 13)"),
        "softmax_opset11_map": ([helper.make_node("Softmax", ["x"], ["h"], name="sm", axis=1)], {}, 11,
                                "`sm` (Softmax): below opset 13"),
        "clip_max_only": ([helper.make_node("Clip", ["x", "", "hi"], ["h"], name="cl")], {"hi": np.float32(1)}, 13,
                          "`cl` (Clip): a clip bounded by max only"),
        "clip_computed": ([conv, helper.make_node("Clip", ["x", "c"], ["h"], name="cl")], w1, 13,
                          "`cl` (Clip): its min `c` is computed"),
        "erf_alone": ([helper.make_node("Erf", ["x"], ["h"], name="e")], {}, 17,
                      "`e` (Erf): an Erf outside GELU's pattern"),
    }


@pytest.mark.parametrize("case", sorted(_errors()))
def test_unexpressible_values_are_one_line_errors_naming_the_node(tmp_path, capsys, case):
    nodes, inits, opset, message = _errors()[case]
    path = _graph(tmp_path, nodes, inits, opset)
    assert main(["import", str(path), "-o", str(tmp_path / "out.net")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err.splitlines()[0], err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_gelu_pattern_with_a_wrong_constant_names_the_erf(tmp_path, capsys):
    """x (1 + erf(x / sqrt 2)) without the 0.5 is not GELU: refused at the Erf, not at a Mul."""
    from onnx import helper
    nodes = [helper.make_node("Div", ["x", "sqrt2"], ["d"], name="/act/Div"),
             helper.make_node("Erf", ["d"], ["e"], name="/act/Erf"),
             helper.make_node("Add", ["e", "one"], ["a"], name="/act/Add"),
             helper.make_node("Mul", ["x", "a"], ["m"], name="/act/Mul"),
             helper.make_node("Mul", ["m", "k"], ["h"], name="/act/Mul_1")]
    path = _graph(tmp_path, nodes, {"sqrt2": np.float32(np.sqrt(2)), "one": np.float32(1), "k": np.float32(0.7)})
    assert main(["import", str(path), "-o", str(tmp_path / "out.net")]) == 2
    err = capsys.readouterr().err
    assert "`/act/Erf` (Erf): an Erf outside GELU's pattern 0.5 x (1 + erf(x / sqrt 2))" in err


ADAPTIVE_POOLS = """
network pools
input image : 3 x 9 x 7
input label : 4 classes
defaults conv, fc { init = gauss(0.3); bias = 0.1 }
feat = conv(image, 5, size=3, pad=1) -> relu
a = adaptive_avgpool(feat, out=[4, 3]) -> flatten
m = adaptive_maxpool(feat, out=[1, 3]) -> flatten
s = adaptive_avgpool(feat, out=[2, 1]) -> flatten
scores = fc(a, m, s, 4)
loss = softmax_loss(scores, label)
"""


def test_adaptive_pools_with_overlapping_windows_import_back_as_adaptive_pools(tmp_path):
    """netdsl export writes a non-tiling adaptive pool as sliced, reduced, concatenated
    windows (ONNX has no adaptive pooling); import reads each tree back as one layer."""
    net = network_from_source(ADAPTIVE_POOLS, "pools.net", {})
    ex = net.executor(backend="reference", batch=2, seed=0)
    images = np.random.default_rng(0).standard_normal((2, 3, 9, 7)).astype(np.float32)
    expected = ex.forward(images, train=False)
    model = onnx_model(net.graph, dict(ex.params))
    assert sum(node.op_type == "Slice" for node in model.graph.node) == 4 * 3 + 3 + 2  # none tiles 9 x 7
    onnx.save(model, tmp_path / "m.onnx")
    imported, _, logits = imported_logits(tmp_path, tmp_path / "m.onnx", images)
    layers = [imported.graph.nodes[n] for n in imported.graph if imported.graph.nodes[n].is_layer]
    pools = sorted((d.kind, tuple(d.shape)) for d in layers if d.kind in ("adaptive_avgpool", "adaptive_maxpool"))
    assert pools == [("adaptive_avgpool", (5, 2, 1)), ("adaptive_avgpool", (5, 4, 3)), ("adaptive_maxpool", (5, 1, 3))]
    assert rel_err(logits, expected) <= RTOL


def test_sliced_windows_that_are_not_an_adaptive_pool_stay_unsupported(tmp_path, capsys):
    from onnx import helper
    axes, starts, ends = np.array([2, 3]), np.array([0, 0]), np.array([2, 3])  # rows 0..1 of 3: not out=1
    nodes = [helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["w"], name="cut"),
             helper.make_node("ReduceMean", ["w"], ["r"], name="mean", axes=[2, 3], keepdims=1),
             helper.make_node("Concat", ["r", "r"], ["h"], name="join", axis=3)]
    path = _graph(tmp_path, nodes, {"axes": axes, "starts": starts, "ends": ends}, shape=(2, 4, 3, 3))
    assert main(["import", str(path), "-o", str(tmp_path / "out.net")]) == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert "node `cut` (Slice)" in first and not (tmp_path / "out.net").exists()
