"""Local response normalisation across channels, the paper's section 3.3:

    b[i] = a[i] / (k + alpha * sum_{j = i - n//2 .. i + (n-1)//2} a[j]^2) ^ beta

alpha is NOT divided by n. Caffe's, cuda-convnet's and PyTorch's
LocalResponseNorm divide by n, so their alpha equals ours times n (the
paper's alpha=1e-4, n=5 is torch.nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2)).
"""
from __future__ import annotations

import numpy as np

from .base import ArgSpec, Example, Layer, ShapeError, non_negative, positive


def channel_window_sum(v: np.ndarray, below: int, above: int) -> np.ndarray:
    """Sum of v over channels i - below .. i + above of each channel i (zeros beyond the edges).

    Added one shifted slice at a time rather than as a difference of prefix
    sums: a prefix sum carries every earlier channel, so in float32 one large
    channel wipes out the small window sums of channels far from it.
    """
    c = v.shape[1]
    total = v.copy()
    for d in range(1, min(below, c - 1) + 1):
        total[:, d:] += v[:, :c - d]
    for d in range(1, min(above, c - 1) + 1):
        total[:, :c - d] += v[:, d:]
    return total


def window(n: int) -> tuple[int, int]:
    """(channels below, channels above) in the window of size n: n//2 and (n-1)//2."""
    return n // 2, (n - 1) // 2


class LRN(Layer):
    kind = "lrn"
    doc = "local response normalisation across `size` neighbouring channels (the paper's formula)"
    args = (
        ArgSpec("size", "int", check=positive, doc="channels in the window (n)"),
        ArgSpec("alpha", "float", 1e-4, non_negative, doc="scale of the sum of squares, not divided by n"),
        ArgSpec("beta", "float", 0.75, non_negative, doc="exponent"),
        ArgSpec("k", "float", 2.0, positive, doc="additive constant"),
    )
    examples = (
        Example({"size": 5, "alpha": 1e-2, "beta": 0.75, "k": 2.0}, [(7, 3, 4)]),
        Example({"size": 3, "alpha": 0.1, "beta": 0.6, "k": 1.0}, [(2, 3, 3)], "window wider than channels"),
        Example({"size": 4, "alpha": 0.05, "beta": 0.75, "k": 1.5}, [(6, 2, 5)], "even window"),
        Example({"size": 6, "alpha": 0.2, "beta": 0.5, "k": 1.0}, [(3, 3, 1)], "even window wider than channels"),
        Example({"size": 1, "alpha": 0.3, "beta": 1.0, "k": 0.5}, [(5, 1, 3)], "window of one channel"),
    )

    def output_shape(self, a, in_shapes):
        if len(in_shapes[0]) != 3:
            raise ShapeError("lrn normalises across the channels of a C x H x W input",
                             "place lrn after a convolution")
        return in_shapes[0]

    def forward(self, a, params, xs, ctx):
        x = xs[0]
        scale = a["k"] + a["alpha"] * channel_window_sum(x * x, *window(a["size"]))
        y = x * scale ** -a["beta"]
        return y, (x, y, scale)

    def backward(self, a, params, cache, dy, ctx):
        x, y, scale = cache
        # x[j] feeds every output i whose window holds j, i.e. i = j - above .. j + below:
        # the mirrored window, which differs from the forward one when n is even.
        below, above = window(a["size"])
        t = channel_window_sum(dy * y / scale, above, below)
        dx = dy * scale ** -a["beta"] - 2 * a["alpha"] * a["beta"] * x * t
        return [dx.astype(x.dtype)], {}
