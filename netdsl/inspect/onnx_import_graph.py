"""The ONNX graph as netdsl import reads it: known arrays (initialisers and
folded constants), aliases (Identity), and the Layer a mapper returns."""
from __future__ import annotations

from dataclasses import dataclass, field

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
        # ops whose meaning changed between opsets (Softmax at 13) read it
        self.opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)

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
                            "to netdsl/inspect/onnx_import_ops.py")


def attrs(node) -> dict:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _allowed(node, a: dict, ok: set[str]):
    extra = sorted(set(a) - ok)
    if extra:
        raise _unsupported(node, f"attribute `{extra[0]}` is not supported")


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


def _num(x) -> str:
    """The shortest text that reads back as the same float32 (attributes are float32 in ONNX)."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else str(np.float32(x))


def folded(model) -> tuple[Graph, list]:
    """The graph's known arrays and shapes (ONNX's shape inference), and the nodes not folded.

    A Shape is folded only where shape inference knows its input, and that can need arrays
    folded here first: torch pads LocalResponseNorm's channels by pads it computes from
    constants, which shape inference does not evaluate, so nothing after that Pad has a shape
    until the pads are known. The nodes folded to arrays are therefore written back as
    Constants and the shapes inferred again, until a pass folds nothing new."""
    from onnx import ModelProto, helper, shape_inference
    while True:
        try:
            model = shape_inference.infer_shapes(model)
        except Exception:  # noqa: BLE001 - then no shapes are known: shapes are mostly comments
            pass
        g = Graph(model)
        for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
            if vi.type.tensor_type.HasField("shape"):  # not when its rank is unknown (it is no scalar)
                g.shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else "?"
                                     for d in vi.type.tensor_type.shape.dim]
        nodes = list(model.graph.node)  # held: protobuf makes a new wrapper on each access
        kept, computed = [], []
        for node in nodes:
            if not _fold(g, node):
                kept.append(node)
            elif node.op_type not in ("Constant", "Identity"):
                computed.append(node)
        if not computed:
            return g, kept
        constants = [helper.make_node("Constant", [], [out], value=g.nh.from_array(np.asarray(g.consts[out]), out))
                     for node in computed for out in node.output if out]
        gone = {id(node) for node in computed}
        nodes = constants + [node for node in nodes if id(node) not in gone]
        model, source = ModelProto(), model
        model.CopyFrom(source)
        del model.graph.node[:]
        model.graph.node.extend(nodes)  # the Constants read nothing, so first is a topological place


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
    # shape arithmetic on constants; an If's branches read outer tensors that are not its inputs
    if node.op_type != "If" and node.input and all(not t or g.name(t) in g.consts for t in node.input):
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
