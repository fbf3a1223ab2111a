"""Local response normalisation across channels, the paper's section 3.3:

    b[i] = a[i] / (k + alpha * sum_{j = i - n//2 .. i + (n-1)//2} a[j]^2) ^ beta

alpha is NOT divided by n. Caffe's, cuda-convnet's and PyTorch's
LocalResponseNorm divide by n, so their alpha equals ours times n (the
paper's alpha=1e-4, n=5 is torch.nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2)).

`region=within` normalises each channel over the size x size pixels around
each pixel instead (Caffe's WITHIN_CHANNEL, the spatial normalisation of
Jarrett et al.), zeros beyond the edges, with the same convention: alpha is
not divided by the window's size^2 pixels, where Caffe's is (Caffe's alpha
equals ours times size^2, and its k is always 1). Only odd sizes, as in
Caffe: the window is centred.
"""
from __future__ import annotations

import numpy as np

from .base import ArgSpec, torch_functional, Example, Layer, ShapeError, non_negative, positive


def channel_window_sum(v: np.ndarray, below: int, above: int, axis: int = 1) -> np.ndarray:
    """Sum of v over channels i - below .. i + above of each channel i (zeros beyond the edges);
    `axis` other than 1 sums along rows or columns of pixels instead.

    Added one shifted slice at a time rather than as a difference of prefix
    sums: a prefix sum carries every earlier channel, so in float32 one large
    channel wipes out the small window sums of channels far from it.
    """
    c = v.shape[axis]
    total = v.copy()
    t, u = np.moveaxis(total, axis, 1), np.moveaxis(v, axis, 1)  # views: writes reach total
    for d in range(1, min(below, c - 1) + 1):
        t[:, d:] += u[:, :c - d]
    for d in range(1, min(above, c - 1) + 1):
        t[:, :c - d] += u[:, d:]
    return total


def window_sum(v: np.ndarray, a: dict, mirrored: bool = False) -> np.ndarray:
    """The normalising sum of `region`: across channels (mirrored: the window seen from
    the other end, for backward), or over the size x size pixels around each pixel."""
    if a.get("region", "across") == "within":  # direct callers may leave the default out
        r = a["size"] // 2
        return channel_window_sum(channel_window_sum(v, r, r, axis=2), r, r, axis=3)
    below, above = window(a["size"])
    return channel_window_sum(v, *((above, below) if mirrored else (below, above)))


def window(n: int) -> tuple[int, int]:
    """(channels below, channels above) in the window of size n: n//2 and (n-1)//2."""
    return n // 2, (n - 1) // 2


