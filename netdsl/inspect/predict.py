"""`netdsl time FILE --predict DEVICE`: the planned cuda training step's time on
a GPU that is not here, launch by launch, from the time model (netdsl/perf):
the Plan the cuda backend runs, every logical device on one GPU (as the
measured H200 run placed them), registers and shared memory from ptxas."""
from __future__ import annotations

from ..perf import model, resources, yardstick
from ..perf.devices import Device, device


def _plan(file: str, overrides: dict, batch: int | None):
    from .. import passes
    from ..compiler import compile_graph
    g = compile_graph(file, overrides=overrides, training=True)
    batch = batch or g.graph["train"].batch
    return passes.plan_step(g, batch, "cuda", lambda logical: "gpu0")


def report(plan, dev: Device, costs: list[model.LaunchCost], assumption: str | None,
           params: model.Params = model.PARAMS) -> str:
    width = max([len(c.kernel) for c in costs] + [6])
    head = (f"{'#':>4} {'kernel':<{width}} {'grid':>16} {'thr':>4} {'regs':>4} {'smem B':>6} {'blk/SM':>6} "
            f"{'waves':>5} {'GFLOP':>8} {'MB read':>8} {'MB wr':>7} {'bound':<8} {'us':>9}  uncertain")
    lines = [f"predicted: network {plan.network}, cuda training step at batch {plan.batch} on one {dev.name} "
             f"({dev.sms} SMs, FP32 {dev.fp32_tflops:g} / TF32 {dev.tf32_tflops:g} / BF16 {dev.bf16_tflops:g} "
             f"TFLOPS dense, {dev.dram_gbs:,.0f} GB/s); nothing was run",
             f"registers and shared memory: {assumption or 'ptxas for ' + dev.arch}", "", head, "-" * len(head)]
    for c in costs:
        grid = "x".join(map(str, c.grid))
        lines.append(f"{c.index:>4} {c.kernel:<{width}} {grid:>16} {c.threads:>4} {c.registers:>4} {c.shared:>6} "
                     f"{c.blocks_per_sm:>6} {c.waves:>5} {c.flops / 1e9:>8.2f} {c.bytes_read / 1e6:>8.1f} "
                     f"{c.bytes_written / 1e6:>7.1f} {c.bound:<8} {c.us:>9.1f}  {'; '.join(c.notes)}")
    lines.append("-" * len(head))
    alone = sum(c.us for c in costs)
    stream = model.stream_us(costs, params)
    flops = sum(c.flops for c in costs)
    precision = plan.precision if plan.precision in ("tf32", "bf16") else "fp32"
    peak = dev.peak_tflops(precision) * 1e12
    torch = yardstick.torch_step_us(plan, dev)
    lines += [
        f"{len(costs)} launches, {flops / 1e12:.3f} TFLOP of matrix products per step",
        f"sum of launches, each waited for alone: {alone / 1e3:10.2f} ms",
        f"one stream in program order:            {stream / 1e3:10.2f} ms  {plan.batch / stream * 1e6:10,.0f} images/s  "
        f"{flops / (stream * 1e-6) / peak:.1%} of the {precision.upper()} peak",
        f"yardstick, PyTorch + cuDNN:             {torch / 1e3:10.2f} ms  {plan.batch / torch * 1e6:10,.0f} images/s  "
        f"(netdsl / PyTorch {stream / torch:.1f}x)",
        "",
        "model: per launch, the sum over waves of max(compute, memory) + "
        f"{params.launch_us:g} us launch latency; one stream: launches queue, the host issues one per "
        f"{params.host_issue_us:g} us (PyCUDA, calibrated)",
        f"matrix products: FP32 SIMT at {params.gemm_efficiency['fp32']:.0%} of an SM's peak, "
        f"{params.gemm_step_latency_ns:g} ns waited per k-step (both calibrated on one H200 run); "
        "tensor-core efficiencies assumed",
        f"memory: {params.dram_efficiency:.0%} of the DRAM peak at most, {params.bytes_per_load} B in flight per "
        f"thread and tensor read over {params.dram_latency_ns:g} ns (Little's law); L2 hits on re-reads assumed "
        f"{params.l2_hit:.0%}"
        + ("; families whose time the bytes do not explain: calibrated factors" if params.slowdown else
           "; every kernel priced by its bytes (no measured family factors)"),
        f"yardstick: {yardstick.TORCH_EFFICIENCY:.1%} of the TF32 (convolutions) and FP32 peaks, at least "
        f"{yardstick.TORCH_HOST_US_PER_OPERATION:g} us per graph operation; calibrated on: {yardstick.MEASURED}",
        f"device: {dev.sources}",
    ]
    return "\n".join(lines)


def predict(file: str, overrides: dict, device_name: str, batch: int | None = None) -> str:
    dev = device(device_name)
    plan = _plan(file, overrides, batch)
    res, assumption = resources.plan_resources(plan, dev.arch)
    return report(plan, dev, model.plan_costs(plan, dev, res), assumption)
