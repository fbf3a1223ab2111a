"""The step IR: one training step as calls and copies over typed tensor
references. It is what the back half's passes rewrite and what every
backend runs; `netdsl compile` prints and serialises the same object.

    TensorRef(node, role, index)   one tensor of the step
    Call(kernel, args, ...)        run a rendered kernel; args[i] is the tensor bound to its
                                   i-th parameter (None for constants and run-time scalars)
    Copy(src, dst, ...)            move a tensor between physical devices (a transfer)
    Plan                           the phases (forward, backward, update), every tensor's
                                   size and device, the arenas and the schedule

Roles of a TensorRef (index says which one, where a node has several):

    value        output of a forward node (network inputs too; index: the device an input
                 was copied to, where it is read on another one)
    grad         gradient of a node's output; index: the sender's slot where the
                 node fans out and a gradient sum adds the parts
    param        a parameter (index: its name, e.g. "weight")
    param_grad   its gradient
    momentum     its SGD velocity
    state        kept across steps and in checkpoints, but not trained (running statistics)
    saved        written by a node's forward for its backward (index: the buffer's name)
    scratch      temporary within one kernel call (index: the buffer's name)
    seed         dloss/dloss = 1
    discard      a gradient nobody reads (of a network input)
    status       the step's own small buffers, one per physical device (index: the device):
                 "gate" holds the update's gradient scale and whether to apply it at all

Persistent roles live for the whole run; the others only while the step
needs them, which is what lets the memory plan reuse their bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .codegen.plan import Kernel, KernelSource

ROLES = ("value", "grad", "param", "param_grad", "momentum", "state", "saved", "scratch", "seed", "discard",
         "status")
PERSISTENT = frozenset({"param", "param_grad", "momentum", "state", "seed", "status"})
ITEM_BYTES = {"float32": 4, "int32": 4}


@dataclass(frozen=True, order=True)
class TensorRef:
    node: str
    role: str
    index: str = ""

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"tensor of {self.node}: unknown role {self.role!r}")

    def __str__(self) -> str:
        return f"{self.role}:{self.node}" + (f"/{self.index}" if self.index else "")

    @property
    def persistent(self) -> bool:
        return self.role in PERSISTENT

    @property
    def param_name(self) -> str:
        """"layer.weight" for a parameter's (or its gradient's, or momentum's) reference."""
        return f"{self.node}.{self.index}"


@dataclass(frozen=True)
class TensorInfo:
    size: int          # elements
    dtype: str         # "float32" | "int32"
    device: str        # logical device of its first user
    fill: float | None = None  # constant content, written once at allocation

    @property
    def nbytes(self) -> int:
        return self.size * ITEM_BYTES[self.dtype]


@dataclass(frozen=True)
class Call:
    kernel: Kernel
    args: tuple[TensorRef | None, ...]
    node: str    # the graph node it serves (a layer, a backward, a gradient sum or an update)
    layer: str   # the layer whose dropout key and parameters it uses
    device: str  # logical device: the stream it runs on

    @property
    def writes(self) -> frozenset[TensorRef]:
        return frozenset(t for t, a in zip(self.args, self.kernel.args) if t and a.pointer and not a.const)

    @property
    def reads(self) -> frozenset[TensorRef]:
        return frozenset(t for t, a in zip(self.args, self.kernel.args) if t and a.const)


@dataclass(frozen=True)
class Copy:
    src: TensorRef
    dst: TensorRef
    node: str
    device: str       # where it lands; the copy is issued on the sender's stream
    src_device: str

    @property
    def writes(self) -> frozenset[TensorRef]:
        return frozenset({self.dst})

    @property
    def reads(self) -> frozenset[TensorRef]:
        return frozenset({self.src})


Step = Call | Copy


@dataclass
class Arena:
    """One allocation per physical device: every tensor placed there has an offset."""

    device: str
    nbytes: int = 0
    offsets: dict[TensorRef, int] = field(default_factory=dict)
    by_role: dict[str, int] = field(default_factory=dict)  # bytes each role would take apart
    sum_bytes: int = 0       # every tensor apart, no reuse
    live_peak_bytes: int = 0  # the most bytes live at one step: a lower bound on nbytes


@dataclass(frozen=True)
class Sync:
    """What a stream does around one step: wait for events of other streams, then record one."""

    waits: tuple[int, ...] = ()   # indices (into Plan.steps) of steps whose event it waits for
    record: bool = False          # another stream waits on this step


@dataclass
class Plan:
    network: str
    target: str
    batch: int
    modules: list[KernelSource]          # each distinct kernel body once
    tensors: dict[TensorRef, TensorInfo]
    forward: list[Step]
    backward: list[Step]
    update: list[Step]
    inputs: dict[str, TensorRef]         # network input node -> tensor the host fills
    values: dict[str, TensorRef]         # forward node -> its output
    param_grads: dict[str, TensorRef]    # "layer.param" -> its gradient
    grad_checks: list[tuple[str, TensorRef, str]]  # (layer, tensor, what), for the guard's report
    placement: dict[str, str]            # logical device -> physical device (the arena's name)
    host_reads: frozenset[TensorRef] = frozenset()  # read by the host after the forward pass
    precision: str = "fp32"              # of every matrix product: fp32, tf32 or bf16
    arenas: dict[str, Arena] = field(default_factory=dict)   # set by plan_memory
    sync: dict[int, Sync] = field(default_factory=dict)      # set by schedule; keyed by step index

    @property
    def steps(self) -> list[Step]:
        """Every phase in program order: the order lifetimes and events are counted in."""
        return self.forward + self.backward + self.update

    def phase_range(self, phase: str) -> range:
        start = {"forward": 0, "backward": len(self.forward),
                 "update": len(self.forward) + len(self.backward)}[phase]
        return range(start, start + len(getattr(self, phase)))

    def arena_of(self, ref: TensorRef) -> Arena:
        return self.arenas[self.placement[self.tensors[ref].device]]

    @property
    def kernel_count(self) -> int:
        return len({k.name for m in self.modules for k in m.kernels})
