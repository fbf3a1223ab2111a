"""PyTorch's LocalResponseNorm read back as one LRN node.

torch.onnx.export writes `F.local_response_norm(x, n, alpha, beta, k)` (4-d input) as
primitives, which PyTorch computes as:

    Mul(x, x) -> Reshape to N x 1 x C x H x W -> Pad the C axis by n//2 before, (n-1)//2 after
    -> AveragePool [n, 1, 1], stride 1 -> If (squeeze axis 1, or keep it: the condition is
    Equal(Gather(Shape(pool), 1), 1)) -> Reshape to N x C x H x W
    -> Mul by alpha -> Add k -> Pow beta -> Div(x, that)

The average divides the sum of squares by n (the padded zeros count), as ONNX's LRN divides
alpha by its size, so the node is LRN(size=n, alpha, beta, bias=k) with torch's own alpha, and
OPS's `lrn` divides by n for netdsl. torch's window (n//2 channels below, (n-1)//2 above) is
netdsl's for every n; ONNX's LRN centres an even window the other way, so an even n becomes
TORCH_LRN instead, which OPS maps to the same `lrn` without that check.

Every constant is checked (the reshapes against the input's shape, the pads against n, the
pool's attributes) and every inner tensor must feed only the next node of the pattern; a
near miss is left alone, and is then refused at its first primitive that has no netdsl kind.
"""
from __future__ import annotations

import numpy as np

from .onnx_import_graph import Graph, attrs

TORCH_LRN = "NetdslTorchLocalResponseNorm"  # the fused node's op type for even n; no ONNX model uses it
_POOL_ATTRS = {"kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad", "auto_pad", "dilations"}


def match(index, div):
    """(x, inner nodes, LRN attributes) if `div` ends torch's LocalResponseNorm, else None."""
    g = index.g
    if div.op_type != "Div" or len(div.input) != 2:
        return None
    x = g.name(div.input[0])
    shape = g.shapes.get(x, [])
    if len(shape) != 4 or not all(isinstance(v, int) and v > 0 for v in shape):
        return None
    power = _producer(index, div.input[1], div, "Pow")
    beta = power and index.scalar(power.input[1])
    plus = power and _producer(index, power.input[0], power, "Add")
    k, scaled = _operand(index, plus) if plus else (None, None)
    times = scaled and _producer(index, scaled, plus, "Mul")
    alpha, merged = _operand(index, times) if times else (None, None)
    back = merged and _producer(index, merged, times, "Reshape")
    if None in (beta, k, alpha, back) or _target(g, back, shape) != list(shape):
        return None
    branch = _producer(index, back.input[0], back, "If")
    found = branch and _pool(index, branch)
    if not found:
        return None
    pool, condition = found
    padded = _producer(index, pool.input[0], pool, "Pad")
    n = attrs(pool)["kernel_shape"][0]
    if padded is None or not _pads(g, padded, n):
        return None
    split = _producer(index, padded.input[0], padded, "Reshape")
    squares = split and _producer(index, split.input[0], split, "Mul")
    n_, c, h, w = shape
    if squares is None or _target(g, split, shape) != [n_, 1, c, h, w] or [g.name(t) for t in squares.input] != [x, x]:
        return None
    inner = [squares, split, padded, pool, *condition, branch, back, times, plus, power]
    return x, inner, {"size": int(n), "alpha": alpha, "beta": beta, "bias": k}


def _producer(index, tensor: str, reader, op_type: str):
    """The `op_type` node making `tensor` when `reader` is its only reader, else None."""
    node = index.producer.get(index.g.name(tensor))
    ok = node is not None and node.op_type == op_type and index.only_reader(tensor) is reader
    return node if ok else None


def _operand(index, node):
    """(the constant, the computed input) of a two-input node with one scalar constant."""
    if node is None or len(node.input) != 2:
        return None, None
    a, b = node.input
    for value, other in ((a, b), (b, a)):
        if index.scalar(value) is not None and index.scalar(other) is None and index.g.name(other) not in index.g.consts:
            return index.scalar(value), other
    return None, None


