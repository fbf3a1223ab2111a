"""The memory plan: arenas whose simultaneously live buffers never share a
byte, lifetimes that follow what each backward kernel reads, and reuse."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from netdsl.compiler import compile_graph
from netdsl.passes.plan_memory import ALIGN, Lifetime, assign_offsets

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MIB = 2**20


@pytest.fixture(scope="module")
def alexnet():
    return compile_graph(EXAMPLES / "alexnet.net", plan=True)  # the train block's batch, 128


def by_name(plan: dict) -> dict:
    return {b["name"]: b for b in plan["buffers"]}


def buffers(g, device):
    return by_name(g.graph["memory"]["devices"][device])


def check_arena(plan: dict) -> None:
    """Brute force: every pair of buffers whose lifetimes meet occupies disjoint bytes."""
    bufs = plan["buffers"]
    assert bufs, "an empty arena"
    for b in bufs:
        assert b["offset"] % ALIGN == 0 and b["bytes"] % ALIGN == 0 and b["bytes"] > 0
        assert 0 <= b["first"] <= b["last"]
        assert b["offset"] + b["bytes"] <= plan["arena_bytes"]
    for a, b in itertools.combinations(bufs, 2):
        if a["first"] <= b["last"] and b["first"] <= a["last"]:
            assert a["offset"] + a["bytes"] <= b["offset"] or b["offset"] + b["bytes"] <= a["offset"], (a, b)
    assert plan["live_peak_bytes"] <= plan["arena_bytes"] <= plan["sum_bytes"]
    assert plan["sum_bytes"] == sum(b["bytes"] for b in bufs)


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.net")), ids=lambda p: p.stem)
@pytest.mark.parametrize("batch", [1, 5])
def test_live_buffers_never_overlap(example, batch):
    g = compile_graph(example, plan=True, batch=batch)
    memory = g.graph["memory"]
    assert memory["batch"] == batch
    for plan in memory["devices"].values():
        check_arena(plan)


def test_alexnet_arenas_reuse_memory(alexnet):
    memory = alexnet.graph["memory"]
    assert set(memory["devices"]) == {"gpu0", "gpu1"} and memory["batch"] == 128
    for device, plan in memory["devices"].items():
        check_arena(plan)
        assert plan["arena_bytes"] < 0.3 * plan["sum_bytes"], f"{device}: little reuse"
        # best fit lands close to the bound no placement can beat
        assert plan["arena_bytes"] < 1.1 * plan["live_peak_bytes"]
    # conv1's im2col columns (363 x 128*55*55 floats) are the largest single buffer
    cols = buffers(alexnet, "gpu0")["scratch:conv1.conv@gpu0/cols"]
    assert cols["bytes"] == 363 * 128 * 55 * 55 * 4


def test_lifetimes_follow_what_backward_reads(alexnet):
    steps = alexnet.graph["memory"]["steps"]
    at = {name: i for i, name in enumerate(steps)}
    gpu0 = buffers(alexnet, "gpu0")
    # a convolution's backward reads its input, not its output: the output dies at the ReLU
    conv_out = gpu0["value:conv1.conv@gpu0"]
    assert (conv_out["first"], conv_out["last"]) == (at["conv1.conv@gpu0"], at["conv1.act@gpu0"])
    # the ReLU's backward reads its own output, so that output lives until then
    assert gpu0["value:conv1.act@gpu0"]["last"] == at["conv1.act@gpu0:backward"]
    assert gpu0["value:image"]["last"] == at["conv1.conv@gpu0:backward"]
    saved = gpu0["saved:conv1.maxpool@gpu0/argmax"]
    assert (saved["first"], saved["last"]) == (at["conv1.maxpool@gpu0"], at["conv1.maxpool@gpu0:backward"])
    grad = gpu0["pgrad:fc8.weight"]
    assert (grad["first"], grad["last"]) == (at["fc8:backward"], at["fc8:update"])
    # scratch lives within its step; forward and backward get separate buffers
    assert gpu0["scratch:conv1.conv@gpu0:backward/cols"]["first"] == at["conv1.conv@gpu0:backward"]
    assert gpu0["scratch:conv1.conv@gpu0/cols"]["last"] == at["conv1.conv@gpu0"]


def test_copy_destinations_live_from_the_start_of_the_step(alexnet):
    """Another device's stream writes them, so they share no bytes with earlier buffers."""
    gpu1 = buffers(alexnet, "gpu1")
    assert gpu1["value:conv2.maxpool@gpu0->gpu1"]["first"] == 0
    gpu0 = buffers(alexnet, "gpu0")
    assert gpu0["grad:conv2.maxpool@gpu0<-conv2.maxpool@gpu0->gpu1:backward"]["first"] == 0
    assert "grad:image" not in gpu0 and not any(n.startswith("grad:label") for n in gpu0)


def test_gradient_sums_read_every_part(alexnet):
    gpu0 = buffers(alexnet, "gpu0")
    at = {name: i for i, name in enumerate(alexnet.graph["memory"]["steps"])}
    parts = [n for n in gpu0 if n.startswith("grad:fc6.dropout@gpu0<-")]
    assert len(parts) == 2
    for name in parts:
        assert gpu0[name]["last"] == at["fc6.dropout@gpu0:gradsum"]
    # the part sent back from gpu1 is written by gpu1's stream: live from the start
    assert sorted(gpu0[name]["first"] == 0 for name in parts) == [False, True]


def test_sizes_follow_the_batch():
    small = compile_graph(EXAMPLES / "lenet.net", plan=True, batch=3).graph["memory"]["devices"]["gpu0"]
    large = compile_graph(EXAMPLES / "lenet.net", plan=True, batch=96).graph["memory"]["devices"]["gpu0"]
    assert by_name(large)["value:c1.conv"]["bytes"] == 96 * 6 * 28 * 28 * 4
    assert by_name(small)["value:c1.conv"]["bytes"] == -(-3 * 6 * 28 * 28 * 4 // ALIGN) * ALIGN
    assert small["arena_bytes"] < large["arena_bytes"]
    assert small["persistent_bytes"] == large["persistent_bytes"]


def test_best_fit_reuses_a_freed_gap():
    a = Lifetime("a", "gpu0", 1024, 0, 1)
    b = Lifetime("b", "gpu0", 512, 1, 3)
    c = Lifetime("c", "gpu0", 768, 2, 3)  # a is dead by then: c fits into a's bytes
    assert assign_offsets([a, b, c]) == 1536
    assert (a.offset, b.offset, c.offset) == (0, 1024, 0)
