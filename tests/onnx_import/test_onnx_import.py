"""`netdsl import`: ONNX graphs (netdsl's own exports and PyTorch modules exported
by torch.onnx.export) become .net files whose logits, with the imported
checkpoint on the reference executor, match the source's (relative 1e-5)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
nn = torch.nn

from netdsl.cli import main  # noqa: E402
from netdsl.inspect.onnx_export import onnx_model  # noqa: E402
from netdsl.train.launch import network_from_source  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inspect"))
from networks import EXAMPLES, well_scaled  # noqa: E402

RTOL = 1e-5


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def imported_logits(tmp_path, onnx_file, images):
    net_file = tmp_path / "imported.net"
    assert main(["import", str(onnx_file), "-o", str(net_file)]) == 0
    net = network_from_source(net_file.read_text(), str(net_file), {})
    ex = net.executor(backend="reference", batch=len(images))
    ex.load(net_file.with_suffix(".npz"))
    return net, ex, ex.forward(images, train=False)


def param_count(net) -> int:
    g = net.graph
    return sum(int(np.prod(s)) for n in g if g.nodes[n].is_layer for s in g.nodes[n].params.values())


def block_uses(text: str) -> dict[str, int]:
    """Each block the text defines -> how many times its statements use it (`* N` counts N)."""
    uses = dict.fromkeys(re.findall(r"^block (\w+)\(", text, re.M), 0)
    for kind, times in re.findall(r"^\w+ = (\w+)\(.*?\)(?: \* (\d+))?\s*(?:#.*)?$", text, re.M):
        if kind in uses:
            uses[kind] += int(times or 1)
    return uses


# the blocks each example's import is written with: its repeated units (chains and towers stay flat)
BLOCK_USES = {"resnet20-cifar": {"basic": 7, "down": 2}, "se_resnet": {"basic": 7, "down": 2},
              "mobilenet_v2": {"residual": 10}, "resnet18": {"basic": 5, "down": 3},
              "resnet50": {"down": 4, "bottleneck": 12}, "googlenet": {"inception": 9}}

BIG = ["alexnet", "alexnet-1gpu", "alexnet-groups", "zfnet", "resnet18", "vgg16", "resnet50", "googlenet"]


@pytest.mark.parametrize("name", ["lenet", "cifar", "nin-cifar", "resnet20-cifar", "se_resnet", "mobilenet_v2"]
                         + [pytest.param(n, marks=pytest.mark.slow) for n in BIG])
def test_export_then_import_round_trip(tmp_path, name):
    source = (EXAMPLES / f"{name}.net").read_text()
    net = network_from_source(source, f"{name}.net", {})
    ex = net.executor(backend="reference", batch=2, seed=0)
    ex.set_params(well_scaled(ex, 0))
    for key, value in ex.state.items():  # non-trivial running statistics
        value[...] = np.random.default_rng(1).uniform(0.5, 1.5, value.shape)
    shape = net.graph.nodes[ex.image_input].shape
    images = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    expected = ex.forward(images, train=False)
    params = dict(ex.params) | dict(ex.state)
    onnx.save(onnx_model(net.graph, params), tmp_path / "m.onnx")
    imported, _, logits = imported_logits(tmp_path, tmp_path / "m.onnx", images)
    assert main(["info", str(tmp_path / "imported.net")]) == 0
    assert block_uses((tmp_path / "imported.net").read_text()) == BLOCK_USES.get(name, {})
    assert param_count(imported) == param_count(net)
    assert rel_err(logits, expected) <= RTOL


class Basic(nn.Module):
    def __init__(self, c_in, c, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.proj = None if stride == 1 and c_in == c else nn.Sequential(
            nn.Conv2d(c_in, c, 1, stride, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.proj is None else self.proj(x)))


def spread_batch_norms(module) -> None:
    """Batch norms away from the identity (as trained ones are), then eval mode, for export."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    module.eval()


def small_resnet():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         Basic(8, 8, 1), Basic(8, 8, 1), Basic(8, 16, 2), Basic(16, 16, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 7))


