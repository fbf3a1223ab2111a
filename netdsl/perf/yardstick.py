"""The yardstick: the same training step at PyTorch + cuDNN speed, derived from
the step's matrix-product FLOPs. PyTorch's defaults run convolutions in TF32
(cuDNN) and Linear layers in FP32 (GPU.md §6), so

    time = max(conv FLOPs / (e x TF32 peak) + other FLOPs / (e x FP32 peak),
               operations x h)

with one efficiency e for the whole step (its memory-bound layers included)
and h, PyTorch's host time per operation, for steps too small to keep the GPU
busy (eager mode issues every operation from Python; the host runs ahead of
the GPU, hence max). Both are calibrated, one measurement each, so neither is
checked: e on the PyTorch twin of the two-tower AlexNet at batch 128 on an
H200, 16.75 ms per step (7,644 img/s, docs/gpu.md, 2026-12-04), h on the CIFAR
net's twin on that card, 2.61 ms for a step of 30 operations.

An operation is a node of the step's graph that runs kernels: a layer's forward,
its backward, a gradient sum, an update. PyTorch runs about one operator per
such node whatever netdsl cuts it into, so the count does not move when
netdsl's own launches do (a reduction split in two launches is still one
backward)."""
from __future__ import annotations

from ..step import Call, Plan
from .devices import Device
from .model import gemm_flops

TORCH_EFFICIENCY = 0.099
TORCH_HOST_US_PER_OPERATION = 87.0
MEASURED = "PyTorch twin on an H200, 2026-12-04: AlexNet (two towers) 16.75 ms, CIFAR 2.61 ms at batch 128"


def step_flops(plan: Plan) -> tuple[float, float]:
    """(convolution FLOPs, other matrix-product FLOPs) of one training step."""
    conv = other = 0.0
    for s in plan.steps:
        if isinstance(s, Call) and s.kernel.shape == "gemm":
            if s.kernel.kind == "conv":
                conv += gemm_flops(s.kernel)
            else:
                other += gemm_flops(s.kernel)
    return conv, other


def torch_step_us(plan: Plan, dev: Device, efficiency: float = TORCH_EFFICIENCY) -> float:
    conv, other = step_flops(plan)
    gpu = (conv / (efficiency * dev.tf32_tflops * 1e12) + other / (efficiency * dev.fp32_tflops * 1e12)) * 1e6
    return max(gpu, operations(plan) * TORCH_HOST_US_PER_OPERATION)


def operations(plan: Plan) -> int:
    """The step's graph nodes that run kernels (the module docstring says why not launches)."""
    return len({s.node for s in plan.steps if isinstance(s, Call)})
