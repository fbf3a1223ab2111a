"""Launch lists per device: every node issued exactly once, copies on the
sending device, and a wait on another stream's event before every entry that
needs that stream's result, so the streams can always run to the end."""
from __future__ import annotations

from pathlib import Path

import pytest

from netdsl.compiler import compile_graph
from netdsl.passes.schedule import issuing_device

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module", params=sorted(EXAMPLES.glob("*.net")), ids=lambda p: p.stem)
def planned(request):
    return compile_graph(request.param, plan=True, batch=2)


def issued(schedule):
    return [(device, e) for device, entries in schedule.items() for e in entries if e["op"] in ("launch", "copy")]


def test_every_node_is_issued_exactly_once_in_step_order(planned):
    schedule, steps = planned.graph["schedule"], planned.graph["memory"]["steps"]
    names = [e["node"] for _, e in issued(schedule)]
    assert sorted(names) == sorted(steps) and len(set(names)) == len(names)
    assert set(steps) == {n for n, d in planned.nodes(data=True) if d["role"] != "input"}
    for device, entries in schedule.items():
        order = [e["step"] for e in entries if "step" in e]
        assert order == sorted(order), f"{device} issues out of step order"
        for e in entries:
            if "step" in e:
                assert steps[e["step"]] == e["node"] and issuing_device(planned, e["node"]) == device
    phases = [e["phase"] for _, e in sorted(issued(schedule), key=lambda item: item[1]["step"])]
    assert phases.index("backward") > max(i for i, p in enumerate(phases) if p == "forward")
    assert set(phases) == {"forward", "backward", "update"}


def test_every_cross_stream_input_is_waited_for(planned):
    schedule = planned.graph["schedule"]
    for device, entries in schedule.items():
        waited = set()
        for e in entries:
            if e["op"] == "wait":
                waited.add(e["event"])
            elif e["op"] in ("launch", "copy"):
                for u in planned.predecessors(e["node"]):
                    if planned.nodes[u]["role"] != "input" and issuing_device(planned, u) != device:
                        assert u in waited, f"{e['node']} on {device} reads {u} without waiting"


def test_streams_run_to_the_end(planned):
    """Simulate the streams: an entry may start once the events it waits on are recorded."""
    schedule = planned.graph["schedule"]
    recorded_by = {e["record"]: (d, e["step"]) for d, e in issued(schedule) if "record" in e}
    position = {device: 0 for device in schedule}
    recorded: set[str] = set()
    progress = True
    while progress:
        progress = False
        for device, entries in schedule.items():
            while position[device] < len(entries):
                e = entries[position[device]]
                if e["op"] == "wait":
                    assert recorded_by[e["event"]][0] == e["from"] != device
                    if e["event"] not in recorded:
                        break
                elif "record" in e:
                    recorded.add(e["record"])
                position[device] += 1
                progress = True
    assert all(position[d] == len(entries) for d, entries in schedule.items()), "the streams deadlock"


def test_alexnet_copies_and_waits():
    g = compile_graph(EXAMPLES / "alexnet.net", plan=True)
    schedule = g.graph["schedule"]
    assert [e["node"] for e in schedule["gpu0"] if e["op"] == "load"] == ["image", "label"]
    assert [e["node"] for e in schedule["gpu1"] if e["op"] == "load"] == ["image"]
    copies = {e["node"]: (device, e) for device, e in issued(schedule) if e["op"] == "copy"}
    assert len(copies) == 14, "seven transfers forward, seven back"
    device, copy = copies["conv2.maxpool@gpu0->gpu1"]
    assert (device, copy["to"], copy["bytes"], copy["phase"]) == ("gpu0", "gpu1", 128 * 128 * 13 * 13 * 4, "forward")
    # the gradient goes back on the stream of the device the forward copy landed on
    device, copy = copies["conv2.maxpool@gpu0->gpu1:backward"]
    assert (device, copy["to"], copy["phase"]) == ("gpu1", "gpu0", "backward")
    gpu1 = schedule["gpu1"]
    wait = next(i for i, e in enumerate(gpu1) if e.get("event") == "conv2.maxpool@gpu0->gpu1")
    first_reader = next(i for i, e in enumerate(gpu1) if e.get("node") == "conv3.cat@gpu1")
    assert wait < first_reader and gpu1[wait]["from"] == "gpu0"
    relu = next(e for e in schedule["gpu0"] if e.get("node") == "conv1.act@gpu0")
    assert relu["fused_into"] == "conv1.conv@gpu0"
