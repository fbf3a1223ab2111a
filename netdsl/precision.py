"""The precision of matrix products: a setting of the train block (`precision =
auto | fp32 | tf32 | bf16`, overridable with `--set precision=...`), resolved
per target once, before lowering, and recorded on the Plan.

`auto` is what PyTorch does by default for convolutions: TF32 on a GPU
(`torch.backends.cudnn.allow_tf32` is on), FP32 on the CPU. Storage, master
weights, accumulation and every other kernel stay float32 whatever is chosen:
only the operands of matrix products are rounded (TF32: 10 explicit mantissa
bits; BF16: 7). The C target computes in fp32 only: a tf32 or bf16 request
there runs in fp32, and `describe` says so.
"""
from __future__ import annotations

import numpy as np

CHOICES = ("auto", "fp32", "tf32", "bf16")
ON_TARGET = {"cuda": ("fp32", "tf32", "bf16"), "c": ("fp32",)}
AUTO = {"cuda": "tf32", "c": "fp32"}


def requested(g) -> str:
    """The train block's setting (`auto` when the graph has no train block)."""
    spec = g.graph.get("train")
    return spec.precision.name if spec is not None else "auto"


def resolve(asked: str, target: str) -> str:
    """The precision the target computes matrix products in, for the setting `asked`."""
    if asked == "auto":
        return AUTO[target]
    return asked if asked in ON_TARGET[target] else "fp32"


def describe(asked: str, target: str, backend: str) -> str:
    """One line for the start of a run: what the `backend` (running `target`'s code) computes, and why."""
    chosen = resolve(asked, target)
    if asked == "auto":
        return f"precision: {chosen} matrix products (auto on the {backend} backend)"
    if chosen != asked:
        return f"precision: {chosen} matrix products ({asked} asked; the {backend} backend computes in fp32 only)"
    return f"precision: {chosen} matrix products"


def round_operand(array, precision: str):
    """`array` with each element rounded as a matrix product's operand is in `precision`,
    in the array's own dtype: TF32 as cvt.rna.tf32.f32 does (to 10 explicit mantissa bits,
    ties away from zero: add half of the dropped 13 bits' range, then clear them), BF16 as
    __float2bfloat16 does (to 7 bits, ties to even). Infinities and NaN pass unchanged.
    The reference executor multiplies such operands in float64, which makes it the exact
    product of what the tensor cores multiply (the GPU then differs only in summation order)."""
    if precision == "fp32":
        return array
    bits = np.asarray(array, np.float32).view(np.uint32)
    finite = np.isfinite(bits.view(np.float32))
    if precision == "tf32":
        rounded = (bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)
    elif precision == "bf16":
        rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    else:
        raise ValueError(f"unknown precision {precision!r}")
    return np.where(finite, rounded, bits).view(np.float32).astype(np.asarray(array).dtype, copy=False)
