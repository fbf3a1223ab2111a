"""Render a layer's kernels from `templates/<kind>.j2`, and a module from layers.

A kind's template is found by its name; nothing here knows any kind. The
template receives plain numbers (batch, shapes, arguments), tensor
descriptors and helper functions, and declares its passes as data by setting
`forward` and `backward` to lists of kernels made with the helpers:

    flat(purpose, args, n)          a kernel with a thread per element (`d.for_each`)
    rows(purpose, args, rows, cols) a kernel with a block per row (`d.for_each_row`)
    gemm(purpose, a, b, c, m, n, k, lda, ldb, ldc, trans_a=, trans_b=, batch=,
         stride_a=, stride_b=, stride_c=, alpha=, beta=)
                                    C[i] = alpha op(A[i]) op(B[i]) + beta C[i], row-major,
                                    i < batch; runs a shared matrix-product routine
    saved(name, size, dtype) / scratch(name, size) / state(name, size)   extra buffers
    scalar(name)                    a run-time scalar (netdsl.codegen.plan.SCALARS)

The arguments come as `a.<name>` (complete, schema defaults filled in) and as
the dict `args`, for the layer's own helpers (`layer.<method>(args)`).
Tensors (`ins[i]`, `out`, `params.<name>`) offer `.read` / `.write` (kernel
arguments bound to their buffer), `.grad` (the gradient tensor), `.shape`
(no batch for activations) and `.size` (elements, whole batch). Every
template, the dialects included, also sees `index_type(n)`, `f32(x)` (an
exact float literal), `prod`, `parallel_threshold` and `split_k(m, n, k)` (the slices
of k a long matrix product is cut into) and `row_slices(rows, cols)` (the same for
long row sums; both in netdsl/codegen/split_k.py).

The kernel text is written against the dialect macros (`{% import dialect as
d %}`; see templates/_c.j2). Templates compose templates (Jinja imports and
module objects); Python never assembles source text.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, replace
from types import SimpleNamespace

import jinja2
import numpy as np

from ..layers import REGISTRY, REQUIRED
from ..resources import templates_dir
from .plan import ELEMENT_TYPES, SCALARS, Activation, Arg, Buffer, GemmVariant, Kernel, KernelSource
from .split_k import row_slices, split_k
from .targets import TARGETS, Target

TEMPLATES = templates_dir()

# Loops shorter than this stay on one CPU thread: waking the OpenMP team costs
# more than the work it would share.
PARALLEL_THRESHOLD = 1 << 14

GRAD_ROLES = {"input": "grad_input", "output": "grad_output", "param": "grad_param"}


def index_type(n: int) -> str:
    """Loop index type for n elements: int while a grid-stride step cannot overflow it."""
    return "int" if n < 2**30 else "int64_t"


def f32(x: float) -> str:
    """C literal for float32(x): the shortest decimal that reads back as the same float."""
    value = np.float32(x)
    if not np.isfinite(value):
        raise ValueError(f"{x} has no finite float32 literal")
    text = str(value)
    return (text if ("." in text or "e" in text) else text + ".0") + "f"


def c_identifier(node: str) -> str:
    ident = re.sub(r"\W", "_", node, flags=re.ASCII)
    return "n_" + ident if not ident or ident[0].isdigit() else ident


def c_block(text: str, depth: int = 1) -> str:
    """Re-indent a C body by brace depth, so nested macros read as one function.

    Each line is indented four spaces per open brace; a line continuing an
    unfinished statement gets four more. Blank-line runs shrink to one.
    """
    lines, open_braces, continuing, blank = [], depth, False, False
    for raw in text.strip("\n").splitlines():
        line = raw.strip()
        if not line:
            blank = bool(lines)
            continue
        code = re.sub(r"/\*.*?\*/|//.*", "", line)
        level = open_braces - (1 if code.startswith("}") else 0)
        pad = 0 if line.startswith("#") else 4 * level + (4 if continuing else 0)
        lines.extend([""] if blank and not line.startswith("}") else [])
        lines.append(" " * pad + line)
        open_braces += code.count("{") - code.count("}")
        continuing = bool(code) and not line.startswith("#") and code.rstrip()[-1] not in ";{}:"
        blank = False
    return "\n".join(lines)


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["c_block"] = c_block
    env.add_extension(f"{__package__}.text.TextHelpers")
    env.globals.update(index_type=index_type, f32=f32, prod=math.prod, parallel_threshold=PARALLEL_THRESHOLD,
                       split_k=split_k, row_slices=row_slices)
    return env


@dataclass(frozen=True)
class Tensor:
    """A buffer as a template sees it, with the shape it holds."""

    buffer: Buffer
    shape: tuple[int, ...]

    name = property(lambda self: self.buffer.name)
    size = property(lambda self: self.buffer.size)
    dtype = property(lambda self: self.buffer.dtype)

    def _arg(self, const: bool) -> Arg:
        return Arg(self.name, ELEMENT_TYPES[self.dtype], pointer=True, const=const, buffer=self.buffer)

    @property
    def read(self) -> Arg:
        return self._arg(const=True)

    @property
    def write(self) -> Arg:
        return self._arg(const=False)

    @property
    def grad(self) -> "Tensor":
        role = GRAD_ROLES[self.buffer.role]
        return Tensor(Buffer("d" + self.name, role, self.size), self.shape)

    def retype(self, dtype: str, size: int) -> "Tensor":
        """The same buffer holding other data, e.g. one int32 class label per item."""
        return Tensor(replace(self.buffer, dtype=dtype, size=size), self.shape)


class Declarations:
    """The helpers a template calls; they know the node, the target and its launches."""

    def __init__(self, target: Target, kind: str, node: str, line: int, ident: str, precision: str = "fp32"):
        self.target, self.kind, self.node, self.line, self.ident = target, kind, node, line, ident
        self.precision = precision  # of the matrix products: "fp32", "tf32" or "bf16"
        self.gemms: list[GemmVariant] = []

    def _kernel(self, name, args, launch, shape, purpose) -> Kernel:
        return Kernel(name, tuple(args), launch, shape, self.node, self.kind, self.line, purpose)

    def _name(self, purpose: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", purpose):
            raise ValueError(f"kernel purpose {purpose!r} must be a lower-case identifier")
        return f"{self.ident}_{purpose}"

    def flat(self, purpose, args, n):
        return self._kernel(self._name(purpose), args, self.target.flat_launch(n), "flat", purpose)

    def rows(self, purpose, args, rows, cols):
        return self._kernel(self._name(purpose), args, self.target.rows_launch(rows, cols), "rows", purpose)

    def saved(self, name, size, dtype="float32"):
        return Tensor(Buffer(name, "saved", size, dtype), (size,))

    def scratch(self, name, size):
        return Tensor(Buffer(name, "scratch", size), (size,))

    def state(self, name, size):
        return Tensor(Buffer(name, "state", size), (size,))

    def scalar(self, name):
        return Arg(name, SCALARS[name], scalar=name)

    def implicit_conv(self) -> bool:
        """Whether this target and precision run a convolution's forward product as an implicit GEMM."""
        return self.target.implicit_conv(self.precision)

    def product_epilogue(self) -> bool:
        """Whether this target and precision's products add a bias and apply an activation as they write."""
        return self.target.product_epilogue(self.precision)

    def gemm(self, purpose, a, b, c, m, n, k, lda, ldb, ldc, trans_a=False, trans_b=False, batch=1,
             stride_a=0, stride_b=0, stride_c=0, alpha=1.0, beta=0.0, tile=None, conv=(), scatter=(), bias=None,
             activation=None):
        """A matrix-product call; `tile` forces a CUDA tile (tests), else the target picks.
        With `conv` (see GemmVariant.conv), `b` is the images and B their virtual im2col column
        matrix (ld = ldb), op(B) = B^T with trans_b; stride_b steps through that matrix.
        With `scatter` = (pixels, image_stride) C is written in NCHW order (GemmVariant.scatter;
        ldc is then unused). `bias` (a channel's: m entries per batch item in NCHW, else n) and
        `activation` are applied as C is written (GemmVariant.bias)."""
        where = f"{self.node}: {purpose}"
        _check_extent(where, a, k if trans_a else m, m if trans_a else k, lda, batch, stride_a)
        if conv:  # B is virtual: the loader reads only inside the images
            if not trans_b and stride_b not in (0, k * ldb):
                raise ValueError(f"{where}: an untransposed implicit B steps by a group's k rows, not {stride_b}")
            _check_images(where, b, conv, n if trans_b else k, k if trans_b else n, ldb, batch, stride_b)
        else:
            _check_extent(where, b, n if trans_b else k, k if trans_b else n, ldb, batch, stride_b)
        if scatter:
            _check_scatter(where, c, m, n, scatter, batch, stride_c)
        else:
            _check_extent(where, c, m, n, ldc, batch, stride_c)
        channels = m if scatter else n  # the bias's axis (GemmVariant.bias)
        if bias is not None and bias.size < batch * channels:
            raise ValueError(f"{where}: {bias.name} has {bias.size} elements, not {batch} x {channels}")
        variant, launch = self.target.gemm(trans_a, trans_b, m, n, batch, tile, precision=self.precision, k=k,
                                           conv=tuple(conv), scatter=tuple(scatter), bias=bias is not None,
                                           activation=activation)
        if variant not in self.gemms:
            self.gemms.append(variant)

        def number(name, value, ctype="int64_t"):
            return Arg(name, ctype, value=value)

        args = (number("batch", batch), number("m", m), number("n", n), number("k", k),
                number("alpha", float(alpha), "float"),
                a.read.renamed("a"), number("lda", lda), number("stride_a", stride_a),
                b.read.renamed("b"), number("ldb", ldb), number("stride_b", stride_b),
                number("beta", float(beta), "float"),
                c.write.renamed("c"), number("ldc", ldc), number("stride_c", stride_c))
        if bias is not None:
            args += (bias.read.renamed("bias"),)
        return self._kernel(variant.name, args, launch, "gemm", purpose)


