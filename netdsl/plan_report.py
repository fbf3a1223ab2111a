"""What `netdsl compile` and `netdsl info` say about a Plan: the memory table
(read from the arenas the backend allocates, so the figure printed is the
figure allocated) and plan.json, the Plan serialised."""
from __future__ import annotations

from .report import human_bytes
from .step import Call, Copy, Plan

# The table's lines: what each role of a tensor is, in a person's words.
GROUPS = (
    ("parameters", ("param",)),
    ("parameter gradients", ("param_grad",)),
    ("optimiser state (momentum)", ("momentum",)),
    ("running state", ("state",)),
    ("activations", ("value", "saved")),
    ("activation gradients", ("grad", "discard", "seed")),
    ("scratch", ("scratch",)),
)
PERSISTENT_GROUPS = 4  # the first four live for the whole run and are never shared


def memory_table(plan: Plan, where: str) -> str:
    lines = [f"memory at batch {plan.batch} ({where}): one arena per device, the bytes the backend allocates"]
    for device, arena in plan.arenas.items():
        persistent = sum(arena.by_role.get(r, 0) for _, roles in GROUPS[:PERSISTENT_GROUPS] for r in roles)
        transient = arena.nbytes - persistent
        lines.append(f"  {device}: {human_bytes(arena.nbytes)} ({arena.nbytes:,} bytes)")
        for i, (label, roles) in enumerate(GROUPS):
            nbytes = sum(arena.by_role.get(r, 0) for r in roles)
            if nbytes:
                lines.append(f"    {label:<28} {human_bytes(nbytes):>12}" + ("" if i < PERSISTENT_GROUPS else " apart"))
        apart = arena.sum_bytes - persistent
        lines.append(f"    {'reused bytes for the above':<28} {human_bytes(transient):>12} "
                     f"({transient / apart:.0%} of {human_bytes(apart)} apart; "
                     f"at most {human_bytes(arena.live_peak_bytes - persistent)} live at once)"
                     if apart else "")
    return "\n".join(line for line in lines if line)


def _step(plan: Plan, i: int, step) -> dict:
    sync = plan.sync.get(i)
    entry = {"index": i, "node": step.node, "device": step.device}
    if isinstance(step, Copy):
        entry |= {"op": "copy", "src": str(step.src), "dst": str(step.dst), "from": step.src_device,
                  "bytes": plan.tensors[step.src].nbytes}
    else:
        assert isinstance(step, Call)
        entry |= {"op": "call", "kernel": step.kernel.name,
                  "args": [str(r) if r else None for r in step.args]}
    if sync and sync.waits:
        entry["waits"] = list(sync.waits)
    if sync and sync.record:
        entry["record"] = True
    return entry


def plan_json(plan: Plan) -> dict:
    steps = plan.steps
    phases = {phase: [_step(plan, i, steps[i]) for i in plan.phase_range(phase)]
              for phase in ("forward", "backward", "update")}
    return {
        "network": plan.network, "target": plan.target, "batch": plan.batch, "precision": plan.precision,
        "placement": plan.placement, "kernels": plan.kernel_count,
        "bodies": [m.node for m in plan.modules],
        **phases,
    }


def memory_json(plan: Plan) -> dict:
    return {
        "batch": plan.batch, "target": plan.target,
        "devices": {device: {"arena_bytes": a.nbytes, "sum_bytes": a.sum_bytes,
                             "live_peak_bytes": a.live_peak_bytes, "by_role": a.by_role,
                             "tensors": [{"tensor": str(ref), "offset": off, "bytes": plan.tensors[ref].nbytes}
                                         for ref, off in sorted(a.offsets.items(), key=lambda kv: kv[1])]}
                    for device, a in plan.arenas.items()},
    }
