"""The time model's arithmetic (occupancy, waves, FLOPs) on hand-computed cases,
its peaks on every launch of real plans, and `netdsl time --predict` on lenet,
all without a GPU; ptxas is replaced by fixed figures so nothing compiles."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from netdsl import passes
from netdsl.cli import compile_graph, main
from netdsl.codegen.nvcc import Resources
from netdsl.perf import model, resources
from netdsl.perf.devices import DEVICES, device
from netdsl.step import Call

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
H100 = device("h100")


def plan_of(name: str, batch: int):
    g = compile_graph(str(EXAMPLES / name), overrides={}, training=True)
    return passes.plan_step(g, batch, "cuda", lambda logical: "gpu0")


def fixed_resources(plan, arch):
    return {s.kernel.name: resources.assumed_resources(s.kernel) for s in plan.steps if isinstance(s, Call)}, None


@pytest.fixture(autouse=True)
def no_nvcc(monkeypatch):
    monkeypatch.setattr(resources, "plan_resources", fixed_resources)


def test_occupancy_by_registers_warps_shared_and_the_block_cap():
    # 256 threads x 128 registers: 8 warps of 4,096 registers, 32,768 a block -> 2 of 65,536.
    assert model.blocks_per_sm(H100, 256, 128, 8192) == 2
    # 121 registers round up to 3,968 per warp (units of 256): still 2 blocks.
    assert model.blocks_per_sm(H100, 256, 121, 8192) == 2
    # 256 threads x 32 registers: warps limit, 64 / 8 = 8 blocks.
    assert model.blocks_per_sm(H100, 256, 32, 0) == 8
    # 32 threads x 16 registers: the block cap of 32 per SM.
    assert model.blocks_per_sm(H100, 32, 16, 0) == 32
    # 100 KB of shared memory (+1 KB reserved per block) in 228 KB: 2 blocks.
    assert model.blocks_per_sm(H100, 128, 32, 100 * 1024) == 2
    # The L4 (sm_89) has 48 warps per SM: 256-thread blocks of 32 registers -> 6.
    assert model.blocks_per_sm(device("l4"), 256, 32, 0) == 6
    # More than a block may have: it cannot run at all.
    assert model.blocks_per_sm(H100, 256, 32, 228 * 1024) == 0


def test_waves_are_full_waves_then_the_rest():
    assert model.waves(264, 132, 2) == [264]
    assert model.waves(265, 132, 2) == [264, 1]
    assert model.waves(12, 132, 2) == [12]
    assert model.waves(3025, 132, 2) == [264] * 11 + [121]


def test_a_k_step_hides_its_wait_behind_other_blocks_up_to_the_sm_rate():
    """128x128 tile, 8 k deep: 262,144 FLOPs a step. At 1e12 FLOP/s per SM that is 0.262 us;
    a lone block waits 1 us more; two blocks overlap their waits; eight hit the SM's rate.
    A 2-warp block issues on two of four schedulers: half the rate."""
    step = model.block_step(128, 128, 256, 1e12, 1000.0)
    assert step.flops == 2 * 128 * 128 * 8
    assert step.seconds(1) == pytest.approx(1e-6 + 0.262144e-6)
    assert step.seconds(2) == pytest.approx((1e-6 + 0.262144e-6) / 2)
    assert step.seconds(8) == pytest.approx(0.262144e-6)
    assert step.latency_limited(2) and not step.latency_limited(8)
    small = model.block_step(64, 64, 64, 1e12, 0.0)
    assert small.seconds(1) == pytest.approx(2 * 64 * 64 * 8 / 0.5e12)


def test_gemm_flops_are_2mnk_times_batch():
    plan = plan_of("lenet.net", 64)
    gemms = [s for s in plan.steps if isinstance(s, Call) and s.kernel.shape == "gemm"]
    assert gemms
    costs = {c.index: c for c in model.plan_costs(plan, H100, fixed_resources(plan, "sm_90")[0])}
    for i, s in enumerate(plan.steps):
        if isinstance(s, Call) and s.kernel.shape == "gemm":
            v = {a.name: a.value for a in s.kernel.args}
            assert costs[i].flops == 2 * v["m"] * v["n"] * v["k"] * v["batch"]


@pytest.mark.parametrize("name,batch", [("lenet.net", 64), ("cifar.net", 128)])
@pytest.mark.parametrize("dev", sorted(DEVICES))
def test_no_launch_beats_the_peaks(name, batch, dev):
    d = device(dev)
    plan = plan_of(name, batch)
    for c in model.plan_costs(plan, d, fixed_resources(plan, d.arch)[0]):
        seconds = c.us * 1e-6
        assert c.flops / seconds <= d.peak_tflops(c.precision) * 1e12, c.kernel
        assert c.dram_bytes / seconds <= d.dram_gbs * 1e9, c.kernel
        assert c.us >= model.PARAMS.launch_us
        assert 1 <= c.blocks_per_sm and c.waves == len(model.waves(math.prod(c.grid), d.sms, c.blocks_per_sm))


def test_every_precision_stays_under_its_peak(monkeypatch):
    """A tensor-core variant (a `precision` on its GemmVariant) is held to its own peak."""
    plan = plan_of("lenet.net", 64)
    monkeypatch.setattr(model, "precision_of", lambda plan, kernel: "bf16")
    for c in model.plan_costs(plan, H100, fixed_resources(plan, "sm_90")[0]):
        if c.flops:
            assert c.precision == "bf16"
            assert c.flops / (c.us * 1e-6) <= H100.bf16_tflops * 1e12


def test_time_predict_prints_every_launch_and_the_step(capsys):
    assert main(["time", str(EXAMPLES / "lenet.net"), "--predict", "h200", "--batch", "64"]) == 0
    out = capsys.readouterr().out
    head = next(line for line in out.splitlines() if line.lstrip().startswith("#"))
    for column in ("kernel", "grid", "thr", "regs", "smem B", "blk/SM", "waves", "GFLOP", "MB read", "MB wr",
                   "bound", "us", "uncertain"):
        assert column in head
    plan = plan_of("lenet.net", 64)
    calls = [s for s in plan.steps if isinstance(s, Call)]
    assert f"{len(calls)} launches" in out
    assert "one stream in program order" in out and "images/s" in out and "of the TF32 peak" in out  # precision auto: tf32 on cuda
    assert "yardstick, PyTorch + cuDNN" in out
    assert "nothing was run" in out
    assert "netdsl_tf32gemm" in out  # precision auto: TF32 on cuda


def test_resources_are_cached_by_source(monkeypatch, tmp_path):
    """A second request for the same source and arch reads the cache instead of running nvcc."""
    calls = []
    monkeypatch.setattr(resources.nvcc, "compile_cubins",
                        lambda cu, out, archs, extra: calls.append(archs) or {archs[0]: (
                            "ptxas info    : Compiling entry function 'k' for 'sm_90'\n"
                            "ptxas info    : Function properties for k\n"
                            "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
                            "ptxas info    : Used 40 registers, 512 bytes smem, 380 bytes cmem[0]\n")})
    first = resources.ptxas_resources("__global__ void k() {}", "sm_90")
    second = resources.ptxas_resources("__global__ void k() {}", "sm_90")
    assert first == second == {"k": Resources(registers=40, shared=512)}
    assert len(calls) == 1


def test_without_nvcc_the_report_states_its_assumption(monkeypatch, capsys):
    monkeypatch.undo()  # the real plan_resources, with nvcc missing
    monkeypatch.setattr(resources.nvcc, "available", lambda: False)
    plan = plan_of("lenet.net", 64)
    found, assumption = resources.plan_resources(plan, "sm_90")
    assert assumption == resources.ASSUMPTION
    gemm = next(s.kernel for s in plan.steps if isinstance(s, Call) and s.kernel.shape == "gemm")
    assert found[gemm.name].registers == resources.ASSUMED_GEMM_REGISTERS
    assert main(["time", str(EXAMPLES / "lenet.net"), "--predict", "l4", "--batch", "64"]) == 0
    assert "nvcc not on PATH: registers assumed" in capsys.readouterr().out


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_an_implicit_conv_product_reads_the_images_not_columns(precision):
    """The products of cifar's convolutions read their images (the first conv's is the
    network's input, 3 x 32 x 32 a sample), and no im2col or col2im launch is left to count
    (its convolutions have stride 1); fp32 keeps both."""
    g = compile_graph(str(EXAMPLES / "cifar.net"), overrides={}, training=True)
    plan = passes.plan_step(g, 16, "cuda", lambda logical: "gpu0", precision=precision)
    calls = [s for s in plan.steps if isinstance(s, Call)]
    implicit = [c for c in calls if "_conv_" in c.kernel.name]
    purposes = [c.kernel.purpose for c in implicit]
    assert sorted(set(purposes)) == ["data_grad", "forward_product", "weight_grad"]
    # conv1's data gradient is pruned: nothing reads the image's gradient
    assert purposes.count("forward_product") == purposes.count("weight_grad") == purposes.count("data_grad") + 1
    explicit = passes.plan_step(g, 16, "cuda", lambda logical: "gpu0", precision="fp32")
    for purpose in ("im2col", "col2im"):
        counts = [sum(1 for s in p.steps if isinstance(s, Call) and s.kernel.purpose == purpose)
                  for p in (plan, explicit)]
        assert counts[0] == 0 < counts[1], (purpose, counts)
    first = implicit[0]
    variant = next(v for m in plan.modules for v in m.gemms if v.name == first.kernel.name)
    channels, height, width = variant.conv[:3]
    values = {a.name: a.value for a in first.kernel.args}
    weights = 4.0 * values["m"] * values["k"]
    dram, l2, _ = model.gemm_bytes(first.kernel, 1.0, variant.conv)  # every re-read from L2
    assert dram == weights + 4.0 * 16 * channels * height * width
    assert dram < weights + 4.0 * values["k"] * values["n"]  # what its columns would have been
