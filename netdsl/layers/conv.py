"""2-D convolution (cross-correlation, as every framework computes it).

Options beyond the paper's square kernels: `size`, `stride`, `pad` and
`dilation` take an int (square) or a pair [height, width]; `pad=same` keeps
the spatial size (stride 1 and an odd dilated kernel only, so the border is
the same on every side: TensorFlow's uneven "same" for other strides would need
separate top and bottom borders in every kernel); `bias=none` leaves the bias
out (no parameter, no bias kernels: a conv that batch norm follows has its
shift there, as torchvision's ResNets); `groups=G` splits input
channels and filters into G groups, group g's filters reading only group g's
channels, with weight shape (F, C/G, kh, kw) as PyTorch's. A tower's conv reads
only its own tower's channels, so AlexNet's two-GPU groups also fall out of the
graph; `groups=` says the same on one device, with no transfers.

The numpy reference lowers to one large matrix product per group and batch
(im2col), which is what keeps it within reach of PyTorch on the CPU.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ._weights import WEIGHT_ARGS, WeightedLayer
from .base import ArgSpec, torch_functional, Example, ShapeError, each, non_negative, operand, pair, positive, spatial_out


def windows(xp: np.ndarray, k, stride, oh: int, ow: int, dilation=1) -> np.ndarray:
    """View of every kh x kw window of padded xp: (N, C, kh, kw, OH, OW), no copy.

    k, stride and dilation are ints or (height, width) pairs.
    """
    (kh, kw), (sh, sw), (dh, dw) = pair(k), pair(stride), pair(dilation)
    n, c, _, _ = xp.shape
    sn, sc, srow, scol = xp.strides
    return as_strided(xp, (n, c, kh, kw, oh, ow), (sn, sc, srow * dh, scol * dw, srow * sh, scol * sw),
                      writeable=False)


def pad_spatial(x: np.ndarray, pad, value=0.0) -> np.ndarray:
    ph, pw = pair(pad)
    if ph == pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def im2col(x: np.ndarray, k, stride, pad, oh: int, ow: int, dilation=1) -> np.ndarray:
    """(C*kh*kw, N*OH*OW) matrix of input patches, rows ordered (c, i, j), columns (n, y, x)."""
    w = windows(pad_spatial(x, pad), k, stride, oh, ow, dilation)
    n, c = x.shape[:2]
    return np.ascontiguousarray(w.transpose(1, 2, 3, 0, 4, 5)).reshape(-1, n * oh * ow)


def col2im(cols: np.ndarray, x_shape, k, stride, pad, oh: int, ow: int, dilation=1) -> np.ndarray:
    """Adjoint of im2col: scatter-add patch gradients back onto the input."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = pair(k), pair(stride), pair(pad), pair(dilation)
    n, c, h, w = x_shape
    dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), cols.dtype)
    cols = cols.reshape(c, kh, kw, n, oh, ow)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i * dh:i * dh + sh * oh:sh, j * dw:j * dw + sw * ow:sw] += cols[:, i, j].transpose(1, 0, 2, 3)
    return dxp[:, :, ph:ph + h, pw:pw + w]


def _bias_check(value) -> str | None:
    if isinstance(value, str) and value != "none":
        return f"must be a number (the bias's starting value) or `none` (no bias), not `{value}`"
    return None


def has_bias(a) -> bool:
    return a.get("bias", 0.0) != "none"


# The shared weight arguments, with conv's `bias` also taking `none`.
CONV_WEIGHT_ARGS = tuple(
    ArgSpec("bias", "float|str", 0.0, _bias_check, doc="constant the bias starts at, or `none`: no bias")
    if spec.name == "bias" else spec for spec in WEIGHT_ARGS)


def _pad_check(value) -> str | None:
    if value == "same":
        return None
    if isinstance(value, str):
        return f"must be a whole number, a pair [height, width] or `same`, not `{value}`"
    return each(non_negative)(value)


