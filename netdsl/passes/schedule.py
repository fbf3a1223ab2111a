"""Schedule: the streams, events and waits of the step, derived from what
each step reads and writes where (after plan_memory), and nothing else.

Each logical device has a stream; a Call runs on its device's stream, a Copy
on the sender's (the stream that wrote its source, so it needs no wait for
it). Two steps on different streams conflict when they touch overlapping
bytes of one arena and at least one writes: read after write, write after
read, and write after write, the last two arising where the memory plan
reuses bytes. A step waits for the latest conflicting step of each other
stream (earlier ones are ordered behind it on their own stream), unless its
stream already waited for that step or a later one of the same stream.
Every waited-for step records an event after it.

Every stream is ordered after every other at the end of each phase (the cuda
backend joins them on the device: each waits for the others' last event; a
host backend runs in order), so conflicts are looked for within a phase.
Result: Plan.sync, by step index into Plan.steps.
"""
from __future__ import annotations

from dataclasses import replace

from ..step import Copy, Plan, Step, Sync


def stream_of(step: Step) -> str:
    return step.src_device if isinstance(step, Copy) else step.device


def schedule(plan: Plan) -> Plan:
    steps, sync, recorded = plan.steps, {}, set()
    for phase in ("forward", "backward", "update"):
        accesses: dict[str, list[tuple[int, int, str, int, bool]]] = {}  # arena -> (start, end, stream, i, write)
        waited: dict[str, dict[str, int]] = {}  # stream -> other stream -> latest step waited for
        for i in plan.phase_range(phase):
            step, stream = steps[i], stream_of(steps[i])
            latest: dict[str, int] = {}
            touched = [(ref, False) for ref in step.reads] + [(ref, True) for ref in step.writes]
            for ref, write in touched:
                arena, start = _where(plan, ref)
                end = start + plan.tensors[ref].nbytes
                for a_start, a_end, a_stream, j, a_write in accesses.get(arena, ()):
                    if a_stream != stream and (write or a_write) and a_start < end and start < a_end:
                        latest[a_stream] = max(latest.get(a_stream, -1), j)
            mine = waited.setdefault(stream, {})
            waits = tuple(sorted(j for other, j in latest.items() if mine.get(other, -1) < j))
            for j in waits:
                mine[stream_of(steps[j])] = j
                recorded.add(j)
            sync[i] = Sync(waits)
            for ref, write in touched:
                arena, start = _where(plan, ref)
                accesses.setdefault(arena, []).append((start, start + plan.tensors[ref].nbytes, stream, i, write))
    return replace(plan, sync={i: replace(s, record=i in recorded) for i, s in sync.items()})


def _where(plan: Plan, ref) -> tuple[str, int]:
    arena = plan.arena_of(ref)
    return arena.device, arena.offsets[ref]
