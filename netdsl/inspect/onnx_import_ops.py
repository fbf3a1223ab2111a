"""ONNX op -> netdsl layer kind, one function per op type (OPS): each reads a
node's attributes and constant inputs and returns a Layer, or raises
Unsupported naming the node, the op and what is missing. A new kind's mapping
is one entry here (see docs/onnx-import.md); a kind computed by one ONNX
operator without attributes names it as its `onnx_op`, which the exporter
writes and OPS reads, so that such a kind needs no entry at all."""
from __future__ import annotations

import numpy as np

from ..layers import REGISTRY
from ..layers._broadcast import broadcast_shape
from .onnx_import_activations import clip, gelu, hard_sigmoid, softmax, swish
from .onnx_import_adaptive import ADAPTIVE, adaptive_pool
from .onnx_import_graph import Graph, Layer, _allowed, _num, _pair, _symmetric_pads, _unsupported, attrs
from .onnx_import_lrn import TORCH_LRN


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
    n = attrs(node)["size"]
    if n % 2 == 0:
        raise _unsupported(node, f"an even window (size={n}) is centred differently from netdsl's lrn")
    return lrn_layer(node)


def lrn_layer(node) -> Layer:
    """LRN's attributes as netdsl's lrn; torch's LocalResponseNorm (TORCH_LRN) centres every
    window as netdsl does, so it comes here without lrn's check."""
    a = attrs(node)
    n = a["size"]
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


def mul(g: Graph, node) -> Layer:
    constants = [t for t in node.input if g.name(t) in g.consts]
    if constants:
        raise _unsupported(node, f"multiplying by the constant `{constants[0]}` cannot be expressed "
                                 "(netdsl's mul multiplies two layer outputs)")
    shapes = [g.shapes.get(g.name(t), ["?"])[1:] for t in node.input]
    if all(s and all(isinstance(v, int) for v in s) for s in shapes) and broadcast_shape(shapes) is None:
        shown = " and ".join(" x ".join(map(str, s)) for s in shapes)
        raise _unsupported(node, f"a product of {shown} cannot be expressed (netdsl's mul takes one shape, "
                                 "or C x 1 x 1 times C x H x W)")
    return Layer("mul", list(node.input))


def _activations(g: Graph, node, kind: str) -> Layer:
    constants = [t for t in node.input if g.name(t) in g.consts]
    if constants:
        raise _unsupported(node, f"a constant operand `{constants[0]}` cannot be expressed")
    return Layer(kind, list(node.input))


# attribute-free kinds with their one ONNX operator (Relu, Tanh, Sigmoid, HardSwish, ...);
# Identity's (identity, transfer) are folded away before OPS is read
_SINGLE_OPS = {layer.onnx_op: _unary(kind) for kind, layer in sorted(REGISTRY.items())
               if layer.onnx_op and layer.onnx_op != "Identity"}

OPS = _SINGLE_OPS | {
    "Conv": conv,
    "Gemm": gemm,
    "MatMul": matmul,
    "BatchNormalization": batchnorm,
    "MaxPool": _pool("maxpool"),
    "AveragePool": _pool("avgpool"),
    "LeakyRelu": leaky_relu,
    "Elu": elu,
    "PRelu": prelu,
    "LRN": lrn,
    TORCH_LRN: lambda g, node: lrn_layer(node),  # torch's LocalResponseNorm of an even size (onnx_import_lrn.py)
    "Dropout": dropout,
    "Flatten": flatten,
    "Reshape": reshape,
    "Concat": concat,
    "Add": add,
    "Sum": add,
    "Mul": mul,
    "Clip": clip,
    "HardSigmoid": hard_sigmoid,
    "Swish": swish,
    "Gelu": gelu,
    "Softmax": softmax,
    ADAPTIVE: adaptive_pool,  # netdsl export's sliced windows, fused (onnx_import_fuse.py)
}
