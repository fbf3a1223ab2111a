"""ONNX activations whose attributes or constant inputs must match netdsl's
definition of a kind (Clip's bounds, HardSigmoid's slope, Gelu's form,
Softmax's axis): each mapper returns the Layer or raises Unsupported naming
the node and the value netdsl cannot express. OPS (onnx_import_ops.py)
lists them."""
from __future__ import annotations

import numpy as np

from .onnx_import_graph import Graph, Layer, _allowed, _num, _unsupported, attrs

_FLOAT_MAX = float(np.finfo(np.float32).max)


def _bound(g: Graph, node, index: int, attribute: str, a: dict) -> float | None:
    """Clip's min or max: an input from opset 11, an attribute before; None where absent (ONNX's
    default is the float range's end, which bounds nothing)."""
    if index < len(node.input) and node.input[index]:
        value = g.const(node, index, attribute)
        if value.size != 1:
            raise _unsupported(node, f"its {attribute} has {value.size} values; only one scalar can be expressed")
        value = float(value.reshape(-1)[0])
    else:
        value = a.get(attribute)
    return None if value is None or abs(value) >= _FLOAT_MAX else float(value)


def clip(g: Graph, node) -> Layer:
    a = attrs(node)
    _allowed(node, a, {"min", "max"})
    low, high = _bound(g, node, 1, "min", a), _bound(g, node, 2, "max", a)
    if (low, high) == (0.0, 6.0):
        return Layer("relu6", [node.input[0]])
    if (low, high) == (0.0, None):  # torch.clamp(x, min=0)
        return Layer("relu", [node.input[0]])
    if low is None or high is None:
        side = "min" if low is not None else "max" if high is not None else "neither min nor max"
        raise _unsupported(node, f"a clip bounded by {side} only cannot be expressed (netdsl's clip takes both)")
    if not low < high:
        raise _unsupported(node, f"min={_num(low)} is not below max={_num(high)}")
    return Layer("clip", [node.input[0]], [f"min={_num(low)}", f"max={_num(high)}"])


def is_netdsl_hard_sigmoid(a: dict) -> bool:
    """alpha x + beta clamped to [0, 1] is netdsl's relu6(x + 3) / 6 for alpha 1/6, beta 1/2 (to
    float32 rounding); ONNX's defaults are 0.2 and 0.5 (Keras's hard sigmoid)."""
    return abs(a.get("alpha", 0.2) * 6 - 1) <= 1e-6 and a.get("beta", 0.5) == 0.5


def hard_sigmoid(g: Graph, node) -> Layer:
    a = attrs(node)
    if not is_netdsl_hard_sigmoid(a):
        raise _unsupported(node, f"alpha={_num(a.get('alpha', 0.2))}, beta={_num(a.get('beta', 0.5))} is not "
                                 "netdsl's hard_sigmoid (alpha=1/6, beta=0.5, as torch.nn.Hardsigmoid)")
    return Layer("hard_sigmoid", [node.input[0]])


def swish(g: Graph, node) -> Layer:
    """x sigmoid(alpha x): ONNX's op from opset 24, and what SiLU's Sigmoid and Mul fuse to
    (onnx_import_fuse.py)."""
    alpha = attrs(node).get("alpha", 1.0)
    if alpha != 1.0:
        raise _unsupported(node, f"alpha={_num(alpha)} is not netdsl's silu (alpha=1)")
    return Layer("silu", [node.input[0]])


def gelu(g: Graph, node) -> Layer:
    approximate = attrs(node).get("approximate", b"none")
    approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
    if approximate != "none":
        raise _unsupported(node, f"approximate='{approximate}' is not netdsl's gelu (the exact erf form)")
    return Layer("gelu", [node.input[0]])


def softmax(g: Graph, node) -> Layer:
    """Over the channels only: axis 1 of N x C or N x C x H x W. Below opset 13 ONNX's Softmax
    normalises over every axis from `axis` on (C, H and W together), the same only for 1 x 1 maps."""
    a = attrs(node)
    _allowed(node, a, {"axis"})
    shape = g.shapes.get(g.name(node.input[0]))
    if not shape or len(shape) not in (2, 4):
        raise _unsupported(node, f"only an N x C or N x C x H x W input can be expressed, not {shape or 'unknown'}")
    axis = a.get("axis", -1 if g.opset >= 13 else 1) % len(shape)
    if axis != 1:
        shown = f"axis={a['axis']}" if "axis" in a else f"the default axis ({axis}, the last from opset 13)"
        raise _unsupported(node, f"{shown} cannot be expressed (netdsl's softmax normalises over the "
                                 "channels, axis=1)")
    if g.opset < 13 and len(shape) == 4 and shape[2:] != [1, 1]:
        raise _unsupported(node, f"below opset 13 Softmax normalises over C x H x W together (opset {g.opset}), "
                                 "netdsl's over the channels only; export with opset 13 or later")
    return Layer("softmax", [node.input[0]])
