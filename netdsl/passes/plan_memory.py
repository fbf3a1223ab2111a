"""Plan memory: one arena per physical device for every tensor of the step,
each at a byte offset, so a backend allocates once per device and binds
offsets; what `netdsl compile` and `netdsl info` report is that allocation.

Lifetimes count steps in program order (Plan.steps: forward, backward,
update). Persistent tensors (parameters, their gradients and momentum,
state, the loss seed) live for the whole run and sit at the bottom of the
arena. Any other tensor lives from the first step that touches it to the
last; a network input is written by the host before the step (live from
step 0) and what the host reads after the forward pass (the scores and the
loss) lives at least to its end. Tensors whose lifetimes do not overlap may
share bytes, scratch included: a convolution's columns take the bytes of
activations that died before it.

Program order is one order the streams may not follow: where two devices
share an arena (two logical GPUs on one physical one), bytes reused across
streams are ordered by the schedule pass, which waits on every earlier
access to overlapping bytes from another stream.

Offsets: greedy by size (largest first), each tensor placed in the smallest
gap between already placed tensors whose lifetimes overlap its own (best
fit), else above them; sizes rounded up to 256 bytes (cudaMalloc's
alignment, and whole cache lines on the CPU). `reuse=False` gives every
tensor its own bytes (a backend that keeps every layer's output readable
after the step, for tests).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..step import Arena, Plan, TensorRef

ALIGN = 256


def aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGN) * ALIGN


@dataclass
class Lifetime:
    ref: TensorRef
    nbytes: int  # aligned
    first: int
    last: int
    offset: int = -1

    def overlaps(self, other: "Lifetime") -> bool:
        return self.first <= other.last and other.first <= self.last


def lifetimes(plan: Plan, reuse: bool = True) -> dict[TensorRef, Lifetime]:
    steps = plan.steps
    end, forward_end = len(steps), len(plan.forward) - 1
    found: dict[TensorRef, Lifetime] = {}
    for i, step in enumerate(steps):
        for ref in step.reads | step.writes:
            life = found.setdefault(ref, Lifetime(ref, aligned(plan.tensors[ref].nbytes), i, i))
            life.last = i
    for ref, life in found.items():
        if ref.persistent or not reuse:
            life.first, life.last = -1, end
        if ref in plan.inputs.values():
            life.first = -1
        if ref in plan.host_reads:
            life.last = max(life.last, forward_end)
    return found


def assign_offsets(buffers: list[Lifetime], base: int = 0) -> int:
    """Set each buffer's offset from `base` (greedy by size, best fit); returns the top."""
    placed: list[Lifetime] = []
    for buf in sorted(buffers, key=lambda b: (-b.nbytes, b.first, str(b.ref))):
        busy = sorted((p for p in placed if p.overlaps(buf)), key=lambda p: p.offset)
        best, best_gap, top = None, None, base
        for other in busy:
            gap = other.offset - top
            if gap >= buf.nbytes and (best_gap is None or gap < best_gap):
                best, best_gap = top, gap
            top = max(top, other.offset + other.nbytes)
        buf.offset = top if best is None else best
        placed.append(buf)
    return max((b.offset + b.nbytes for b in buffers), default=base)


def live_peak(buffers: list[Lifetime], steps: int) -> int:
    """The most bytes live at one step: no arena can be smaller."""
    return max((sum(b.nbytes for b in buffers if b.first <= s <= b.last) for s in range(-1, steps)), default=0)


def plan_memory(plan: Plan, reuse: bool = True) -> Plan:
    lives = lifetimes(plan, reuse)
    arenas = {}
    for device in sorted(set(plan.placement.values())):
        mine = [life for ref, life in lives.items() if plan.placement[plan.tensors[ref].device] == device]
        persistent = [life for life in mine if life.ref.persistent]
        transient = [life for life in mine if not life.ref.persistent]
        top = assign_offsets(transient, assign_offsets(persistent))
        by_role: dict[str, int] = {}
        for life in mine:
            by_role[life.ref.role] = by_role.get(life.ref.role, 0) + life.nbytes
        arenas[device] = Arena(device, top, {life.ref: life.offset for life in mine}, by_role,
                               sum(life.nbytes for life in mine), live_peak(mine, len(plan.steps)))
    return replace(plan, arenas=arenas)
