"""`netdsl export CHECKPOINT -o model.onnx`: the inference graph as ONNX.

The checked graph is walked in topological order and every forward node
becomes ONNX operators through its kind's own `onnx` method (declared beside
the kind's numpy reference in netdsl/layers/), reading only the node's data
(kind, args, shape) and its weights through the Builder below. Towers
stay as they are in the graph: each tower copy of a convolution is its own
Conv on its own channels, `all x` is the Concat the graph already holds, and
transfers are Identity, so the exported graph computes exactly what the
executors do. The loss is dropped: the outputs are the scores that fed it
(`logits`, a C x 1 x 1 map flattened to C) and their softmax
(`probabilities`). A network without a loss (an inference graph) is exported
as it is: its outputs are its final tensors, under their own names (a final
`softmax` gives its probabilities, a final `fc` its scores).

Conventions that differ between netdsl and ONNX (LRN's alpha and even
window, average pooling's divisor) are handled, and explained, in the kinds'
modules.
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


def onnx_model(g, params: dict[str, np.ndarray]):
    """An onnx.ModelProto of the forward graph, weights included; the batch size is free."""
    from onnx import TensorProto, checker, helper
    from ..layers import REGISTRY
    from ..graph_ops import final_tensors, loss_node
    b = Builder(params)
    loss = loss_node(g)
    inputs = []
    for node in topological(g):
        d = g.nodes[node]
        if d.is_input:
            if not d.label:
                inputs.append(helper.make_tensor_value_info(node, TensorProto.FLOAT, ["N", *d.shape]))
                b.shapes[node] = tuple(d.shape)
            continue
        if not d.is_layer:
            continue
        layer = REGISTRY[d.kind]
        if "loss" in layer.traits:  # training only: the exported outputs are its scores and their softmax
            continue
        if not layer.has_onnx():
            raise NetDslError(f"`{node}`: layer kind {d.kind} has no ONNX mapping",
                              hint=f"give netdsl/layers/{d.kind}.py an onnx method")
        layer.onnx(b, node, d, ordered_inputs(g, node))
        b.shapes[node] = tuple(d.shape)
    if loss is None:  # an inference graph: what it computes, as it is
        outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", *g.nodes[n].shape])
                   for n in final_tensors(g)]
    else:
        scores = ordered_inputs(g, loss)[0]
        b.op("Flatten" if len(g.nodes[scores].shape) > 1 else "Identity", [scores], "logits")  # C x 1 x 1: C
        b.op("Softmax", ["logits"], "probabilities", axis=1)
        classes = g.nodes[scores].shape[0]
        outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["N", classes])
                   for o in ("logits", "probabilities")]
    graph = helper.make_graph(b.nodes, g.graph["network"], inputs, outputs, b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="netdsl",
                              doc_string=f"{g.graph['network']} from {g.graph.get('file', '?')}")
    checker.check_model(model, full_check=False)
    return model


def export(run_or_checkpoint: str, output: str) -> tuple[str, list[str]]:
    """(the file written, its outputs' names)."""
    try:
        import onnx
    except ImportError:
        raise NetDslError("exporting needs the onnx package", hint='pip install "netdsl[onnx]"') from None
    from .checkpoints import open_checkpoint
    net, _, _, params = open_checkpoint(run_or_checkpoint)
    model = onnx_model(net.graph, params)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, output)
    return output, [o.name for o in model.graph.output]
