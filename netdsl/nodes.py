"""The front half's node record: what one node of the networkx graph holds.

Every node of the graph is a `Node`, not a dict of loose string keys: a
misspelt field is an error where it is written, a role is a `Role`, and the
questions passes ask ("is this a layer?") are properties. `NetGraph` is the
networkx graph whose nodes are these records (networkx's documented
`node_attr_dict_factory` hook), so `g.nodes[n].shape` and `g.add_node(n, ...)`
work as usual.

`Order` replaces fractional sort keys: it says where a node sits among nodes
that no edge orders, so every listing follows the file.
"""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field

import networkx as nx

from .errors import Pos


class Role(enum.Enum):
    INPUT = "input"        # a network input: images or labels
    LAYER = "layer"        # one forward layer instance (tower copies, inserted concats and transfers too)
    BACKWARD = "backward"  # the gradient of one forward layer
    GRADSUM = "gradsum"    # the sum of a fanned-out tensor's gradients
    UPDATE = "update"      # the optimiser step of one layer's parameters

    @property
    def forward(self) -> bool:
        return self in (Role.INPUT, Role.LAYER)

    def __eq__(self, other):
        # `role == "layer"` would be False for every node, silently.
        if isinstance(other, str):
            raise TypeError(f"compare a Role with Role.{other.upper()} or a Node property, not with {other!r}")
        return self is other

    __hash__ = enum.Enum.__hash__


class Phase(enum.IntEnum):
    FORWARD = 0
    BACKWARD = 1  # after every forward node, walking the forward layers in reverse


class Part(enum.IntEnum):
    """Nodes a pass adds around another share its place and say on which side."""
    BEFORE = -1  # a concat the compiler inserts for a layer reads before that layer
    SELF = 0
    AFTER = 1    # a transfer of a layer's output; an update after its backward


@dataclass(frozen=True, order=True)
class Order:
    """The sort key that breaks ties in the topological order: file order."""
    phase: Phase
    index: int              # position in the file (forward) or in the backward walk
    copy: int = 0           # which copy of a tower statement: the tower's first device first
    part: Part = Part.SELF

    def beside(self, part: Part) -> Order:
        return dataclasses.replace(self, part=part)


@dataclass(eq=False)
class Node:
    """One node. Every field has a default because networkx makes the record
    before it fills it in; the passes named below fill what they own."""
    role: Role | None = None
    kind: str | None = None            # the layer kind ("conv"); "input", "gradsum", "update" otherwise
    stmt: str | None = None            # the statement that wrote it, as the file names it
    pos: Pos | None = None
    order: Order | None = None
    tower: tuple[str, ...] | None = None  # the devices of the tower it was written in
    placed: str | None = None          # the device its statement (or block use) names with `on`
    device: str | None = None          # logical device (expand_towers, place_devices); "host" for inputs
    shape: tuple[int, ...] | None = None  # one image's output (infer_shapes; inputs: as written)
    label: bool = False                # an input of class labels
    # Written by graph.build, consumed by resolve_names.
    call: object = None                # the ast.LayerCall, until resolve_names replaces it by kind and args
    head: bool = False                 # the first layer of its statement's chain
    uses: tuple = ()                   # the (block, position) uses that made it, outermost first
    overrides: dict = field(default_factory=dict)  # `--set LAYER.ARG` values, as ast.Arg
    # resolve_names, infer_shapes, place_devices.
    args: dict = field(default_factory=dict)
    params: dict[str, tuple[int, ...]] = field(default_factory=dict)
    macs: int = 0                      # multiply-adds per image
    source_device: str | None = None   # a transfer: the device it reads from
    bytes: int = 0                     # a transfer: bytes moved per image
    # build_backward, add_updates.
    of: str | None = None              # the forward layer a backward, gradsum or update node serves

    @property
    def is_input(self) -> bool:
        return self.role is Role.INPUT

    @property
    def is_layer(self) -> bool:
        return self.role is Role.LAYER

    @property
    def is_image(self) -> bool:
        return self.role is Role.INPUT and not self.label

    def update(self, attrs: dict) -> None:
        """networkx's `add_node(n, **attrs)`; a key that is not a field is refused."""
        for key, value in attrs.items():
            if key not in _FIELDS:
                raise TypeError(f"a graph node has no field `{key}`")
            setattr(self, key, value)

    # Unhashable, as a dict is: networkx's add_nodes_from tells a bare node from a
    # (node, data) pair by whether the item hashes.
    __hash__ = None

    def copy(self) -> Node:
        return dataclasses.replace(self)

    def __iter__(self):
        """(field, value) pairs: what `dict(node)` and networkx's graph copy read."""
        return ((name, getattr(self, name)) for name in _FIELDS)

    def __contains__(self, key):
        # Every field always exists, so `"shape" in node` would be a question with one answer.
        raise TypeError(f"`{key!r} in node`: a graph node has every field; test the field's value instead")


_FIELDS = tuple(f.name for f in dataclasses.fields(Node))


class NetGraph(nx.DiGraph):
    """A networkx DiGraph whose node data are `Node` records."""
    node_attr_dict_factory = Node