def _check_extent(where, tensor: Tensor, rows, cols, ld, batch, stride) -> None:
    """A template bug that would read or write past a buffer fails here, at render time."""
    if min(rows, cols, batch) < 1 or ld < cols:
        raise ValueError(f"{where}: {tensor.name} is {rows} x {cols} with leading dimension {ld}")
    last = (batch - 1) * stride + (rows - 1) * ld + cols - 1
    if last >= tensor.size:
        raise ValueError(f"{where}: {tensor.name} has {tensor.size} elements, the product reaches {last}")


def _check_scatter(where, tensor: Tensor, rows, cols, scatter, batch, stride) -> None:
    """The NCHW epilogue's reach: column j of row r lands at (j / pixels) * image_stride + r * pixels
    + j % pixels past item z's start z * stride, so the last element written is the last column's."""
    pixels, image_stride = scatter
    if min(rows, cols, batch) < 1 or rows * pixels > image_stride or cols % pixels:
        raise ValueError(f"{where}: {rows} x {cols} is not whole images of {pixels} pixels "
                         f"{image_stride} apart")
    last = (batch - 1) * stride + (cols // pixels - 1) * image_stride + rows * pixels - 1
    if last >= tensor.size:
        raise ValueError(f"{where}: {tensor.name} has {tensor.size} elements, the product reaches {last}")


def _check_images(where, images: Tensor, conv, rows, cols, ld, batch, stride) -> None:
    """The implicit loader's reach: batch item z reads `rows` x `cols` of the virtual column matrix
    (a row per channel and kernel tap, a column per image and output pixel, `ld` columns) from
    element z * stride on, which must start at a channel's first tap and stay inside the images."""
    channels, height, width, kh, kw = conv[:5]
    pixels = conv[-2] * conv[-1]
    for z in range(batch):
        first_row, first_col = divmod(z * stride, ld)
        last_channel = (first_row + rows - 1) // (kh * kw)
        last = (((first_col + cols - 1) // pixels * channels + last_channel + 1) * height * width) - 1
        if first_row % (kh * kw) or ld % pixels or first_col + cols > ld or last_channel >= channels \
                or last >= images.size:
            raise ValueError(f"{where}: {images.name} has {images.size} elements, not {ld // pixels} images of "
                             f"{channels} x {height} x {width} read by batch item {z} to element {last}")


def complete_args(kind: str, args: dict) -> dict:
    """The layer's schema defaults under the given arguments; every required one must be given."""
    layer = REGISTRY[kind]
    full = {spec.name: spec.default for spec in layer.args} | dict(args)
    missing = [name for name, value in full.items() if value is REQUIRED]
    if missing:
        raise ValueError(f"{kind}: missing argument(s) {', '.join(missing)}")
    return full


def render_layer(kind: str, node: str, source_line: int, args: dict, in_shapes, out_shape, batch: int,
                 target: str, precision: str = "fp32", activation: Activation | None = None) -> KernelSource:
    """Kernels of one layer instance (`node`, written at `source_line`) at a fixed batch size.
    `activation` (activations.py): applied to the output in a matrix product's epilogue
    (netdsl/passes/epilogues.py), so the output is the activation's; a layer whose template
    offers no such epilogue is an error."""
    layer = REGISTRY[kind]
    tgt = TARGETS[target]
    a = complete_args(kind, args)
    ins = [Tensor(Buffer(f"x{i}", "input", batch * math.prod(s)), tuple(s)) for i, s in enumerate(in_shapes)]
    out = Tensor(Buffer("y", "output", batch * math.prod(out_shape)), tuple(out_shape))
    params = {name: Tensor(Buffer(name, "param", math.prod(shape)), tuple(shape))
              for name, shape in layer.param_shapes(a, [tuple(s) for s in in_shapes]).items()}
    declare = Declarations(tgt, kind, node, source_line, c_identifier(node), precision)
    try:
        template = environment().get_template(f"{kind}.j2")
    except jinja2.TemplateNotFound:
        raise LookupError(f"layer kind {kind!r} has no kernel template: add templates/{kind}.j2") from None
    module = template.make_module({
        "dialect": tgt.dialect, "layer": layer, "a": SimpleNamespace(**a), "args": a, "batch": batch,
        "ins": ins, "out": out, "params": SimpleNamespace(**params),
        "flat": declare.flat, "rows": declare.rows, "gemm": declare.gemm,
        "implicit_conv": declare.implicit_conv, "product_epilogue": declare.product_epilogue,
        "epilogue_activation": activation,
        "saved": declare.saved, "scratch": declare.scratch, "state": declare.state, "scalar": declare.scalar,
    })
    source = KernelSource(target, node, kind, str(module), tuple(module.forward), tuple(module.backward),
                          tuple(declare.gemms), module)
    source.buffers  # noqa: B018 -- raises now if two kernels disagree on a buffer
    if activation and not any(v.activation == activation for v in source.gemms):
        raise ValueError(f"{node}: the {kind} kernels for {target} {precision} apply no {activation.tag} epilogue")
    return source


def render_module(sources: list[KernelSource], target: str, gemms=()) -> str:
    """One translation unit: the dialect's prelude, the matrix products used (and any
    `gemms` variants asked for besides), then every layer."""
    tgt = TARGETS[target]
    seen: dict[str, str] = {}
    for source in sources:
        if source.target != target:
            raise ValueError(f"{source.node} was rendered for {source.target}, not {target}")
        for kernel in source.kernels:
            if kernel.shape != "gemm" and seen.setdefault(kernel.name, source.node) != source.node:
                raise ValueError(f"kernel {kernel.name} of {source.node} clashes with {seen[kernel.name]}; rename a node")
    gemms = sorted({v for s in sources for v in s.gemms} | set(gemms), key=lambda v: v.name)
    return environment().get_template("_module.j2").render(
        dialect=tgt.dialect, gemm_template=tgt.gemm_template, gemms=gemms, layers=[s.module for s in sources])