def small_nin():
    return nn.Sequential(nn.Conv2d(3, 12, 5, padding=2), nn.ReLU(), nn.Conv2d(12, 10, 1), nn.LeakyReLU(0.1),
                         nn.MaxPool2d(3, 2, ceil_mode=True), nn.Dropout(0.5),
                         nn.Conv2d(10, 12, 3, padding=1), nn.ELU(0.7), nn.Conv2d(12, 6, 1), nn.PReLU(6),
                         nn.AvgPool2d(3, 2, ceil_mode=True, count_include_pad=False),
                         nn.Conv2d(6, 5, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def plain_cnn():
    return nn.Sequential(nn.Conv2d(3, 8, 5, padding=2, dilation=1), nn.ReLU(),  # LocalResponseNorm: test_onnx_import_lrn.py
                         nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2), nn.Tanh(),
                         nn.AvgPool2d(2), View(), nn.Dropout(0.5), nn.Linear(8 * 4 * 4, 12), nn.Sigmoid(),
                         nn.Linear(12, 4))


class View(nn.Module):
    """`x.view(x.size(0), -1)`: Shape, Gather, Concat and Reshape in the exported graph."""

    def forward(self, x):
        return x.view(x.size(0), -1)


@pytest.mark.parametrize("make", [small_resnet, small_nin, plain_cnn])
@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("opset", [13, 18])
def test_pytorch_module_imported(tmp_path, make, fold, opset):
    torch.manual_seed(0)
    module = make()
    spread_batch_norms(module)
    images = torch.randn(3, 3, 16, 16)
    kwargs = {} if fold else {"training": torch.onnx.TrainingMode.PRESERVE}
    torch.onnx.export(module, images, str(tmp_path / "m.onnx"), opset_version=opset, dynamo=False,
                      do_constant_folding=fold, **kwargs)
    with torch.no_grad():
        expected = module(images).numpy()
    net, _, logits = imported_logits(tmp_path, tmp_path / "m.onnx", images.numpy())
    assert rel_err(logits, expected) <= RTOL
    if not fold:  # folding merges each batch norm into the conv before it, adding a bias
        assert param_count(net) == sum(p.numel() for p in module.parameters())


def _model(tmp_path, node, extra_inits=()):
    from onnx import TensorProto, helper, numpy_helper
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in extra_inits]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None)], inits)
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _cases():
    from onnx import helper
    w = ("w", np.ones((4, 4, 3, 3)))
    return [
        (helper.make_node("Mish", ["x"], ["y"], name="act/Mish"), [], "op Mish"),
        (helper.make_node("Conv", ["x", "w"], ["y"], name="c1", pads=[0, 0, 1, 1]), [w], "asymmetric pads"),
        (helper.make_node("Conv", ["x", "w"], ["y"], name="c1", auto_pad="SAME_UPPER"), [w], "auto_pad"),
        (helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[2, 3]), [], "square"),
        (helper.make_node("AveragePool", ["x"], ["y"], name="p", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                          count_include_pad=1), [], "count_include_pad"),
        (helper.make_node("LRN", ["x"], ["y"], name="n", size=4), [], "even window"),
        (helper.make_node("Concat", ["x", "x"], ["y"], name="cat", axis=2), [], "axis=1"),
        (helper.make_node("Add", ["x", "b"], ["y"], name="plus"), [("b", np.ones(4))], "constant operand"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_unsupported_is_one_line_and_writes_nothing(tmp_path, capsys, case):
    node, inits, missing = _cases()[case]
    path = _model(tmp_path, node, inits)
    assert main(["import", str(path), "-o", str(tmp_path / "out.net")]) == 2
    err = capsys.readouterr().err
    assert f"`{node.name}`" in err and node.op_type in err and missing in err, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


def test_matmul_and_gemm_variants_against_onnxruntime(tmp_path):
    """MatMul by a constant, and Gemm with transB=0, alpha and beta, as onnxruntime computes them."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    r = np.random.default_rng(3)
    inits = {"w1": r.standard_normal((36, 5)), "w2": r.standard_normal((5, 3)), "c2": r.standard_normal(3)}
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "w1"], ["h"], name="mm"),
             helper.make_node("Relu", ["h"], ["a"], name="act"),
             helper.make_node("Gemm", ["a", "w2", "c2"], ["y"], name="out", alpha=0.5, beta=2.0)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, tmp_path / "m.onnx")
    images = r.standard_normal((2, 4, 3, 3)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(["y"], {"x": images})[0]
    net, _, logits = imported_logits(tmp_path, tmp_path / "m.onnx", images)
    assert rel_err(logits, expected) <= RTOL
    assert "fc(flat, 5)" in (tmp_path / "imported.net").read_text()


def test_missing_folder_and_not_onnx_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all \x00\x01")
    assert main(["import", str(tmp_path / "junk.onnx"), "-o", str(tmp_path / "out.net")]) == 2
    assert "junk.onnx" in capsys.readouterr().err
    path = _model(tmp_path, onnx.helper.make_node("Relu", ["x"], ["y"], name="r"))
    assert main(["import", str(path), "-o", str(tmp_path / "out.net")]) == 2
    assert "not a vector of class scores" in capsys.readouterr().err
    path = _model(tmp_path, onnx.helper.make_node("Flatten", ["x"], ["y"], name="f"))
    assert main(["import", str(path), "-o", str(tmp_path / "no" / "out.net")]) == 2
    assert "no folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx", "junk.onnx"]