class LRN(Layer):
    kind = "lrn"
    doc = ("local response normalisation across `size` neighbouring channels (the paper's formula), "
           "or within each channel over size x size pixels")
    args = (
        ArgSpec("size", "int", check=positive, doc="channels in the window (n)"),
        ArgSpec("alpha", "float", 1e-4, non_negative, doc="scale of the sum of squares, not divided by n"),
        ArgSpec("beta", "float", 0.75, non_negative, doc="exponent"),
        ArgSpec("k", "float", 2.0, positive, doc="additive constant"),
        ArgSpec("region", "str", "across", lambda v: None if v in ("across", "within") else
                "must be `across` (channels) or `within` (a channel's pixels)", doc="where the window runs"),
    )
    examples = (
        Example({"size": 5, "alpha": 1e-2, "beta": 0.75, "k": 2.0}, [(7, 3, 4)]),
        Example({"size": 3, "alpha": 0.1, "beta": 0.6, "k": 1.0}, [(2, 3, 3)], "window wider than channels"),
        Example({"size": 4, "alpha": 0.05, "beta": 0.75, "k": 1.5}, [(6, 2, 5)], "even window"),
        Example({"size": 6, "alpha": 0.2, "beta": 0.5, "k": 1.0}, [(3, 3, 1)], "even window wider than channels"),
        Example({"size": 1, "alpha": 0.3, "beta": 1.0, "k": 0.5}, [(5, 1, 3)], "window of one channel"),
        Example({"size": 3, "alpha": 0.1, "beta": 0.75, "k": 2.0, "region": "within"}, [(2, 4, 5)], "spatial"),
        Example({"size": 5, "alpha": 0.05, "beta": 0.6, "k": 1.0, "region": "within"}, [(3, 3, 2)],
                "spatial window wider than the map"),
        Example({"size": 1, "alpha": 0.2, "beta": 1.0, "k": 1.0, "region": "within"}, [(2, 2, 3)], "one pixel"),
    )

    def check_args(self, a):
        if a["region"] == "within" and a["size"] % 2 == 0:
            return f"region=within needs an odd size (a window centred on each pixel), got {a['size']}"
        return None

    def output_shape(self, a, in_shapes):
        if len(in_shapes[0]) != 3:
            raise ShapeError("lrn normalises across the channels of a C x H x W input",
                             "place lrn after a convolution")
        return in_shapes[0]

    def forward(self, a, params, xs, ctx):
        x = xs[0]
        scale = a["k"] + a["alpha"] * window_sum(x * x, a)
        y = x * scale ** -a["beta"]
        return y, (x, y, scale)

    def backward(self, a, params, cache, dy, ctx):
        x, y, scale = cache
        # x[j] feeds every output i whose window holds j, i.e. i = j - above .. j + below:
        # the mirrored window, which differs from the forward one when n is even.
        t = window_sum(dy * y / scale, a, mirrored=True)
        dx = dy * scale ** -a["beta"] - 2 * a["alpha"] * a["beta"] * x * t
        return [dx.astype(x.dtype)], {}

    # torch's and ONNX's alpha is divided by the window, ours is not: alpha * size there.
    def torch_forward(self, a, params, xs, train, state=None):
        F, x = torch_functional(), xs[0]
        if a.get("region") == "within":  # the sum over size x size pixels, zeros past the edges
            n = a["size"]
            sums = F.avg_pool2d(x * x, n, stride=1, padding=n // 2, count_include_pad=True) * (n * n)
            return x / (a["k"] + a["alpha"] * sums) ** a["beta"]
        # torch's window over channels (size // 2 below, (size - 1) // 2 above) is ours for any size
        return F.local_response_norm(x, a["size"], alpha=a["alpha"] * a["size"], beta=a["beta"], k=a["k"])

    def onnx(self, b, name, d, xs):
        """ONNX's LRN centres an even window the other way (one more channel above), so
        an even window, and the spatial one, are built from primitives: the squares summed
        by a fixed convolution (a band matrix over channels, or ones over pixels)."""
        a = d.args
        n, x = a["size"], xs[0]
        channels = b.shapes[x][0]
        if a.get("region") == "within":
            ones = np.ones((channels, 1, n, n), np.float32)
            squares = b.op("Mul", [x, x])
            sums = b.op("Conv", [squares, b.constant(b.fresh("window"), ones)], kernel_shape=[n, n],
                        pads=[n // 2] * 4, group=channels)
            _onnx_normalise(b, name, x, sums, a)
            return
        if n % 2:
            b.op("LRN", [x], name, size=n, alpha=a["alpha"] * n, beta=a["beta"], bias=a["k"])
            return
        below, above = window(n)
        band = np.zeros((channels, channels, 1, 1), np.float32)
        for i in range(channels):
            band[i, max(0, i - below):i + above + 1] = 1.0
        squares = b.op("Mul", [x, x])
        sums = b.op("Conv", [squares, b.constant(b.fresh("band"), band)], kernel_shape=[1, 1])
        _onnx_normalise(b, name, x, sums, a)


def _onnx_normalise(b, name, x, sums, a):
    """x / (k + alpha * sums) ^ beta, our alpha (not divided by the window)."""
    scaled = b.op("Mul", [sums, b.constant(b.fresh("alpha"), np.float32(a["alpha"]))])
    base = b.op("Add", [scaled, b.constant(b.fresh("k"), np.float32(a["k"]))])
    power = b.op("Pow", [base, b.constant(b.fresh("beta"), np.float32(a["beta"]))])
    b.op("Div", [x, power], name)
