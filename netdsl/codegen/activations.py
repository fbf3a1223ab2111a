"""An activation layer as a matrix product's epilogue can apply it.

Elementwise activations are written once, in their templates: `templates/<kind>.j2`
extends `_activation.j2` and fills a `forward` block with a C expression of x_i
(and a `backward` one of dy_i and y_i or x_i). The epilogue applies that very
expression to the accumulated value, so the fused layer computes what the
activation's own kernel would. Only an activation whose backward reads its
output, never its input, can be fused: the pair keeps one tensor, the output.
"""
from __future__ import annotations

import hashlib
import re
from types import SimpleNamespace

import jinja2

from ..layers import REGISTRY
from .plan import Activation
from .render import complete_args, environment

_READS_INPUT = re.compile(r"\bx_i\b")


def epilogue_activation(kind: str, args: dict) -> Activation | None:
    """`kind` with `args` as an epilogue applies it; None where its template writes no forward
    expression or its backward reads the input."""
    try:
        template = environment().get_template(f"{kind}.j2")
    except jinja2.TemplateNotFound:
        return None
    if not {"forward", "backward"} <= set(template.blocks):
        return None
    full = complete_args(kind, args)
    context = template.new_context({"a": SimpleNamespace(**full)})
    try:  # a block that needs more of its template than the arguments (a macro of its own) is not offered
        backward = "".join(template.blocks["backward"](context))
        if _READS_INPUT.search(backward):
            return None
        forward = "".join(template.blocks["forward"](context)).strip()
    except jinja2.UndefinedError:
        return None
    tag = kind
    if full != {spec.name: spec.default for spec in REGISTRY[kind].args}:  # other arguments, another routine
        tag += "_" + hashlib.sha1(forward.encode()).hexdigest()[:6]
    return Activation(tag, forward)
