"""Kernels of a training step that belong to no layer kind, rendered like a
layer's (same helpers, same calling convention, composed by `render_module`)
so runtimes run them as more forward kernels:

    render_gradsum(node, line, parts, size, target)   templates/gradsum.j2: y = x0 + x1 (+ ...),
                                                      the gradient of a tensor with several readers
    render_update(node, line, param, size, target)    templates/update.j2: SGD with momentum and
                                                      weight decay of one parameter, in place

The update's buffers: the parameter (`param` role, written), its velocity
(`v<param>`, also `param`: state that lives for the whole run) and its
gradient (`d<param>`), and the step's `gate` (2 floats: the gradient scale and
whether to update at all); its run-time scalars are `momentum`, `lr` and `decay`.

    render_watch(target)                              templates/watch.j2: the guard's,
                                                      clipping's and gradient flow's sums of
                                                      squares on the device (CUDA only; the
                                                      runtime launches them)
    render_input_augment(crop, size, channels, ...)   templates/input_augment.j2: a training
                                                      batch's uint8 crops to the float32 input
                                                      (CUDA only; runtime/cuda_feed.py)
"""
from __future__ import annotations

from .plan import Buffer, KernelSource
from .render import Declarations, Tensor, c_identifier, environment
from .targets import TARGETS


def _render(template: str, node: str, line: int, target: str, **context) -> KernelSource:
    declare = Declarations(TARGETS[target], template, node, line, c_identifier(node))
    module = environment().get_template(f"{template}.j2").make_module(
        {"dialect": TARGETS[target].dialect, "flat": declare.flat, "scalar": declare.scalar, **context})
    source = KernelSource(target, node, template, str(module), tuple(module.forward), (), (), module)
    source.buffers  # noqa: B018 -- raises now if two kernels disagree on a buffer
    return source


def render_gradsum(node: str, source_line: int, parts: int, size: int, target: str) -> KernelSource:
    if parts < 2:
        raise ValueError(f"{node}: a gradient sum needs at least two parts, got {parts}")
    ins = [Tensor(Buffer(f"x{i}", "input", size), (size,)) for i in range(parts)]
    return _render("gradsum", node, source_line, target, ins=ins, out=Tensor(Buffer("y", "output", size), (size,)))


def render_update(node: str, source_line: int, param: str, size: int, target: str) -> KernelSource:
    return _render("update", node, source_line, target, param=Tensor(Buffer(param, "param", size), (size,)),
                   velocity=Tensor(Buffer(f"v{param}", "param", size), (size,)),
                   gate=Tensor(Buffer("gate", "input", 2), (2,)))


WATCH_THREADS = 256  # a power of two: the block's tree reduction halves it


def render_watch(target: str) -> KernelSource:
    """Kernels with their own signatures (tables of tensors, a double workspace), so the
    source declares no `Kernel`: the cuda runtime launches them by name."""
    if target != "cuda":
        raise ValueError(f"the device-side guard is rendered for cuda, not {target}")
    module = environment().get_template("watch.j2").make_module({"threads": WATCH_THREADS})
    return KernelSource(target, "watch", "watch", str(module), (), (), (), module)


INPUT_THREADS = 256


def render_input_augment(crop: int, size: int, channels: int, with_mean: bool, lighting: bool,
                         scaled: bool) -> KernelSource:
    """templates/input_augment.j2 for crops of `crop` cut from `size` x `size` images: the
    float conversion, mirror, mean, lighting and scale of a training batch (CUDA only;
    the runtime launches it by name, netdsl_input_augment)."""
    if not 0 < crop <= size:
        raise ValueError(f"a {crop}x{crop} crop does not fit {size}x{size} images")
    module = environment().get_template("input_augment.j2").make_module(
        {"threads": INPUT_THREADS, "crop": crop, "size": size, "channels": channels, "with_mean": with_mean,
         "lighting": lighting, "scaled": scaled})
    return KernelSource("cuda", "input_augment", "input_augment", str(module), (), (), (), module)
