"""The memory plan: one arena per physical device, every tensor of the step at
an offset, tensors whose lifetimes overlap never sharing bytes, and the
reuse the plan claims."""
from __future__ import annotations

from pathlib import Path

import pytest

from netdsl.compiler import compile_graph
from netdsl.passes import plan_step
from netdsl.passes.plan_memory import ALIGN, Lifetime, assign_offsets, lifetimes
from netdsl.step import TensorRef

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def graph(name: str):
    return compile_graph(EXAMPLES / name, training=True)


@pytest.fixture(scope="module")
def alexnet():
    """The paper's layout on two GPUs at the train block's batch, 128."""
    return plan_step(graph("alexnet.net"), 128, "cuda")


def check_arenas(plan) -> None:
    lives = lifetimes(plan)
    for device, arena in plan.arenas.items():
        mine = sorted(arena.offsets.items(), key=lambda kv: kv[1])
        assert {ref for ref, _ in mine} == {r for r, i in plan.tensors.items() if plan.placement[i.device] == device}
        for i, (a, offset_a) in enumerate(mine):
            assert offset_a % ALIGN == 0 and offset_a + plan.tensors[a].nbytes <= arena.nbytes
            for b, offset_b in mine[i + 1:]:
                if lives[a].overlaps(lives[b]):
                    apart = offset_a + plan.tensors[a].nbytes <= offset_b or \
                        offset_b + plan.tensors[b].nbytes <= offset_a
                    assert apart, f"{a} and {b} are live together and share bytes"
        assert arena.live_peak_bytes <= arena.nbytes <= arena.sum_bytes


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.net")), ids=lambda p: p.stem)
@pytest.mark.parametrize("target", ["c", "cuda"])
def test_live_tensors_never_share_bytes(example, target):
    check_arenas(plan_step(compile_graph(example, training=True), 3, target))


def test_alexnet_arenas_reuse_memory(alexnet):
    assert set(alexnet.arenas) == {"gpu0", "gpu1"} and alexnet.batch == 128
    check_arenas(alexnet)
    for device, arena in alexnet.arenas.items():
        assert arena.nbytes < 0.95 * arena.sum_bytes, f"{device}: little reuse"
        # best fit lands close to the bound no placement can beat
        assert arena.nbytes < 1.1 * arena.live_peak_bytes
    # under tf32 (cuda's default) convolutions are implicit GEMMs: no column buffer at all
    assert not [r for r in alexnet.tensors if r.index == "cols"]


def test_fp32_cuda_keeps_im2col_columns():
    """The SIMT path still lowers convolutions through columns; conv1's
    (363 x 128*55*55 floats) are the largest single tensor of the step."""
    plan = plan_step(graph("alexnet.net"), 128, "cuda", precision="fp32")
    check_arenas(plan)
    cols = plan.tensors[TensorRef("conv1.conv@gpu0", "scratch", "cols")]
    assert cols.nbytes == 363 * 128 * 55 * 55 * 4
    assert cols.nbytes == max(t.nbytes for t in plan.tensors.values())


def _first_steps(plan) -> dict[str, int]:
    at = {}
    for i, step in enumerate(plan.steps):
        at.setdefault(step.node, i)
    return at


def test_an_unfused_convolution_output_dies_at_its_relu():
    """fp32: the ReLU is a kernel of its own, reading the convolution's output."""
    plan = plan_step(graph("alexnet.net"), 128, "cuda", precision="fp32")
    lives, at = lifetimes(plan), _first_steps(plan)
    ref = TensorRef("conv1.conv@gpu0", "value")
    written = min(i for i, s in enumerate(plan.steps) if ref in s.writes)
    # a convolution's backward reads its input, not its output: the output dies at the ReLU
    assert (lives[ref].first, lives[ref].last) == (written, at["conv1.act@gpu0"])
    # the ReLU's backward reads its own output, so that output lives until then
    assert lives[TensorRef("conv1.act@gpu0", "value")].last == at["conv1.act@gpu0:backward"]


def test_lifetimes_follow_what_backward_reads(alexnet):
    lives, at = lifetimes(alexnet), _first_steps(alexnet)
    # tf32: the product's epilogue applies the ReLU, so the pair has one tensor, the ReLU's
    # output under the convolution's name, read last by the ReLU's backward
    ref = TensorRef("conv1.conv@gpu0", "value")
    assert TensorRef("conv1.act@gpu0", "value") not in alexnet.tensors
    assert "conv1.act@gpu0" not in at, "the fused ReLU runs no forward kernel"
    written = min(i for i, s in enumerate(alexnet.steps) if ref in s.writes)
    assert (lives[ref].first, lives[ref].last) == (written, at["conv1.act@gpu0:backward"])
    saved = lives[TensorRef("conv1.maxpool@gpu0", "saved", "argmax")]
    assert (saved.first, saved.last) == (at["conv1.maxpool@gpu0"], at["conv1.maxpool@gpu0:backward"])
    # the image is loaded before the step and read last by conv1's weight gradient
    image = lives[TensorRef("image", "value")]
    assert image.first == -1 and image.last >= at["conv1.conv@gpu0:backward"]
    # persistent: weights, their gradients and momentum never share bytes
    assert lives[TensorRef("fc8", "param_grad", "weight")].first == -1
    assert not any(r.role == "grad" and r.node in ("image", "label") for r in alexnet.tensors)


def test_sizes_follow_the_batch():
    g = graph("lenet.net")
    small, large = plan_step(g, 3, "cuda"), plan_step(g, 96, "cuda")
    ref = TensorRef("c1.conv", "value")
    assert large.tensors[ref].nbytes == 96 * 6 * 28 * 28 * 4
    assert small.tensors[ref].nbytes == 3 * 6 * 28 * 28 * 4
    assert small.arenas["gpu0"].nbytes < large.arenas["gpu0"].nbytes
    assert small.arenas["gpu0"].by_role["param"] == large.arenas["gpu0"].by_role["param"]


def test_without_reuse_every_tensor_has_its_own_bytes():
    plan = plan_step(graph("cifar.net"), 2, "c", lambda d: "host", reuse=False)
    arena = plan.arenas["host"]
    assert arena.nbytes == arena.sum_bytes
    assert len(set(arena.offsets.values())) == len(arena.offsets)


def test_best_fit_reuses_a_freed_gap():
    ref = lambda name: TensorRef(name, "value")
    a, b, c = Lifetime(ref("a"), 1024, 0, 1), Lifetime(ref("b"), 512, 1, 3), Lifetime(ref("c"), 768, 2, 3)
    assert assign_offsets([a, b, c]) == 1536  # a is dead by the time c lives: c takes a's bytes
    assert (a.offset, b.offset, c.offset) == (0, 1024, 0)
