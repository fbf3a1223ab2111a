"""Batch normalisation (Ioffe & Szegedy 2015), spatial: per channel of a
C x H x W map, over the batch and the pixels, as torch.nn.BatchNorm2d.

Training normalises with the batch's mean and biased variance and moves the
running statistics towards them, running = (1 - momentum) running +
momentum batch, the variance's term unbiased (count / (count - 1)), as
torch does. At test the running statistics normalise. They are the layer's
`state` (running_mean from 0, running_var from 1): not learned, saved in
checkpoints beside the weights. `weight` (from 1) and `bias` (from 0) are
the affine scale and shift, torch's names and layouts.
"""
from __future__ import annotations

import numpy as np

from .base import torch_functional, ArgSpec, Example, Init, Layer, ShapeError, positive, probability


class BatchNorm(Layer):
    kind = "batchnorm"
    doc = "normalises each channel by batch statistics in training, running statistics at test"
    args = (
        ArgSpec("eps", "float", 1e-5, positive, doc="added to the variance"),
        ArgSpec("momentum", "float", 0.1, probability, doc="weight of a batch in the running statistics"),
        ArgSpec("affine", "bool", True, doc="learn a scale and shift per channel"),
    )
    examples = (
        Example({}, [(3, 4, 5)]),
        Example({"affine": False, "eps": 1e-3}, [(2, 3, 3)], "no scale or shift"),
        Example({"momentum": 0.5}, [(5, 1, 3)], "one row of pixels"),
    )

    def output_shape(self, a, in_shapes):
        if len(in_shapes[0]) != 3:
            raise ShapeError(f"batchnorm normalises the channels of a C x H x W map, got "
                             f"{'x'.join(map(str, in_shapes[0]))}", "place it after a convolution")
        return in_shapes[0]

    def param_shapes(self, a, in_shapes):
        c = in_shapes[0][0]
        return {"weight": (c,), "bias": (c,)} if a["affine"] else {}

    def param_init(self, a, name):
        return Init("constant", 1.0 if name == "weight" else 0.0)

    def state_shapes(self, a, in_shapes):
        c = in_shapes[0][0]
        return {"running_mean": (c,), "running_var": (c,)}

    def state_init(self, a, name):
        return {"running_mean": 0.0, "running_var": 1.0}[name]

    def forward(self, a, params, xs, ctx):
        x = xs[0]
        axes, shape = (0, 2, 3), (1, -1, 1, 1)
        train = ctx is not None and ctx.train
        state = ctx.state if ctx is not None else None
        if train:
            mean, var = x.mean(axis=axes), x.var(axis=axes)
            if state is not None:
                count = x.size // x.shape[1]
                m = a["momentum"]
                state["running_mean"][...] = (1 - m) * state["running_mean"] + m * mean
                state["running_var"][...] = (1 - m) * state["running_var"] + m * var * (count / max(count - 1, 1))
        elif state is not None:
            mean, var = state["running_mean"].astype(x.dtype), state["running_var"].astype(x.dtype)
        else:  # no state kept: the initial statistics
            mean, var = np.zeros(x.shape[1], x.dtype), np.ones(x.shape[1], x.dtype)
        inv_std = 1 / np.sqrt(var + a["eps"])
        xhat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
        y = xhat * params["weight"].reshape(shape) + params["bias"].reshape(shape) if a["affine"] else xhat
        return y.astype(x.dtype), (xhat, inv_std, train)

    def backward(self, a, params, cache, dy, ctx):
        xhat, inv_std, train = cache
        axes, shape = (0, 2, 3), (1, -1, 1, 1)
        scale = inv_std * params["weight"] if a["affine"] else inv_std
        if train:  # the batch statistics depend on x too
            dx = (dy - dy.mean(axis=axes, keepdims=True)
                  - xhat * (dy * xhat).mean(axis=axes, keepdims=True)) * scale.reshape(shape)
        else:
            dx = dy * scale.reshape(shape)
        grads = {"weight": (dy * xhat).sum(axis=axes), "bias": dy.sum(axis=axes)} if a["affine"] else {}
        return [dx.astype(dy.dtype)], {k: v.astype(dy.dtype) for k, v in grads.items()}

    def torch_forward(self, a, params, xs, train, state=None):
        return torch_functional().batch_norm(xs[0], state["running_mean"], state["running_var"], params.get("weight"),
                                             params.get("bias"), training=train, momentum=a["momentum"], eps=a["eps"])

    def onnx(self, b, name, d, xs):
        """At test time: the running statistics (the checkpoint's, else their starting values)."""
        a, channels = d.args, b.shapes[xs[0]][0]
        state = {s: b.params.get(f"{name}.{s}", np.full(channels, self.state_init(a, s), np.float32))
                 for s in ("running_mean", "running_var")}
        ones, zeros = np.ones(channels, np.float32), np.zeros(channels, np.float32)
        scale = b.param(name, "weight") if a["affine"] else b.constant(b.fresh("one"), ones)
        shift = b.param(name, "bias") if a["affine"] else b.constant(b.fresh("zero"), zeros)
        b.op("BatchNormalization", [xs[0], scale, shift, b.constant(b.fresh("mean"), state["running_mean"]),
                                    b.constant(b.fresh("var"), state["running_var"])], name, epsilon=float(a["eps"]))
