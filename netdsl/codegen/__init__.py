"""Kernels from templates: every layer kind's maths lives once in
`templates/<kind>.j2`, written against the dialect macros of `_c.j2` (loops
and OpenMP) and `_cuda.j2` (grid-stride threads), so the CPU tests run the
arithmetic the GPU runs.

    source = render_layer("relu", "conv1.relu@gpu0", 12, {}, [(96, 55, 55)], (96, 55, 55), 128, "c")
    text = render_module([source, ...], "c")       # one translation unit
    source.forward, source.backward                # kernels to call, in order
    source.buffers                                 # every buffer they name, with role and size

See `plan.py` for the calling convention and `render.py` for what a template
receives.
"""
from .activations import epilogue_activation
from .plan import ROLES, SCALARS, Activation, Arg, Buffer, GemmVariant, Kernel, KernelSource, Launch
from .render import Declarations, Tensor, c_identifier, complete_args, environment, render_layer, render_module
from .targets import TARGETS

__all__ = [
    "ROLES", "SCALARS", "TARGETS", "Activation", "Arg", "Buffer", "GemmVariant", "Kernel", "KernelSource", "Launch",
    "Declarations", "Tensor", "c_identifier", "complete_args", "environment", "epilogue_activation",
    "render_layer", "render_module",
]
