"""`netdsl export CHECKPOINT -o model.onnx`: the inference graph as ONNX.

The checked graph is walked in topological order and every forward node
becomes ONNX operators through one small function per layer kind (MAPPERS),
reading only the node's data (kind, args, shape) and its weights. Towers
stay as they are in the graph: each tower copy of a convolution is its own
Conv on its own channels, `all x` is the Concat the graph already holds, and
transfers are Identity, so the exported graph computes exactly what the
executors do. The loss is dropped: the outputs are the scores that fed it
(`logits`) and their softmax (`probabilities`).

Conventions that differ between netdsl and ONNX:
- LRN: ONNX divides alpha by the window size, as Caffe and PyTorch do, so
  our alpha is written as alpha * size. ONNX's window is centred the other
  way for even sizes (one more channel above than below; ours has one more
  below), so an even window is built from primitives instead: the squares
  summed over the window by a fixed 1x1 convolution with a band matrix.
- Average pooling divides by the real elements a window covers:
  count_include_pad=0.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import NetDslError
from ..passes.infer_shapes import ordered_inputs, topological

OPSET = 18


class Builder:
    """The ONNX nodes and initialisers under construction."""

    def __init__(self, params: dict[str, np.ndarray]):
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper = helper, numpy_helper
        self.params, self.nodes, self.initializers, self.shapes = params, [], [], {}
        self._count = 0

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attributes) -> str:
        output = output or self.fresh(op_type)
        self.nodes.append(self.helper.make_node(op_type, inputs, [output], name=f"{output}:{op_type}", **attributes))
        return output

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def param(self, node: str, pname: str) -> str:
        return self.constant(f"{node}.{pname}", self.params[f"{node}.{pname}"].astype(np.float32))

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"_{hint.lower()}{self._count}"


# ---- one function per layer kind: (builder, node name, node data, input names) -> None ----
# Each writes the node's output under the node's own name.

def conv(b: Builder, name, d, xs):
    a = d.args
    inputs = [xs[0], b.param(name, "weight")] + ([b.param(name, "bias")] if f"{name}.bias" in b.params else [])
    from ..layers import REGISTRY
    g = REGISTRY["conv"].geometry(a)  # pairs, and `pad=same` resolved to its border
    b.op("Conv", inputs, name, kernel_shape=[g.kh, g.kw], strides=[g.sh, g.sw], pads=[g.ph, g.pw, g.ph, g.pw],
         dilations=[g.dh, g.dw], group=g.groups)


def fc(b: Builder, name, d, xs):
    flat = b.op("Flatten", [xs[0]], axis=1)
    inputs = [flat, b.param(name, "weight")] + ([b.param(name, "bias")] if f"{name}.bias" in b.params else [])
    b.op("Gemm", inputs, name, transB=1)


def _pool(op_type, **extra):
    def mapper(b: Builder, name, d, xs):
        a = d.args
        stride = a.get("stride") or a["size"]
        b.op(op_type, [xs[0]], name, kernel_shape=[a["size"]] * 2, strides=[stride] * 2, pads=[a["pad"]] * 4,
             ceil_mode=int(bool(a.get("ceil"))), **extra)
    return mapper


def _unary(op_type):
    def mapper(b: Builder, name, d, xs):
        b.op(op_type, [xs[0]], name)
    return mapper


def lrn(b: Builder, name, d, xs):
    a = d.args
    n, x = a["size"], xs[0]
    if a.get("region") == "within":  # sum of squares over n x n pixels, zeros past the edges
        channels = b.shapes[x][0]
        ones = np.zeros((channels, 1, n, n), np.float32) + 1.0
        squares = b.op("Mul", [x, x])
        sums = b.op("Conv", [squares, b.constant(b.fresh("window"), ones)], kernel_shape=[n, n],
                    pads=[n // 2] * 4, group=channels)
        _normalise(b, name, x, sums, a)
        return
    if n % 2:
        b.op("LRN", [x], name, size=n, alpha=a["alpha"] * n, beta=a["beta"], bias=a["k"])
        return
    channels = b.shapes[x][0]
    below, above = n // 2, (n - 1) // 2
    band = np.zeros((channels, channels, 1, 1), np.float32)
    for i in range(channels):
        band[i, max(0, i - below):i + above + 1] = 1.0
    squares = b.op("Mul", [x, x])
    sums = b.op("Conv", [squares, b.constant(b.fresh("band"), band)], kernel_shape=[1, 1])
    _normalise(b, name, x, sums, a)


def _normalise(b: Builder, name, x, sums, a):
    """x / (k + alpha * sums) ^ beta, netdsl's alpha (not divided by the window)."""
    scaled = b.op("Mul", [sums, b.constant(b.fresh("alpha"), np.float32(a["alpha"]))])
    base = b.op("Add", [scaled, b.constant(b.fresh("k"), np.float32(a["k"]))])
    power = b.op("Pow", [base, b.constant(b.fresh("beta"), np.float32(a["beta"]))])
    b.op("Div", [x, power], name)


