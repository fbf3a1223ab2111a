"""The GPUs the time model knows, as data with their sources.

Peaks are the datasheets' dense figures (the datasheets quote tensor-core
rates with 2:4 sparsity; dense is half). Per-SM limits are the CUDA
Programming Guide's compute-capability table ("Technical Specifications per
Compute Capability"), the Hopper Tuning Guide for sm_90 and the Ada Tuning
Guide for sm_89. Figures marked (derived) are arithmetic on cited ones.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Device:
    name: str
    arch: str                 # nvcc -arch for its cubins
    sms: int
    fp32_tflops: float        # CUDA cores (SIMT FMA)
    tf32_tflops: float        # tensor cores, dense
    bf16_tflops: float        # tensor cores, dense
    dram_gbs: float           # HBM / GDDR bandwidth, GB/s (10^9)
    l2_mb: float
    smem_per_sm: int          # bytes usable by blocks on one SM
    smem_per_block: int       # bytes one block may use (above 48 KB: dynamic, opted into)
    max_threads_per_sm: int
    max_blocks_per_sm: int
    regs_per_sm: int = 65536
    max_regs_per_thread: int = 255
    reg_unit: int = 256       # registers are allocated per warp in units of this many
    smem_unit: int = 128      # shared memory is allocated per block in units of this many bytes
    smem_reserved: int = 1024  # the system's shared memory per block (sm_80 and later)
    sources: str = ""

    def peak_tflops(self, precision: str) -> float:
        return {"fp32": self.fp32_tflops, "tf32": self.tf32_tflops, "bf16": self.bf16_tflops}[precision]

    @property
    def max_warps_per_sm(self) -> int:
        return self.max_threads_per_sm // 32


_CC_TABLE = "CUDA C++ Programming Guide, compute capabilities table"

DEVICES: dict[str, Device] = {
    "a100": Device(
        "NVIDIA A100 SXM 80GB", "sm_80", sms=108, fp32_tflops=19.5, tf32_tflops=156.0, bf16_tflops=312.0,
        dram_gbs=2039.0, l2_mb=40, smem_per_sm=164 * 1024, smem_per_block=163 * 1024,
        max_threads_per_sm=2048, max_blocks_per_sm=32,
        sources="A100 datasheet (nvidia.com/en-us/data-center/a100): FP32 19.5 TF, TF32 156 TF, BF16 312 TF, "
                "2,039 GB/s; A100 whitepaper: 108 SMs, 40 MB L2; " + _CC_TABLE + " (8.0)"),
    "h100": Device(
        "NVIDIA H100 SXM 80GB", "sm_90", sms=132, fp32_tflops=67.0, tf32_tflops=494.7, bf16_tflops=989.4,
        dram_gbs=3350.0, l2_mb=50, smem_per_sm=228 * 1024, smem_per_block=227 * 1024,
        max_threads_per_sm=2048, max_blocks_per_sm=32,
        sources="H100 datasheet (nvidia.com/en-us/data-center/h100): FP32 67 TF, TF32 989 TF and BF16 1,979 TF "
                "with sparsity, 3.35 TB/s; 132 SMs (cudnn-frontend PR #650); Hopper Tuning Guide 1.4.1.1"),
    "h200": Device(
        "NVIDIA H200 SXM 141GB", "sm_90", sms=132, fp32_tflops=67.0, tf32_tflops=494.7, bf16_tflops=989.4,
        dram_gbs=4800.0, l2_mb=50, smem_per_sm=228 * 1024, smem_per_block=227 * 1024,
        max_threads_per_sm=2048, max_blocks_per_sm=32,
        sources="H200 datasheet (nvidia.com/en-us/data-center/h200): the H100's GH100 and peaks, "
                "141 GB HBM3e at 4.8 TB/s"),
    "l4": Device(
        "NVIDIA L4", "sm_89", sms=58, fp32_tflops=30.3, tf32_tflops=60.0, bf16_tflops=121.0,
        dram_gbs=300.0, l2_mb=48, smem_per_sm=100 * 1024, smem_per_block=99 * 1024,
        max_threads_per_sm=1536, max_blocks_per_sm=24,
        sources="L4 datasheet (nvidia.com/en-us/data-center/l4): FP32 30.3 TF, TF32 120 TF and BF16 242 TF "
                "with sparsity, 300 GB/s, 24 GB GDDR6; 7,424 CUDA cores = 58 SMs of 128 (derived); "
                "Ada Tuning Guide: 48 MB L2; " + _CC_TABLE + " (8.9: 1,536 threads, 24 blocks, 100 KB per SM)"),
}


def device(name: str) -> Device:
    try:
        return DEVICES[name.lower()]
    except KeyError:
        raise ValueError(f"no device {name!r}; the time model knows {', '.join(DEVICES)}") from None
