"""`netdsl import MODEL.onnx`: a CNN graph from torch.onnx.export as a .net file
and a checkpoint of its weights.

The ONNX graph is walked in its own (topological) order. Constant and
Identity nodes are folded first (a Constant becomes a known array, an
Identity an alias of its input). Every other node goes through one small
function per ONNX op type (OPS), which reads the node's attributes and known
arrays and returns a Layer: the netdsl kind, its arguments in .net syntax,
and its weights by parameter name. An op or attribute a function cannot
express raises Unsupported, which names the node and the op.

A new layer kind plugs in with one entry in OPS: e.g. `"HardSwish":
_unary("hard_swish")`, or a function for an op with attributes (Clip's min
and max as inputs -> `clip(min=, max=)`). The mapping lives here, beside the
export's MAPPERS, so that both directions of a kind are read together.

The conventions that differ (the inverse of onnx_export's): ONNX LRN divides
alpha by the window, netdsl does not; netdsl's average pool divides by the
real elements a window covers (count_include_pad=0), so count_include_pad=1
is accepted only without padding.

The .net text and the .npz are written to temporary files and renamed, so a
failure leaves nothing behind.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import NetDslError


class Unsupported(NetDslError):
    pass


@dataclass
class Layer:
    kind: str
    inputs: list[str]             # ONNX tensor names read (activations only)
    args: list[str] = field(default_factory=list)   # .net argument texts after the inputs
    params: dict[str, np.ndarray] = field(default_factory=dict)
    state: dict[str, np.ndarray] = field(default_factory=dict)


class Graph:
    """Known arrays (initialisers, folded constants) and aliases of an ONNX graph."""

    def __init__(self, model):
        from onnx import numpy_helper
        self.nh = numpy_helper
        self.consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.alias: dict[str, str] = {}
        self.shapes: dict[str, list] = {}  # tensor -> its full shape by ONNX's shape inference, batch first

    def name(self, tensor: str) -> str:
        while tensor in self.alias:
            tensor = self.alias[tensor]
        return tensor

    def const(self, node, index: int, what: str) -> np.ndarray:
        if index >= len(node.input) or not node.input[index]:
            raise _unsupported(node, f"its {what} is missing")
        tensor = self.name(node.input[index])
        if tensor not in self.consts:
            raise _unsupported(node, f"its {what} `{tensor}` is computed, not a constant")
        return self.consts[tensor]

    def optional_const(self, node, index: int):
        if index >= len(node.input) or not node.input[index]:
            return None
        return self.const(node, index, f"input {index}")


def _unsupported(node, missing: str) -> Unsupported:
    return Unsupported(f"node `{node.name or node.output[0]}` ({node.op_type}): {missing}",
                       hint="netdsl cannot express it; change the model before exporting, or add the op "
                            "to netdsl/inspect/onnx_import.py")


def attrs(node) -> dict:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _allowed(node, a: dict, ok: set[str]):
    extra = sorted(set(a) - ok)
    if extra:
        raise _unsupported(node, f"attribute `{extra[0]}` is not supported")


def _square(node, values, what: str) -> int:
    values = list(values)
    if len(values) != 2:
        raise _unsupported(node, f"only 2-d {what} can be expressed, not {values}")
    return values[0]


def _pair(values) -> str:
    h, w = values
    return str(h) if h == w else f"[{h}, {w}]"


def _symmetric_pads(node, pads, auto_pad) -> list[int]:
    if auto_pad not in (None, b"NOTSET", "NOTSET"):
        raise _unsupported(node, f"auto_pad={auto_pad!r} is not supported (export with explicit pads)")
    pads = list(pads or [0, 0, 0, 0])
    if pads[:2] != pads[2:]:
        raise _unsupported(node, f"asymmetric pads {pads} cannot be expressed (netdsl pads both sides alike)")
    return pads[:2]


# ---- one function per ONNX op: (graph, node) -> Layer ----

def conv(g: Graph, node) -> Layer:
    a = attrs(node)
    _allowed(node, a, {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"})
    weight = g.const(node, 1, "weight")
    if weight.ndim != 4:
        raise _unsupported(node, f"only 2-d convolutions can be expressed (weight is {weight.ndim}-d)")
    pads = _symmetric_pads(node, a.get("pads"), a.get("auto_pad"))
    args = [str(weight.shape[0]), f"size={_pair(weight.shape[2:])}"]
    for key, name, default in (("strides", "stride", [1, 1]), ("dilations", "dilation", [1, 1])):
        if list(a.get(key, default)) != default:
            args.append(f"{name}={_pair(a[key])}")
    if pads != [0, 0]:
        args.append(f"pad={_pair(pads)}")
    if a.get("group", 1) != 1:
        args.append(f"groups={a['group']}")
    params = {"weight": weight}
    bias = g.optional_const(node, 2)
    if bias is None:
        args.append("bias=none")
    else:
        params["bias"] = bias
    return Layer("conv", [node.input[0]], args, params)


def gemm(g: Graph, node) -> Layer:
    a = attrs(node)
    _allowed(node, a, {"alpha", "beta", "transA", "transB"})
    if a.get("transA", 0):
        raise _unsupported(node, "transA=1 is not supported")
    weight = g.const(node, 1, "weight") * np.float32(a.get("alpha", 1.0))
    weight = weight if a.get("transB", 0) else weight.T
    bias = g.optional_const(node, 2)
    bias = np.zeros(weight.shape[0], np.float32) if bias is None else bias * np.float32(a.get("beta", 1.0))
    if bias.size != weight.shape[0]:
        raise _unsupported(node, f"a bias of shape {bias.shape} is not one per output")
    return Layer("fc", [node.input[0]], [str(weight.shape[0])],
                 {"weight": weight, "bias": np.broadcast_to(bias.reshape(-1), weight.shape[:1]).copy()})


def matmul(g: Graph, node) -> Layer:
    weight = g.const(node, 1, "weight (the second operand)")
    if weight.ndim != 2:
        raise _unsupported(node, f"only a 2-d constant second operand can be expressed, not {weight.ndim}-d")
    return Layer("fc", [node.input[0]], [str(weight.shape[1])],
                 {"weight": weight.T.copy(), "bias": np.zeros(weight.shape[1], np.float32)})


def batchnorm(g: Graph, node) -> Layer:
    a = attrs(node)
    _allowed(node, a, {"epsilon", "momentum", "training_mode"})
    if a.get("training_mode", 0):
        raise _unsupported(node, "training_mode=1 is not supported (export in eval mode)")
    scale, shift, mean, var = (g.const(node, i, w) for i, w in enumerate(("scale", "bias", "mean", "var"), 1))
    return Layer("batchnorm", [node.input[0]], [f"eps={_num(a.get('epsilon', 1e-5))}"],
                 {"weight": scale, "bias": shift}, {"running_mean": mean, "running_var": var})


def _pool(kind: str):
    def mapper(g: Graph, node) -> Layer:
        a = attrs(node)
        _allowed(node, a, {"kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad", "auto_pad",
                           "dilations", "storage_order"})
        size = a["kernel_shape"]
        if len(size) != 2 or size[0] != size[1]:
            raise _unsupported(node, f"only square 2-d windows can be expressed, not {list(size)}")
        strides = list(a.get("strides", [1, 1]))
        if strides[0] != strides[1]:
            raise _unsupported(node, f"unequal strides {strides} cannot be expressed")
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            raise _unsupported(node, "dilated pooling is not supported")
        pads = _symmetric_pads(node, a.get("pads"), a.get("auto_pad"))
        if pads[0] != pads[1]:
            raise _unsupported(node, f"unequal pads {pads} cannot be expressed")
        if a.get("count_include_pad", 0) and pads[0]:
            raise _unsupported(node, "count_include_pad=1 with padding cannot be expressed "
                                     "(netdsl divides by the real elements)")
        args = [str(size[0])]
        if strides[0] != size[0]:
            args.append(f"stride={strides[0]}")
        if pads[0]:
            args.append(f"pad={pads[0]}")
        if a.get("ceil_mode", 0):
            args.append("ceil=true")
        return Layer(kind, [node.input[0]], args)
    return mapper


def _unary(kind: str):
    def mapper(g: Graph, node) -> Layer:
        return Layer(kind, [node.input[0]])
    return mapper


def leaky_relu(g: Graph, node) -> Layer:
    return Layer("leaky_relu", [node.input[0]], [f"slope={_num(attrs(node).get('alpha', 0.01))}"])


def elu(g: Graph, node) -> Layer:
    return Layer("elu", [node.input[0]], [f"alpha={_num(attrs(node).get('alpha', 1.0))}"])


def prelu(g: Graph, node) -> Layer:
    slope = g.const(node, 1, "slope")
    return Layer("prelu", [node.input[0]], [], {"weight": slope.reshape(-1).copy()})


def lrn(g: Graph, node) -> Layer:
    a = attrs(node)
    n = a["size"]
    if n % 2 == 0:
        raise _unsupported(node, f"an even window (size={n}) is centred differently from netdsl's lrn")
    alpha = a.get("alpha", 1e-4) / n  # ONNX divides by the window; netdsl does not
    return Layer("lrn", [node.input[0]], [str(n), f"alpha={_num(alpha)}", f"beta={_num(a.get('beta', 0.75))}",
                                          f"k={_num(a.get('bias', 1.0))}"])


def dropout(g: Graph, node) -> Layer:
    ratio = g.optional_const(node, 1)
    rate = float(ratio) if ratio is not None else attrs(node).get("ratio", 0.5)
    return Layer("dropout", [node.input[0]], [_num(rate)])


def flatten(g: Graph, node) -> Layer:
    if attrs(node).get("axis", 1) != 1:
        raise _unsupported(node, "only axis=1 can be expressed")
    return Layer("flatten", [node.input[0]])


def reshape(g: Graph, node) -> Layer:
    """Only (batch, features): `x.view(x.size(0), -1)`, `x.reshape(-1, C*H*W)`, the batch
    written as the exported one (a shape computed from a fixed-size input is folded to it)."""
    shape = [int(v) for v in g.const(node, 1, "shape").reshape(-1)]
    full = g.shapes.get(g.name(node.input[0]), [])
    features = int(np.prod(full[1:])) if all(isinstance(v, int) for v in full[1:]) and full else None
    batch = full[0] if full else None
    ok = len(shape) == 2 and features is not None and (
        shape[0] in (0, batch) and shape[1] in (-1, features) or shape[0] == -1 and shape[1] == features)
    if not ok:
        raise _unsupported(node, f"only a reshape to 2-d (batch, features) can be expressed, not {shape}")
    return Layer("flatten", [node.input[0]])


def concat(g: Graph, node) -> Layer:
    if attrs(node).get("axis") != 1:
        raise _unsupported(node, "only a concatenation along the channels (axis=1) can be expressed")
    return _activations(g, node, "concat")


def add(g: Graph, node) -> Layer:
    return _activations(g, node, "add")


def _activations(g: Graph, node, kind: str) -> Layer:
    constants = [t for t in node.input if g.name(t) in g.consts]
    if constants:
        raise _unsupported(node, f"a constant operand `{constants[0]}` cannot be expressed")
    return Layer(kind, list(node.input))


OPS = {
    "Conv": conv,
    "Gemm": gemm,
    "MatMul": matmul,
    "BatchNormalization": batchnorm,
    "MaxPool": _pool("maxpool"),
    "AveragePool": _pool("avgpool"),
    "GlobalAveragePool": _unary("global_avgpool"),
    "Relu": _unary("relu"),
    "Tanh": _unary("tanh"),
    "Sigmoid": _unary("sigmoid"),
    "LeakyRelu": leaky_relu,
    "Elu": elu,
    "PRelu": prelu,
    "LRN": lrn,
    "Dropout": dropout,
    "Flatten": flatten,
    "Reshape": reshape,
    "Concat": concat,
    "Add": add,
    "Sum": add,
}


def _num(x) -> str:
    return repr(float(np.float32(x))) if not float(x).is_integer() else str(int(x)) if abs(x) < 1e15 else repr(x)


# ---- the walk and the writing ----

def _fold(g: Graph, node) -> bool:
    """Constant and Identity nodes become known arrays and aliases; True when folded."""
    if node.op_type == "Constant":
        a = attrs(node)
        if "value" not in a:
            raise _unsupported(node, f"only a tensor `value` is supported, not `{sorted(a)[0]}`")
        g.consts[node.output[0]] = g.nh.to_array(a["value"])
        return True
    if node.op_type == "Identity":
        g.alias[node.output[0]] = g.name(node.input[0])
        if g.alias[node.output[0]] in g.consts:
            g.consts[node.output[0]] = g.consts[g.alias[node.output[0]]]
        return True
    if node.op_type == "Shape" and all(isinstance(v, int) for v in g.shapes.get(g.name(node.input[0]), ["?"])):
        a = attrs(node)
        g.consts[node.output[0]] = np.array(g.shapes[g.name(node.input[0])][a.get("start", 0):a.get("end")], np.int64)
        return True
    if node.input and all(not t or g.name(t) in g.consts for t in node.input):  # shape arithmetic on constants
        g.consts.update(zip(node.output, _evaluate(g, node)))
        return True
    return False


def _evaluate(g: Graph, node) -> list[np.ndarray]:
    """The outputs of a node whose inputs are all constants (Unsqueeze of a PRelu slope, a
    reshape's computed shape), by onnx's reference implementation of the op."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator
    inputs = [t for t in node.input if t]
    graph = helper.make_graph([node], "fold", [helper.make_tensor_value_info(t, 0, None) for t in inputs],
                              [helper.make_tensor_value_info(t, 0, None) for t in node.output if t])
    try:
        return ReferenceEvaluator(helper.make_model(graph)).run(None, {t: g.consts[g.name(t)] for t in inputs})
    except Exception as exc:  # noqa: BLE001 - the reference evaluator raises many kinds
        raise _unsupported(node, f"its constant inputs could not be folded ({type(exc).__name__})") from None


class Names:
    """Valid, unique .net names from ONNX node names (`/layer1/layer1.0/conv1/Conv` -> layer1_layer1_0_conv1)."""
    RESERVED = {"image", "label", "loss", "scores", "network", "input", "param", "block", "defaults", "train",
                "tower", "on", "all", "true", "false", "none", "same"}

    def __init__(self):
        self.used: set[str] = set()

    def new(self, raw: str) -> str:
        parts = [p for p in raw.split("/") if p]
        op = parts[-1] if len(parts) > 1 and re.fullmatch(r"[A-Z][A-Za-z]*(_\d+)?", parts[-1]) else None
        base = self._clean("_".join(parts[:-1] if op else parts))
        if op and self._valid(base) in self.used:  # `/layer1/Relu` beside `/layer1/conv1/Conv`: keep the op
            base = self._clean("_".join(parts[:-1] + [op.lower()]))
        return self._unique(self._valid(base))

    @staticmethod
    def _clean(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or "layer"

    def _valid(self, base: str) -> str:
        return "n_" + base if base[0].isdigit() or base in self.RESERVED else base

    def _unique(self, base: str) -> str:
        name, i = base, 1
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name


def _shape_text(shape) -> str:
    return " x ".join(str(s) for s in shape)


def convert(model, network: str):
    """(.net text, checkpoint arrays) of an onnx.ModelProto."""
    from onnx import shape_inference
    try:
        model = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - shapes are only comments
        pass
    g = Graph(model)
    shapes = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        g.shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else "?" for d in dims]
        shapes[vi.name] = g.shapes[vi.name][1:]
    inputs = [i for i in model.graph.input if i.name not in g.consts]
    if len(inputs) != 1:
        raise NetDslError(f"the model has {len(inputs)} inputs; netdsl networks have one image input")
    image = inputs[0].name
    image_shape = shapes.get(image, [])
    if len(image_shape) != 3 or not all(isinstance(s, int) and s > 0 for s in image_shape):
        raise NetDslError(f"input `{image}` is not a fixed C x H x W image (it is {image_shape})",
                          hint="export with a fixed-size example input")
    names = Names()
    tensor_name = {image: "image"}
    lines, arrays = [], {}
    outputs = [o.name for o in model.graph.output]
    softmaxed = set()
    for node in model.graph.node:
        if _fold(g, node):
            continue
        if node.op_type == "Softmax" and node.output[0] in outputs:  # the probabilities: the loss stands for them
            softmaxed.add(g.name(node.input[0]))
            continue
        mapper = OPS.get(node.op_type)
        if mapper is None:
            raise _unsupported(node, f"op {node.op_type} has no netdsl layer kind")
        layer = mapper(g, node)
        if len([o for o in node.output if o]) > 1 and node.op_type != "Dropout":
            raise _unsupported(node, "more than one output cannot be expressed")
        sources = []
        for t in layer.inputs:
            t = g.name(t)
            if t not in tensor_name:
                raise _unsupported(node, f"its input `{t}` is neither a layer's output nor the image")
            sources.append(tensor_name[t])
        name = names.new(node.name or node.output[0])
        tensor_name[node.output[0]] = name
        call = ", ".join(sources + layer.args)
        lines.append((name, f"{name} = {layer.kind}({call})"))
        arrays |= {f"param/{name}.{k}": np.asarray(v, np.float32) for k, v in layer.params.items()}
        arrays |= {f"state/{name}.{k}": np.asarray(v, np.float32) for k, v in layer.state.items()}
    scores = _scores(g, outputs, softmaxed, tensor_name)
    classes = shapes.get(scores[0], [None])[-1] if shapes.get(scores[0]) else None
    if not isinstance(classes, int):
        raise NetDslError(f"output `{scores[0]}` has no fixed class count")
    header = [f"# Imported from ONNX ({model.producer_name or 'unknown producer'}, opset "
              f"{max((o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')), default='?')}).",
              f"network {network}", "", f"input image : {_shape_text(image_shape)}",
              f"input label : {classes} classes", ""]
    body = [text for _, text in lines] + [f"loss = softmax_loss({scores[1]}, label)", ""]
    net = _checked(network, "\n".join(header + body))
    width = max((len(text) for _, text in lines), default=0)
    body[:len(lines)] = [f"{text:<{width}}   # {_shape_text(net.graph.nodes[name].shape)}" for name, text in lines]
    text = "\n".join(header + body)
    arrays |= {"meta/steps": np.int64(0), "meta/lr": np.float64(0.0), "meta/seed": np.int64(0)}
    return text, arrays


def _checked(network: str, text: str):
    """The written network, built by netdsl itself: its shapes are the comments, and a file
    netdsl would refuse is never written."""
    from ..train.launch import network_from_source
    try:
        return network_from_source(text, f"{network}.net", {})
    except NetDslError as err:
        raise NetDslError(f"the imported network is not valid netdsl: {err.message}",
                          hint="please report it with the model; the importer should have refused the op") from None


def _scores(g: Graph, outputs, softmaxed, tensor_name) -> tuple[str, str]:
    """(ONNX tensor, .net name) of the class scores: the one output that is not a softmax of another."""
    candidates = [g.name(o) for o in outputs if g.name(o) in tensor_name]
    if not candidates:
        raise NetDslError("no output of the model is a layer's output")
    t = candidates[0]
    return t, tensor_name[t]


def _write_atomically(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def import_onnx(model_path: str, output: str | None = None, weights: str | None = None) -> tuple[Path, Path]:
    try:
        import onnx
    except ImportError:
        raise NetDslError("importing needs the onnx package", hint='pip install "netdsl[onnx]"') from None
    source = Path(model_path)
    if not source.is_file():
        raise NetDslError(f"no ONNX model at {source}")
    try:
        model = onnx.load(str(source))
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a user error
        raise NetDslError(f"{source} is not an ONNX model ({type(exc).__name__})") from None
    net_path = Path(output) if output else source.with_suffix(".net")
    ckpt_path = Path(weights) if weights else net_path.with_suffix(".npz")
    network = re.sub(r"[^A-Za-z0-9_]", "_", net_path.stem) or "imported"
    network = "n_" + network if network[0].isdigit() else network
    text, arrays = convert(model, network)  # everything that can fail, before anything is written
    _write_atomically(ckpt_path, lambda f: np.savez(f, **arrays))
    _write_atomically(net_path, lambda f: f.write(text.encode()))
    return net_path, ckpt_path