def concat(b: Builder, name, d, xs):
    b.op("Concat", xs, name, axis=1)


def add(b: Builder, name, d, xs):
    b.op("Sum", xs, name)


def leaky_relu(b: Builder, name, d, xs):
    b.op("LeakyRelu", [xs[0]], name, alpha=float(d.args["slope"]))


def elu(b: Builder, name, d, xs):
    b.op("Elu", [xs[0]], name, alpha=float(d.args["alpha"]))


def prelu(b: Builder, name, d, xs):
    slope = b.params[f"{name}.weight"].astype(np.float32)
    extra = len(b.shapes[xs[0]]) - 1  # one slope per channel, broadcast over the pixels
    b.op("PRelu", [xs[0], b.constant(f"{name}.weight", slope.reshape(slope.shape + (1,) * extra))], name)


def flatten(b: Builder, name, d, xs):
    b.op("Flatten", [xs[0]], name, axis=1)


def global_avgpool(b: Builder, name, d, xs):
    b.op("GlobalAveragePool", [xs[0]], name)


def batchnorm(b: Builder, name, d, xs):
    """At test time: the running statistics (the checkpoint's, else their starting values)."""
    from ..layers import REGISTRY
    a, channels = d.args, b.shapes[xs[0]][0]
    layer = REGISTRY["batchnorm"]
    state = {s: b.params.get(f"{name}.{s}", np.full(channels, layer.state_init(a, s), np.float32))
             for s in ("running_mean", "running_var")}
    scale = b.param(name, "weight") if a["affine"] else b.constant(b.fresh("one"), np.ones(channels, np.float32))
    shift = b.param(name, "bias") if a["affine"] else b.constant(b.fresh("zero"), np.zeros(channels, np.float32))
    b.op("BatchNormalization", [xs[0], scale, shift, b.constant(b.fresh("mean"), state["running_mean"]),
                                b.constant(b.fresh("var"), state["running_var"])], name, epsilon=float(a["eps"]))


MAPPERS = {
    "conv": conv,
    "fc": fc,
    "maxpool": _pool("MaxPool"),
    "avgpool": _pool("AveragePool", count_include_pad=0),
    "lrn": lrn,
    "relu": _unary("Relu"),
    "tanh": _unary("Tanh"),
    "sigmoid": _unary("Sigmoid"),
    "dropout": _unary("Identity"),  # the identity at test time (scaled in training)
    "transfer": _unary("Identity"),
    "concat": concat,
    "add": add,
    "identity": _unary("Identity"),
    "leaky_relu": leaky_relu,
    "elu": elu,
    "prelu": prelu,
    "flatten": flatten,
    "global_avgpool": global_avgpool,
    "batchnorm": batchnorm,
}
SKIPPED = {"softmax_loss"}  # training only: the exported outputs are its scores and their softmax


def onnx_model(g, params: dict[str, np.ndarray]):
    """An onnx.ModelProto of the forward graph, weights included; the batch size is free."""
    from onnx import TensorProto, checker, helper
    from ..passes.build_backward import loss_node
    b = Builder(params)
    loss = loss_node(g)
    scores = ordered_inputs(g, loss)[0]
    inputs = []
    for node in topological(g):
        d = g.nodes[node]
        if d.is_input:
            if not d.label:
                inputs.append(helper.make_tensor_value_info(node, TensorProto.FLOAT, ["N", *d.shape]))
                b.shapes[node] = tuple(d.shape)
            continue
        if not d.is_layer or d.kind in SKIPPED:
            continue
        mapper = MAPPERS.get(d.kind)
        if mapper is None:
            raise NetDslError(f"`{node}`: layer kind {d.kind} has no ONNX mapping",
                              hint="add one to netdsl/inspect/onnx_export.py")
        mapper(b, node, d, ordered_inputs(g, node))
        b.shapes[node] = tuple(d.shape)
    b.op("Identity", [scores], "logits")
    b.op("Softmax", ["logits"], "probabilities", axis=1)
    classes = g.nodes[scores].shape[0]
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["N", classes]) for o in ("logits", "probabilities")]
    graph = helper.make_graph(b.nodes, g.graph["network"], inputs, outputs, b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="netdsl",
                              doc_string=f"{g.graph['network']} from {g.graph.get('file', '?')}")
    checker.check_model(model, full_check=False)
    return model


def export(run_or_checkpoint: str, output: str) -> str:
    try:
        import onnx
    except ImportError:
        raise NetDslError("exporting needs the onnx package", hint='pip install "netdsl[onnx]"') from None
    from .checkpoints import open_checkpoint
    net, _, _, params = open_checkpoint(run_or_checkpoint)
    model = onnx_model(net.graph, params)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, output)
    return output
