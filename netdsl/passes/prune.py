"""Prune: drop the backward steps whose results nobody needs.

Walking the backward phase from its end, a step is kept when it writes a
tensor a kept later step reads, or one the caller wants (every parameter's
gradient); what it reads then becomes wanted. Gradients of network inputs,
and the kernels that only feed them, go (conv1 never computes the image's
gradient). Forward and update phases are kept whole.
"""
from __future__ import annotations

from dataclasses import replace

from ..step import Plan


def prune(plan: Plan) -> Plan:
    live, kept = set(plan.param_grads.values()), []
    for step in reversed(plan.backward):
        if step.writes & live:
            kept.append(step)
            live |= step.reads
    backward = kept[::-1]
    used = {t for s in plan.forward + backward + plan.update for t in s.reads | s.writes}
    return replace(plan, backward=backward,
                   tensors={ref: info for ref, info in plan.tensors.items() if ref in used},
                   grad_checks=[c for c in plan.grad_checks if c[1] in used])
