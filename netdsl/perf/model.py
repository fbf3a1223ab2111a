"""What one launch of the planned cuda step costs, in the spirit of Triton's
`matmul_perf_model.estimate_matmul_time` (GPU.md §5) with its gaps filled:
the device's real SM count, resident blocks from registers, shared memory
and threads (the arithmetic of `cuda_occupancy.h`), wave quantisation, and
launch latency.

Per launch, with blocks dealt to SMs in waves of SMs x (blocks per SM):

    time = sum over waves of max(compute, memory) + launch latency
    compute(wave) = blocks on the busiest SM x FLOPs issued per block / (SM peak x efficiency)
    memory(wave)  = DRAM bytes of its blocks / min(DRAM peak x efficiency,
                                                   threads resident x bytes in flight / DRAM latency)

The second term of the memory rate is Little's law: a grid too small to keep
enough loads in flight cannot reach the bandwidth, however few bytes it
moves. A matrix product issues the FLOPs of whole tiles (a 48-row product
still runs 128-row tiles), so its compute uses padded tiles; the FLOPs it
reports are the useful 2mnk x batch.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..codegen.nvcc import Resources
from ..step import Call, Plan
from .devices import Device

# Fractions of a peak a kernel of a kind reaches; see Params and docs/gpu.md.
GEMM_EFFICIENCY = {
    # The SIMT sgemm of gemm_cuda.j2 with an SM full of its blocks: a vectorised 2-D tiled
    # SIMT sgemm reaches 78% of cuBLAS (GPU.md §2.5); with Params.gemm_step_latency_ns,
    # calibrated on the 2026-12-04 H200 run (43 launches, 279.9 ms), where the k-steps'
    # waits, not this rate, set most launches' time.
    "fp32": 0.70,
    # The mma.sync kernel of _gemm_mma.j2 (no wgmma: GPU.md §2.6), pipelined, so no k-step
    # wait: calibrated on the 2026-12-04 tuned H200 run (AlexNet's 43 products: TF32 9.44 ms,
    # BF16 7.30 ms); the CIFAR net's products then come out at 0.83x and 0.87x of measured.
    # The kernel alone reached 0.23 (TF32) and 0.15 (BF16) of the dense peaks on 4096^3
    # (benchmarks/gemm_bench.py): AlexNet's products are smaller and split along k.
    "tf32": 0.155,
    "bf16": 0.10,
}


# Families the model's bytes do not explain, with the factor a measured run showed (its
# time less launch costs, over the model's). None at present: the three the H200 run of
# 2026-12-04 found have been rewritten since and are modelled by their bytes until
# measured. Its col2im (a block per plane adding one kernel offset at a time, 8x its
# bytes) is now a gather, a thread per input element; LRN's backward (5x: it
# read-modify-wrote its window sum in global memory once per channel) and forward keep
# each pixel's sum in a register; max-pool's backward (3.5x: a pass per window offset,
# each a read-modify-write, between barriers) is a gather, a thread per input element.
SLOWDOWN: dict[str, float] = {}


@dataclass(frozen=True)
class Params:
    # Device-side cost of a launch: NVIDIA's "Getting Started with CUDA Graphs" measured
    # 3.8 us per short kernel launched back to back (V100); 3-5 us is the usual figure.
    launch_us: float = 4.0
    # Host time to issue one launch through PyCUDA's unprepared call (argument packing per
    # call, GPU.md §0): calibrated so that the run's smallest launches (17-19 us each, one
    # CUDA event pair per launch) are matched; it is not a datasheet figure.
    host_issue_us: float = 13.0
    # Fraction of the DRAM peak a streaming kernel reaches (STREAM-like copies reach 85-90%
    # on HBM parts); an assumption, checked against the measured elementwise families.
    dram_efficiency: float = 0.85
    # Little's law for memory: the netdsl elementwise and row kernels are grid-stride
    # loops of scalar loads, so a thread has one 4-byte load in flight per tensor it reads;
    # ~600 ns is an HBM round trip under load (an assumption; the elementwise families
    # measured 1.4-2x slower than bandwidth alone predicts, which this accounts for).
    bytes_per_load: int = 4
    dram_latency_ns: float = 600.0
    # What a k-step of the sgemm waits for before its arithmetic: a global load (mostly L2,
    # re-read tiles) and two barriers. Calibrated with the SIMT efficiency on the run.
    gemm_step_latency_ns: float = 1300.0
    # Triton's rule for a tiled product's re-reads: 80% of them hit L2, which is 4x DRAM.
    l2_hit: float = 0.8
    l2_speedup: float = 4.0
    gemm_efficiency: dict = field(default_factory=lambda: dict(GEMM_EFFICIENCY))
    # Kernel families measured far below their bytes' worth on the H200 (uncoalesced
    # gathers, a block per row with one load in flight): multiplies their memory time.
    # Calibrated on that run, per family; 1 elsewhere.
    slowdown: dict = field(default_factory=lambda: dict(SLOWDOWN))


@dataclass(frozen=True)
class LaunchCost:
    index: int            # in Plan.steps
    kernel: str
    grid: tuple[int, int, int]
    threads: int
    registers: int
    shared: int
    blocks_per_sm: int
    waves: int
    flops: float          # useful
    bytes_read: float
    bytes_written: float
    compute_us: float
    memory_us: float
    bound: str            # compute | memory | latency (too few loads in flight) | launch
    us: float             # the launch alone: body + launch latency
    precision: str
    notes: tuple[str, ...] = ()
    launch_latency_us: float = 0.0
    dram_bytes: float = 0.0   # of bytes_read + bytes_written, what comes from or goes to DRAM

    @property
    def body_us(self) -> float:
        return self.us - self.launch_latency_us


# ---- occupancy and waves ------------------------------------------------------------
def _round_up(x: int, unit: int) -> int:
    return -(-x // unit) * unit


def blocks_per_sm(dev: Device, threads: int, registers: int, shared: int) -> int:
    """Resident blocks per SM, limited by warps, registers, shared memory and the block cap
    (cuda_occupancy.h's cudaOccMaxActiveBlocksPerMultiprocessor, without the cache config)."""
    warps = -(-threads // 32)
    by_warps = dev.max_warps_per_sm // warps
    regs_per_warp = _round_up(max(registers, 1) * 32, dev.reg_unit)
    by_regs = dev.regs_per_sm // (regs_per_warp * warps)
    smem = _round_up(shared + dev.smem_reserved, dev.smem_unit)
    by_smem = dev.smem_per_sm // smem
    if registers > dev.max_regs_per_thread or shared > dev.smem_per_block:
        return 0
    return max(0, min(dev.max_blocks_per_sm, by_warps, by_regs, by_smem))


def waves(blocks: int, sms: int, per_sm: int) -> list[int]:
    """Blocks in each wave: full waves of sms x per_sm, then the rest."""
    full, rest = divmod(blocks, sms * per_sm)
    return [sms * per_sm] * full + ([rest] if rest else [])


# ---- a tiled product's k-steps ------------------------------------------------------
GEMM_DEPTH = 8  # gemm_cuda.j2's k-slice: load it, barrier, 64 FMAs per thread, barrier


@dataclass(frozen=True)
class BlockStep:
    """One k-step of one block: its FLOPs, how fast the block's warps issue them, and the
    load latency it waits for first (gemm_cuda.j2 does not prefetch the next slice)."""
    flops: float
    issue_rate: float    # FLOP/s of this block's warps alone
    sm_rate: float       # FLOP/s of a full SM
    latency_s: float

    def seconds(self, on_sm: int) -> float:
        """Time per step per block with `on_sm` blocks taking turns on the SM: their waits
        overlap one another's arithmetic until the SM's issue rate is the limit."""
        alone = self.latency_s + self.flops / self.issue_rate
        return max(alone / on_sm, self.flops / self.sm_rate)

    def latency_limited(self, on_sm: int) -> bool:
        return (self.latency_s + self.flops / self.issue_rate) / on_sm > self.flops / self.sm_rate


def block_step(tile_m: int, tile_n: int, threads: int, sm_rate: float, latency_ns: float) -> BlockStep:
    """A warp issues on one of an SM's four schedulers, so a block of w warps uses at most
    min(w, 4) of them (sm_80 and later have four per SM)."""
    warps = -(-threads // 32)
    return BlockStep(2.0 * tile_m * tile_n * GEMM_DEPTH, sm_rate * min(warps, 4) / 4, sm_rate, latency_ns * 1e-9)


# ---- what a call computes and moves -------------------------------------------------
def gemm_shape(kernel) -> dict:
    return {a.name: a.value for a in kernel.args if a.value is not None}


def gemm_flops(kernel) -> float:
    s = gemm_shape(kernel)
    return 2.0 * s["m"] * s["n"] * s["k"] * s["batch"]


def gemm_bytes(kernel, l2_hit: float = 0.8, conv: tuple = (), trans_b: bool = False) -> tuple[float, float, float]:
    """(DRAM bytes read, L2 bytes read, bytes written) of a tiled product, by Triton's rule:
    each operand once from DRAM, its re-reads by the other tiles 80% from L2. An implicit-GEMM
    convolution (`conv`, GemmVariant.conv) has no column matrix: its B is the images it reads,
    a group's channels and the columns' images per batch step (B transposed in a weight
    gradient: taps along n, columns along k); the windows' overlap within a tile is not counted again."""
    s = gemm_shape(kernel)
    gx, gy, _ = kernel.launch.grid
    batch = s["batch"]
    a = 4.0 * s["m"] * s["k"] * (batch if s.get("stride_a") else 1)
    if conv:
        height, width, kh, kw = conv[1], conv[2], conv[3], conv[4]
        taps, columns = (s["n"], s["k"]) if trans_b else (s["k"], s["n"])
        items = columns / (conv[-2] * conv[-1])
        b = 4.0 * items * (taps // (kh * kw)) * height * width * batch
    else:
        b = 4.0 * s["k"] * s["n"] * (batch if s.get("stride_b") else 1)
    c = 4.0 * s["m"] * s["n"] * batch
    rereads = a * (gx - 1) + b * (gy - 1)
    beta_read = c if s.get("beta") else 0.0
    return a + b + beta_read + (1 - l2_hit) * rereads, l2_hit * rereads, c


def call_bytes(plan: Plan, call: Call) -> tuple[float, float]:
    """(read, written) bytes of a non-product call: each tensor argument once; an update
    reads what it writes (weight, velocity)."""
    read = written = 0.0
    for ref, arg in zip(call.args, call.kernel.args):
        if ref is None or not arg.pointer:
            continue
        n = plan.tensors[ref].nbytes
        if arg.const:
            read += n
        else:
            written += n
            if call.kernel.kind == "update":
                read += n
    return read, written


def family(kernel_name: str) -> str:
    """A kernel's family, as benchmarks/gpu_step.py sums the measured times: the name
    without shape, tile and transpose suffixes."""
    name = re.sub(r"_\d+x\d+(x\d+)*", "", kernel_name)
    name = re.sub(r"_nchw(_\d+)+(_bias)?(_[a-z]+)?$", "", name)  # the NCHW epilogue's layout and activation
    name = re.sub(r"_conv(_\d+)+$", "_conv", name)  # an implicit-GEMM convolution's geometry
    return re.sub(r"_(nn|nt|tn|tt)$", "", name)


PARAMS = Params()


def precision_of(plan: Plan, kernel) -> str:
    for module in plan.modules:
        for variant in module.gemms:
            if variant.name == kernel.name:
                return getattr(variant, "precision", "fp32")
    return "fp32"


def launch_cost(plan: Plan, index: int, call: Call, dev: Device, res: Resources,
                params: Params = PARAMS) -> LaunchCost:
    k = call.kernel
    blocks = math.prod(k.launch.grid)
    threads = k.launch.threads
    per_sm = blocks_per_sm(dev, threads, res.registers, res.shared)
    if per_sm == 0:
        raise ValueError(f"{k.name}: a block of {threads} threads, {res.registers} registers and "
                         f"{res.shared} B shared memory does not fit on a {dev.name} SM")
    notes = []
    precision = "fp32"
    if k.shape == "gemm":
        precision = precision_of(plan, k)
        s = gemm_shape(k)
        flops = gemm_flops(k)
        tile = next((v for m in plan.modules for v in m.gemms if v.name == k.name), None)
        tm, tn = (tile.tile_m, tile.tile_n) if tile else (128, 128)
        eff = params.gemm_efficiency[precision]
        sm_rate = dev.peak_tflops(precision) * 1e12 / dev.sms * eff  # FLOP/s per SM, SM full
        # The tensor-core kernel (_gemm_mma.j2) keeps stages - 1 slices in flight through
        # cp.async, so its loads' latency hides behind the arithmetic: no wait per k-step.
        wait = params.gemm_step_latency_ns if precision == "fp32" else 0.0
        step = block_step(tm, tn, threads, sm_rate, wait)
        steps = -(-s["k"] // GEMM_DEPTH)
        dram_read, l2_read, written = gemm_bytes(k, params.l2_hit, getattr(tile, "conv", ()),
                                                 getattr(tile, "trans_b", False))
        read = dram_read + l2_read
        if flops < 0.5 * blocks * 2.0 * tm * tn * s["k"]:
            notes.append(f"tiles {100 * flops / (blocks * 2.0 * tm * tn * s['k']):.0f}% full")
        if precision != "fp32":
            notes.append(f"{precision} efficiency {eff:.3g} from one H200 run")
        if getattr(tile, "conv", ()):
            notes.append("implicit GEMM: reads the images, no columns")
    else:
        flops = 0.0
        step = None
        read, written = call_bytes(plan, call)
        loads = max(1, sum(1 for r, a in zip(call.args, k.args) if r is not None and a.pointer
                           and (a.const or k.kind == "update")))
        dram_read, l2_read = read, 0.0
        if k.name.endswith("_im2col"):
            src = next(plan.tensors[r].nbytes for r, a in zip(call.args, k.args) if r and a.const)
            notes.append(f"input re-read {written / src:.0f}x, assumed from L2")
    dram_bytes = dram_read + written
    slow = params.slowdown.get(family(k.name), 1.0)
    if slow != 1.0:
        notes.append(f"memory time x{slow:g} (calibrated)")
    bw = dev.dram_gbs * 1e9 * params.dram_efficiency
    l2_bw = bw * params.l2_speedup
    compute_us = memory_us = body = 0.0
    latency_limited = False
    for in_wave in waves(blocks, dev.sms, per_sm):
        share = in_wave / blocks
        on_sm = min(per_sm, math.ceil(in_wave / dev.sms))  # blocks sharing the busiest SM
        if step is not None:  # a product: its loads' latency is in its steps, DRAM only bounds it
            c = steps * on_sm * step.seconds(on_sm) * 1e6
            latency_limited |= step.latency_limited(on_sm)
            rate = bw
        else:
            c = 0.0
            little = in_wave * threads * params.bytes_per_load * loads / (params.dram_latency_ns * 1e-9)
            rate = min(bw, little)
        m = (share * dram_bytes / rate + share * l2_read / l2_bw) * 1e6 * slow
        m = max(m, params.dram_latency_ns * 1e-3)  # a wave waits at least one round trip
        latency_limited |= step is None and rate < bw and m > c
        compute_us += c
        memory_us += m
        body += max(c, m)
    if params.launch_us > body:
        bound = "launch"
    elif latency_limited:
        bound = "latency"
    else:
        bound = "compute" if compute_us >= memory_us else "memory"
    return LaunchCost(index, k.name, k.launch.grid, threads, res.registers, res.shared, per_sm,
                      len(waves(blocks, dev.sms, per_sm)), flops, read, written, compute_us, memory_us,
                      bound, body + params.launch_us, precision, tuple(notes), params.launch_us, dram_bytes)


def plan_costs(plan: Plan, dev: Device, resources: dict[str, Resources], params: Params = PARAMS) -> list[LaunchCost]:
    """One LaunchCost per Call of the plan, in program order (copies: none on one GPU)."""
    return [launch_cost(plan, i, s, dev, resources[s.kernel.name], params)
            for i, s in enumerate(plan.steps) if isinstance(s, Call)]


def stream_us(costs: list[LaunchCost], params: Params = PARAMS) -> float:
    """The step on one stream in program order: launches queue behind each other, so
    the GPU pays each launch's latency only once, but waits on a host that issues
    launches more slowly than the kernels run."""
    if not costs:
        return 0.0
    return params.launch_us + sum(max(c.body_us, params.host_issue_us) for c in costs)