def _target(g: Graph, reshape, source_shape) -> list[int] | None:
    """The shape a Reshape makes of a tensor of `source_shape`'s size (-1 takes the rest), or
    None when its shape is not a constant or holds a 0 (that would copy a dimension of the
    Reshape's own input, whose shape is not always the source's: torch writes none)."""
    if g.name(reshape.input[1]) not in g.consts:
        return None
    target = [int(v) for v in g.consts[g.name(reshape.input[1])].reshape(-1)]
    if 0 in target:
        return None
    if target.count(-1) == 1:
        known = int(np.prod([v for v in target if v != -1]))
        total = int(np.prod(source_shape))
        if known <= 0 or total % known:
            return None
        target[target.index(-1)] = total // known
    return target


def _pool(index, branch):
    """(the AveragePool, the condition's nodes) when both branches of the If give the pool's
    output, squeezed on axis 1 or as it is (the Reshape after makes them one), and the
    condition is a constant or Equal(Gather(Shape(pool), 1), 1)."""
    a = attrs(branch)
    outputs = [_branch_source(index.g, a.get(key)) for key in ("then_branch", "else_branch")]
    if None in outputs or outputs[0] != outputs[1]:
        return None
    pool = index.producer.get(outputs[0])
    if pool is None or pool.op_type != "AveragePool" or outputs[0] in index.outputs:
        return None
    p = attrs(pool)
    if set(p) - _POOL_ATTRS or len(p.get("kernel_shape", [])) != 3 or list(p["kernel_shape"][1:]) != [1, 1]:
        return None
    if any(v != 1 for v in (*p.get("strides", [1] * 3), *p.get("dilations", [1] * 3))):
        return None
    if any(p.get("pads", [0] * 6)) or p.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return None
    condition = _condition(index, branch.input[0], branch, outputs[0])
    readers = index.readers.get(outputs[0], [])
    if condition is None or [r for r in readers if r not in condition]:
        return None
    return pool, condition


def _branch_source(g: Graph, body) -> str | None:
    """The outer tensor a branch returns as it is (Identity) or squeezed on axis 1."""
    if body is None or len(body.output) != 1:
        return None
    from onnx import numpy_helper
    made = {n.output[0]: n for n in body.node if n.output}
    last = made.get(body.output[0].name)
    if last is None or not all(n.op_type in ("Constant", "Identity", "Squeeze") for n in body.node):
        return None
    if last.op_type == "Identity":
        return g.name(last.input[0])
    if last.op_type != "Squeeze":
        return None
    axes = attrs(last).get("axes")  # an attribute below opset 13, a Constant input from 13
    if axes is None and len(last.input) == 2 and made.get(last.input[1]) is not None:
        value = attrs(made[last.input[1]]).get("value")
        axes = None if value is None else numpy_helper.to_array(value).reshape(-1).tolist()
    return g.name(last.input[0]) if axes is not None and list(axes) == [1] else None


def _condition(index, tensor: str, branch, pooled: str) -> list | None:
    """The nodes computing the If's condition from the pool's shape ([] when it is folded)."""
    g = index.g
    if g.name(tensor) in g.consts:
        return []
    equal = _producer(index, tensor, branch, "Equal")
    one, size = _operand(index, equal) if equal else (None, None)
    gather = one == 1 and _producer(index, size, equal, "Gather")
    if not gather or attrs(gather).get("axis", 0) != 0 or index.scalar(gather.input[1]) != 1:
        return None
    shape = _producer(index, gather.input[0], gather, "Shape")
    if shape is None or g.name(shape.input[0]) != pooled or attrs(shape):
        return None
    return [shape, gather, equal]


def _pads(g: Graph, pad, n: int) -> bool:
    """A zero-constant Pad of the 5-d tensor's axis 2 (the channels) by n//2 before, (n-1)//2 after."""
    if attrs(pad).get("mode", b"constant") not in (b"constant", "constant") or len(pad.input) < 2:
        return False
    if len(pad.input) > 3 and pad.input[3]:  # axes (opset 18): torch gives none
        return False
    if len(pad.input) > 2 and pad.input[2]:
        value = g.consts.get(g.name(pad.input[2]))
        if value is None or value.size != 1 or float(value.reshape(-1)[0]) != 0.0:
            return False
    pads = g.consts.get(g.name(pad.input[1]))
    expected = [0, 0, n // 2, 0, 0, 0, 0, (n - 1) // 2, 0, 0]
    return pads is not None and pads.reshape(-1).tolist() == expected