class Conv(WeightedLayer):
    kind = "conv"
    activation_epilogue = True  # in the NCHW epilogue of its tensor-core product
    doc = "convolution with `filters` output channels and `size` kernels, optionally grouped and dilated"
    args = (
        ArgSpec("filters", "int", check=positive, doc="output channels"),
        ArgSpec("size", "int_pair", check=each(positive), doc="kernel height and width: k or [kh, kw]"),
        ArgSpec("stride", "int_pair", 1, each(positive), doc="s or [sh, sw]"),
        ArgSpec("pad", "int_pair|str", 0, _pad_check,
                doc="zeros added on each side: p, [ph, pw], or `same` (output size = input size; stride 1)"),
        ArgSpec("dilation", "int_pair", 1, each(positive), doc="spacing of the kernel taps: d or [dh, dw]"),
        ArgSpec("groups", "int", 1, positive, doc="channel groups; channels and filters divide by it"),
    ) + CONV_WEIGHT_ARGS
    examples = (
        Example({"filters": 4, "size": 3, "stride": 2, "pad": 1}, [(3, 7, 6)], "stride with leftover"),
        Example({"filters": 5, "size": 5, "stride": 1, "pad": 0}, [(5, 9, 9)]),
        Example({"filters": 3, "size": 1, "stride": 1, "pad": 0}, [(5, 3, 3)], "1x1"),
        Example({"filters": 2, "size": 4, "stride": 3, "pad": 2}, [(3, 11, 10)], "overlap and odd width"),
        Example({"filters": 1, "size": 2, "stride": 2, "pad": 1}, [(1, 5, 4)], "one channel in and out, even kernel"),
        Example({"filters": 6, "size": 3, "stride": 1, "pad": 1, "groups": 3}, [(6, 5, 7)], "three groups"),
        Example({"filters": 4, "size": 3, "stride": 2, "pad": 0, "groups": 2}, [(4, 8, 7)],
                "two groups, strided, no padding"),
        Example({"filters": 3, "size": 3, "stride": 1, "pad": 2, "dilation": 2}, [(2, 7, 6)], "dilated"),
        Example({"filters": 3, "size": [1, 7], "stride": [2, 1], "pad": [0, 3]}, [(2, 7, 9)],
                "non-square kernel, stride and pad"),
        Example({"filters": 2, "size": [3, 2], "stride": [1, 2], "pad": [2, 1], "dilation": [1, 2]}, [(3, 6, 7)],
                "non-square dilation, pad larger than a kernel row"),
        Example({"filters": 4, "size": 3, "pad": "same", "dilation": [2, 1], "groups": 2}, [(2, 6, 5)],
                "same padding, dilated, depthwise"),
        Example({"filters": 3, "size": 3, "stride": 2, "pad": 1, "bias": "none"}, [(2, 6, 5)], "no bias"),
        Example({"filters": 3, "size": 3, "stride": 1, "pad": 1}, [(2, 35, 45)],
                "long k (batch x 1,575 pixels): the CUDA weight gradient in 3 or 9 slices of odd depth"),
    )

    def geometry(self, a) -> SimpleNamespace:
        """(kh, kw), (sh, sw), (ph, pw), (dh, dw) and the groups, `same` resolved to its border.

        Also what the kernel templates read (`layer.geometry(args)`).
        """
        (kh, kw), (sh, sw), (dh, dw) = pair(a["size"]), pair(a["stride"]), pair(a.get("dilation", 1))
        ph, pw = ((dh * (kh - 1) // 2, dw * (kw - 1) // 2) if a["pad"] == "same" else pair(a["pad"]))
        return SimpleNamespace(kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw, dh=dh, dw=dw, groups=a.get("groups", 1),
                               span_h=dh * (kh - 1) + 1, span_w=dw * (kw - 1) + 1)

    def check_args(self, a):
        g = self.geometry(a)
        if a["filters"] % g.groups:
            return (f"{a['filters']} filters do not divide into {g.groups} groups; "
                    f"use a multiple of {g.groups} filters, or other `groups`")
        if a["pad"] == "same":
            if (g.sh, g.sw) != (1, 1):
                return ("`pad=same` needs stride 1 (another stride has no border equal on every side); "
                        "write `pad` as a number or a pair instead")
            if g.span_h % 2 == 0 or g.span_w % 2 == 0:
                return (f"`pad=same` needs an odd kernel extent, and this one spans {g.span_h}x{g.span_w} "
                        "(dilation x (size - 1) + 1); use an odd `size` or write `pad` explicitly")
        return None

    def output_shape(self, a, in_shapes):
        c, h, w = _chw(in_shapes[0], self.kind)
        g = self.geometry(a)
        if c % g.groups:
            raise ShapeError(f"{c} input channels do not divide into {g.groups} groups",
                             f"use `groups` that divides {c}, or change the layer before")
        if g.span_h > h + 2 * g.ph or g.span_w > w + 2 * g.pw:
            dilated = f" (dilated to {g.span_h}x{g.span_w})" if (g.dh, g.dw) != (1, 1) else ""
            border = g.ph if g.ph == g.pw else f"{g.ph}x{g.pw}"
            raise ShapeError(f"a {g.kh}x{g.kw} kernel{dilated} is larger than its {h}x{w} input "
                             f"(padded by {border})", "use a smaller `size`, more `pad`, or a larger input")
        return (a["filters"], spatial_out(h, g.span_h, g.sh, g.ph), spatial_out(w, g.span_w, g.sw, g.pw))

    def param_shapes(self, a, in_shapes):
        g = self.geometry(a)
        weight = {"weight": (a["filters"], in_shapes[0][0] // g.groups, g.kh, g.kw)}
        return weight | {"bias": (a["filters"],)} if has_bias(a) else weight

    def macs(self, a, in_shapes, out_shape):
        f, oh, ow = out_shape
        g = self.geometry(a)
        return f * oh * ow * (in_shapes[0][0] // g.groups) * g.kh * g.kw

    def _lowering(self, a, x_shape):
        g = self.geometry(a)
        oh = spatial_out(x_shape[2], g.span_h, g.sh, g.ph)
        ow = spatial_out(x_shape[3], g.span_w, g.sw, g.pw)
        return g, ((g.kh, g.kw), (g.sh, g.sw), (g.ph, g.pw), oh, ow, (g.dh, g.dw))

    def forward(self, a, params, xs, ctx):
        x = xs[0]
        g, lowering = self._lowering(a, x.shape)
        n, (oh, ow) = x.shape[0], lowering[3:5]
        cols = operand(ctx, im2col(x, *lowering))
        # A group's rows of the columns are its channels' (rows go channel-major),
        # so each group is one product of its filters with its own block of rows.
        f, groups = a["filters"], g.groups
        y = (operand(ctx, params["weight"]).reshape(groups, f // groups, -1) @ cols.reshape(groups, -1, cols.shape[1]))
        y = y.reshape(f, -1)
        # Bias in place on the fresh product, so the batch-first reorder below
        # is the only copy of the output.
        if "bias" in params:
            y += params["bias"][:, None]
        y = y.reshape(f, n, oh, ow).transpose(1, 0, 2, 3)
        return np.ascontiguousarray(y), (x.shape, cols)

    def backward(self, a, params, cache, dy, ctx):
        x_shape, cols = cache  # the columns as the product's operand: already rounded
        g, lowering = self._lowering(a, x_shape)
        f, groups = dy.shape[1], g.groups
        dyr = dy.transpose(1, 0, 2, 3).reshape(f, -1)
        by_group = operand(ctx, dyr).reshape(groups, f // groups, -1)
        cols_g = cols.reshape(groups, -1, cols.shape[1])
        w = operand(ctx, params["weight"]).reshape(groups, f // groups, -1)
        dw = (by_group @ cols_g.transpose(0, 2, 1)).reshape(params["weight"].shape)
        dx = None
        if ctx is None or ctx.wants_input_grad(0):
            dx = col2im((w.transpose(0, 2, 1) @ by_group).reshape(cols.shape), x_shape, *lowering)
        return [dx], {"weight": dw} | ({"bias": dyr.sum(axis=1)} if "bias" in params else {})


    def torch_forward(self, a, params, xs, train, state=None):
        g = self.geometry(a)  # pairs, and `pad=same` resolved to its border
        return torch_functional().conv2d(xs[0], params["weight"], params.get("bias"), stride=(g.sh, g.sw),
                                         padding=(g.ph, g.pw), dilation=(g.dh, g.dw), groups=g.groups)

    def onnx(self, b, name, d, xs):
        g = self.geometry(d.args)
        inputs = [xs[0], b.param(name, "weight")] + ([b.param(name, "bias")] if f"{name}.bias" in b.params else [])
        b.op("Conv", inputs, name, kernel_shape=[g.kh, g.kw], strides=[g.sh, g.sw], pads=[g.ph, g.pw, g.ph, g.pw],
             dilations=[g.dh, g.dw], group=g.groups)


def _chw(shape, kind: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"{kind} needs a C x H x W input, got {'x'.join(map(str, shape))}",
                         "a convolution or pooling cannot follow a fully connected layer")
    return shape
