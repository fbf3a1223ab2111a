"""Elementwise sum of two or more inputs of one shape: a residual connection.

The gradient of the sum reaches every input unchanged. One broadcast is
allowed (_broadcast.py): per-channel values C x 1 x 1 added to every pixel of
a C x H x W map, whose gradient is the sum of dy over the pixels. Other
shapes that differ are an error: a residual whose branch changed the channel
count or the resolution needs a projection of the shortcut, and the error
says which one.
"""
from __future__ import annotations

from ._broadcast import broadcast_shape, reduce_to
from .base import Example, Layer, ShapeError


def _show(shape) -> str:
    return "x".join(map(str, shape))


def projection_hint(a: tuple[int, ...], b: tuple[int, ...]) -> str:
    """How to bring the shortcut (the input with more pixels) to the other's shape."""
    if len(a) == len(b) == 3:
        short, long = (a, b) if a[1] * a[2] >= b[1] * b[2] else (b, a)
        # a 1x1 convolution with stride s and no padding keeps (H - 1) // s + 1 rows
        stride = next((s for s in range(1, short[1] + 1)
                       if ((short[1] - 1) // s + 1, (short[2] - 1) // s + 1) == long[1:]), None)
        if stride:
            extra = f", stride={stride}" if stride > 1 else ""
            return (f"project the {_show(short)} input with a 1x1 convolution: "
                    f"`conv(x, {long[0]}, size=1{extra})` gives {_show(long)}")
    if len(a) == len(b) == 1:
        return f"project one input with a fully connected layer: `fc(x, {max(a[0], b[0])})`"
    return "project one input to the other's shape (a 1x1 convolution, or fc for vectors) before adding"


class Add(Layer):
    kind = "add"
    doc = "elementwise sum of its inputs (2+, of one shape, or C x 1 x 1 broadcast over C x H x W)"
    n_inputs = None
    examples = (
        Example({}, [(3, 4, 5), (3, 4, 5)]),
        Example({}, [(7,), (7,), (7,)], "three vectors"),
        Example({}, [(2, 1, 3), (2, 1, 3), (2, 1, 3), (2, 1, 3)], "four inputs"),
        Example({}, [(3, 4, 5), (3, 1, 1)], "per-channel values broadcast over the pixels"),
        Example({}, [(2, 1, 1), (2, 3, 3), (2, 1, 1)], "broadcast first and last"),
    )

    def output_shape(self, a, in_shapes):
        if len(in_shapes) < 2:
            raise ShapeError("add sums two or more inputs; it was given one",
                             "list both tensors: `y = add(shortcut, branch)` or `branch -> add(shortcut)`")
        out = broadcast_shape(in_shapes)
        if out is None:
            first = tuple(in_shapes[0])
            shape = next(tuple(s) for s in in_shapes[1:] if tuple(s) != first)
            raise ShapeError(f"cannot add tensors of different shapes: {_show(first)} and {_show(shape)}",
                             projection_hint(first, shape))
        return out

    def forward(self, a, params, xs, ctx):
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y = y + x  # left to right, as the kernel adds
        return y, [x.shape[1:] for x in xs]

    def backward(self, a, params, shapes, dy, ctx):
        return [reduce_to(dy, shape) for shape in shapes], {}

    def torch_forward(self, a, params, xs, train, state=None):
        return sum(xs[1:], xs[0])

    def onnx(self, b, name, d, xs):
        b.op("Sum", xs, name)
