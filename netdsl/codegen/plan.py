"""What a rendered layer tells a runtime, as plain data.

A layer's forward and backward passes are each an ordered list of `Kernel`
calls. A kernel names its function (C) or `__global__` kernel (CUDA), and
every parameter says what to pass: a buffer, a constant, or one of the
run-time scalars below. The same lists serve both targets; the C runtime
ignores `launch`, the CUDA runtime launches with it.

Buffers are named per node and carry a role, so an executor can allocate and
keep alive exactly what each pass touches:

    input        x0, x1, ...   forward inputs (batch-major, as the numpy reference)
    output       y             forward output
    param        weight, bias  PyTorch layouts
    grad_output  dy            gradient arriving at the output
    grad_input   dx0, dx1, ... gradient with respect to each input (overwritten)
    grad_param   dweight, ...  gradient with respect to each parameter (overwritten)
    saved        written by forward, read by backward (e.g. maxpool's argmax)
    scratch      temporary within one pass (e.g. im2col columns)
    state        kept across steps, updated by a training forward (batchnorm's running statistics)

Buffers passed to one call never alias: kernels declare them `restrict`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

ROLES = ("input", "output", "param", "grad_output", "grad_input", "grad_param", "saved", "scratch", "state")

# Run-time scalars a kernel may take, and their C types. The dropout key is
# netdsl.rng.stream_key(seed, node name); `step` is the draw counter. The SGD
# update (templates/update.j2) takes momentum, the parameter's learning rate
# and its weight decay times that rate. `image_offset` is the position of the
# batch's first image in the global batch (non-zero on the ranks of
# data-parallel training), so a shard draws its images' dropout bits.
SCALARS = {"key0": "uint32_t", "key1": "uint32_t", "step": "uint64_t", "train": "int", "image_offset": "uint64_t",
           "momentum": "float", "lr": "float", "decay": "float"}

ELEMENT_TYPES = {"float32": "float", "int32": "int32_t"}


@dataclass(frozen=True)
class Buffer:
    name: str
    role: str
    size: int  # elements, whole batch
    dtype: str = "float32"

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"buffer {self.name}: unknown role {self.role!r}")
        if self.dtype not in ELEMENT_TYPES:
            raise ValueError(f"buffer {self.name}: unsupported dtype {self.dtype!r}")

    @property
    def nbytes(self) -> int:
        return 4 * self.size


@dataclass(frozen=True)
class Arg:
    """One kernel parameter and what is bound to it (exactly one of buffer, value, scalar)."""

    name: str
    ctype: str  # the element type of a pointer, else the scalar's type
    pointer: bool = False
    const: bool = False
    buffer: Buffer | None = None
    value: int | float | None = None
    scalar: str | None = None

    def __post_init__(self):
        bound = [self.buffer is not None, self.value is not None, self.scalar is not None]
        if sum(bound) != 1:
            raise ValueError(f"argument {self.name}: bind exactly one of buffer, value, scalar")
        if self.scalar is not None and SCALARS.get(self.scalar) != self.ctype:
            raise ValueError(f"argument {self.name}: run-time scalar {self.scalar!r} is {SCALARS.get(self.scalar)}")

    def renamed(self, name: str) -> "Arg":
        return replace(self, name=name)


@dataclass(frozen=True)
class Launch:
    """CUDA launch geometry; grid-stride loops make any grid correct, the size is a speed choice."""

    grid: tuple[int, int, int] = (1, 1, 1)
    block: tuple[int, int, int] = (1, 1, 1)

    @property
    def threads(self) -> int:
        return self.block[0] * self.block[1] * self.block[2]


@dataclass(frozen=True)
class Kernel:
    name: str
    args: tuple[Arg, ...]
    launch: Launch
    shape: str  # "flat" (a thread per element), "rows" (a block per row) or "gemm"
    node: str
    kind: str
    line: int
    purpose: str

    @property
    def buffers(self) -> tuple[Buffer, ...]:
        return tuple(a.buffer for a in self.args if a.buffer is not None)


@dataclass(frozen=True)
class Activation:
    """An elementwise activation as a matrix product's epilogue applies it (GemmVariant.activation):
    `expression` is its template's own forward expression of x_i, its arguments written in;
    `tag` names it in the routine's name (the kind, plus a digest where arguments are not the default)."""

    tag: str
    expression: str


@dataclass(frozen=True)
class GemmVariant:
    """One compiled matrix-product routine; layers share it and pass sizes at run time."""

    name: str
    trans_a: bool
    trans_b: bool
    tile_m: int = 0  # CUDA block tile; 0 where a library does the tiling
    tile_n: int = 0
    precision: str = "fp32"  # "fp32" (SIMT), "tf32" or "bf16" (tensor cores, FP32 accumulation)
    warps_m: int = 0  # tensor-core variants: the block's warps along m and n,
    warps_n: int = 0  # the depth of one shared-memory stage along k,
    depth: int = 0    # and the number of stages in flight
    stages: int = 0
    # Implicit-GEMM convolution (tensor-core variants only): B is not a matrix in memory but the
    # input images, read through im2col addressing in the tile loader. The geometry is
    # (channels, height, width, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w); () for a plain product.
    conv: tuple = ()
    # NCHW epilogue (tensor-core variants only): C's element (r, j) of batch item z is written to
    # c[z * stride_c + (j / pixels) * image_stride + r * pixels + j % pixels], C's columns being
    # (image, pixel) pairs and its rows channels, so a convolution's product lands in its output's
    # layout with no regrouping pass. (pixels, image_stride) or () for a row-major C.
    scatter: tuple = ()
    # A bias added as C is written: one per channel, so per row of an NCHW C (bias[z * m + r]) and
    # per column of a row-major one (bias[z * n + j], a fully connected layer's outputs).
    bias: bool = False
    # An activation applied last, or None: the layer's output is then the activation's
    # (netdsl/passes/epilogues.py).
    activation: Activation | None = None

    @property
    def threads(self) -> int:
        return 32 * self.warps_m * self.warps_n if self.warps_m else (self.tile_m // 8) * (self.tile_n // 8)


@dataclass(frozen=True)
class KernelSource:
    """One layer rendered for one target: its source text and how to call it."""

    target: str
    node: str
    kind: str
    text: str
    forward: tuple[Kernel, ...]
    backward: tuple[Kernel, ...]
    gemms: tuple[GemmVariant, ...]
    module: Any = field(repr=False, compare=False)  # the Jinja module render_module composes

    @property
    def kernels(self) -> tuple[Kernel, ...]:
        return self.forward + self.backward

    @property
    def buffers(self) -> dict[str, Buffer]:
        """Every buffer a kernel of either pass names, by name."""
        found: dict[str, Buffer] = {}
        for kernel in self.kernels:
            for buf in kernel.buffers:
                if found.setdefault(buf.name, buf) != buf:
                    raise ValueError(f"{self.node}: buffer {buf.name} declared twice, as {found[buf.name]} and {buf}")
        return found

    @property
    def kept_for_backward(self) -> tuple[str, ...]:
        """Forward-side buffers (inputs, output, parameters, saved) the backward pass reads:
        what a memory plan must keep alive from this layer's forward to its backward."""
        forward_side = {"input", "output", "param", "saved"}
        return tuple(sorted({b.name for k in self.backward for b in k.buffers if b.role in forward_side}))
