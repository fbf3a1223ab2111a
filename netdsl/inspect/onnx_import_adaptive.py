"""Adaptive pooling read back from the ONNX netdsl export writes for it.

ONNX has no adaptive pooling, so where the windows do not tile the input evenly
(GoogLeNet's side heads pool 14 x 14 to 4 x 4 with overlapping windows),
`netdsl export` writes each window as a Slice of the input reduced by
ReduceMean or ReduceMax, joined by a Concat along columns per output row and a
Concat along rows (layers/_adaptive.py). Here that tree, ending at its last
Concat, becomes one ADAPTIVE node with the output size, which OPS maps to
adaptive_avgpool or adaptive_maxpool. It is matched only when every window is
the one PyTorch's rule gives for that output size on the input's size (from
ONNX's shape inference), and every inner tensor feeds only the tree.
"""
from __future__ import annotations

from ..layers._adaptive import bounds
from .onnx_import_graph import Graph, Layer, attrs

ADAPTIVE = "NetdslAdaptivePool"  # the fused node's op type; no ONNX model uses it
REDUCE_KINDS = {"ReduceMean": "adaptive_avgpool", "ReduceMax": "adaptive_maxpool"}


def match(index, top):
    """(x, inner nodes, reduce op, (oh, ow)) if `top` ends an adaptive pool's tree, else None."""
    axis = attrs(top).get("axis")
    if top.op_type != "Concat" or axis not in (2, 3):
        return None
    rows = [_producer(index, t, top) for t in top.input] if axis == 2 else [top]
    if None in rows:
        return None
    grid, inner = [], []
    for row in rows:
        if row.op_type == "Concat" and attrs(row).get("axis") == 3:  # a row of cells
            cells = [_producer(index, t, row) for t in row.input]
            inner += [row] if row is not top else []
        else:  # one column: the row is its one cell
            cells = [row]
        windows = [_window(index, cell) for cell in cells]
        if None in windows:
            return None
        grid.append(windows)
        inner += cells + [cut for _, _, cut, _ in windows]
    return _checked(index.g, grid, inner)


def _producer(index, tensor: str, reader):
    """The node making `tensor` when `reader` is its only reader."""
    node = index.producer.get(index.g.name(tensor))
    return node if node is not None and index.only_reader(tensor) is reader else None


def _window(index, cell):
    """(x, ((top, bottom), (left, right)), the Slice, the reduce op) of Reduce(Slice(x))."""
    if cell is None or cell.op_type not in REDUCE_KINDS or attrs(cell).get("keepdims", 1) != 1:
        return None
    if _axes(index, cell, 1) != [2, 3]:
        return None
    cut = _producer(index, cell.input[0], cell)
    if cut is None or cut.op_type != "Slice" or len(cut.input) < 4 or _const(index, cut.input[3]) != [2, 3]:
        return None
    if len(cut.input) > 4 and cut.input[4] and _const(index, cut.input[4]) != [1, 1]:
        return None  # steps other than 1
    starts, ends = _const(index, cut.input[1]), _const(index, cut.input[2])
    if starts is None or ends is None:
        return None
    return index.g.name(cut.input[0]), tuple(zip(starts, ends)), cut, cell.op_type


def _axes(index, cell, slot: int):
    """A reduction's axes: its input `slot` from opset 18, its attribute before."""
    if len(cell.input) > slot and cell.input[slot]:
        return _const(index, cell.input[slot])
    axes = attrs(cell).get("axes")
    return list(axes) if axes is not None else None


def _const(index, tensor: str):
    value = index.g.consts.get(index.g.name(tensor))
    return [int(v) for v in value.reshape(-1)] if value is not None else None


def _checked(g: Graph, grid, inner):
    """The match if the windows are PyTorch's adaptive ones for a grid of this size."""
    xs = {x for row in grid for x, _, _, _ in row}
    ops = {op for row in grid for _, _, _, op in row}
    oh, ow = len(grid), len(grid[0])
    if len(xs) != 1 or len(ops) != 1 or any(len(row) != ow for row in grid):
        return None
    shape = g.shapes.get(next(iter(xs)), [])
    if len(shape) != 4 or not all(isinstance(s, int) for s in shape[2:]):
        return None
    height, width = shape[2:]
    for oy, row in enumerate(grid):
        for ox, (_, window, _, _) in enumerate(row):
            if window != (bounds(oy, height, oh), bounds(ox, width, ow)):
                return None
    return xs.pop(), inner, ops.pop(), (oh, ow)


def adaptive_pool(g: Graph, node) -> Layer:
    """OPS' mapper of a fused ADAPTIVE node."""
    a = attrs(node)
    oh, ow = a["out"]
    return Layer(a["kind"].decode() if isinstance(a["kind"], bytes) else a["kind"], [node.input[0]],
                 [f"out={oh}" if oh == ow else f"out=[{oh}, {ow}]"])
