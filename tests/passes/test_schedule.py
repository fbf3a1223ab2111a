"""The schedule: waits and events derived from reads and writes. Checked by
simulation: for every pair of steps on different streams that touch
overlapping bytes of one arena (one of them writing) within a phase, the
later one is ordered after the earlier one through the waits, and the
streams always run to the end."""
from __future__ import annotations

from pathlib import Path

import pytest

from netdsl.compiler import compile_graph
from netdsl.passes import plan_step
from netdsl.passes.schedule import stream_of
from netdsl.step import Copy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module", params=["alexnet.net", "alexnet-1gpu.net", "lenet.net"])
def planned(request):
    """On two GPUs and with both logical GPUs sharing one (bytes reused across streams)."""
    g = compile_graph(EXAMPLES / request.param, training=True)
    return [plan_step(g, 2, "cuda"), plan_step(g, 2, "cuda", lambda d: "0")]


def _happens_before(plan):
    """For each step, the set of steps it is ordered after (stream order and waits)."""
    before: dict[int, set[int]] = {}
    last_on: dict[str, int] = {}
    for i, step in enumerate(plan.steps):
        stream = stream_of(step)
        known = set()
        if stream in last_on:
            known |= before[last_on[stream]] | {last_on[stream]}
        for j in plan.sync[i].waits:
            assert plan.sync[j].record, f"step {i} waits for {j}, which records no event"
            known |= before[j] | {j}
        before[i], last_on[stream] = known, i
    return before


def test_every_conflict_across_streams_is_ordered(planned):
    for plan in planned:
        before = _happens_before(plan)
        for phase in ("forward", "backward", "update"):
            indices = list(plan.phase_range(phase))
            for n, i in enumerate(indices):
                for j in indices[:n]:
                    a, b = plan.steps[j], plan.steps[i]
                    if stream_of(a) == stream_of(b):
                        continue
                    if _conflict(plan, a, b):
                        assert j in before[i], f"{phase}: step {i} ({b.node}) is not ordered after {j} ({a.node})"


def _conflict(plan, a, b) -> bool:
    def spans(step, writes):
        refs = step.writes if writes else step.reads | step.writes
        return [(plan.arena_of(r).device, plan.arena_of(r).offsets[r], plan.tensors[r].nbytes) for r in refs]
    for da, oa, na in spans(a, False):
        for db, ob, nb in spans(b, False):
            if da == db and oa < ob + nb and ob < oa + na:
                writes_a = any((d, o) == (da, oa) for d, o, _ in spans(a, True))
                writes_b = any((d, o) == (db, ob) for d, o, _ in spans(b, True))
                if writes_a or writes_b:
                    return True
    return False


def test_copies_run_on_the_sender(planned):
    two_gpus = planned[0]
    copies = [s for s in two_gpus.steps if isinstance(s, Copy)]
    if not copies:
        pytest.skip("one device: no copies")
    for copy in copies:
        assert stream_of(copy) == copy.src_device != copy.device


def test_towers_overlap(planned):
    """Waits only where data meets: most of each tower's forward runs without waiting."""
    plan = planned[0]
    waits = sum(len(plan.sync[i].waits) for i in plan.phase_range("forward"))
    assert waits < len(plan.forward) / 4
