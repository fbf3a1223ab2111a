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
