"""`netdsl import MODEL.onnx`: a CNN graph from torch.onnx.export as a .net file
and a checkpoint of its weights.

The ONNX graph is walked in its own (topological) order. Constant and
Identity nodes are folded first (a Constant becomes a known array, an
Identity an alias of its input), then the patterns an exporter writes for
one kind (SiLU's Sigmoid and Mul, GELU's erf arithmetic) are fused into one
operator (onnx_import_fuse.py). Every other node goes through one small
function per ONNX op type (OPS), which reads the node's attributes and known
arrays and returns a Layer: the netdsl kind, its arguments in .net syntax,
and its weights by parameter name. An op or attribute a function cannot
express raises Unsupported, which names the node and the op. The layers
are then written one statement each, or with their repeated regions as
blocks (onnx_import_blocks.py; `--flat` keeps one statement per layer).

An ONNX graph holds no loss. By default the import writes a classifier (the
one output's scores feed a `softmax_loss`, a final Softmax standing for it is
dropped), so the file trains and tests as it is; `loss=False` (`--no-loss`)
writes the inference graph as it computes, its outputs the network's final
tensors (one statement per layer). Which one a final Softmax means cannot be read from the graph, so
it is the user's choice (docs/onnx-import.md).

A kind computed by one attribute-free ONNX operator plugs in through the
`onnx_op` of its layer module, which the exporter writes too; any other needs
one function in OPS (onnx_import_ops.py, onnx_import_activations.py), as
Clip's min and max (inputs from opset 11) -> `relu6` or `clip(min=, max=)`.

The conventions that differ (the inverse of onnx_export's): ONNX LRN divides
alpha by the window, netdsl does not; netdsl's average pool divides by the
real elements a window covers (count_include_pad=0), so count_include_pad=1
is accepted only without padding.

The .net text and the .npz are written to temporary files and renamed, so a
failure leaves nothing behind.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np

from ..errors import NetDslError
from ..layers import REGISTRY
from .onnx_import_blocks import Gathered, Row, gather
from .onnx_import_fuse import fuse
from .onnx_import_graph import Graph, _unsupported, folded
from .onnx_import_ops import OPS


class Names:
    """Valid, unique .net names from ONNX node names (`/layer1/layer1.0/conv1/Conv` -> layer1_layer1_0_conv1)."""
    RESERVED = {"image", "label", "loss", "scores", "network", "input", "param", "block", "defaults", "train",
                "tower", "on", "all", "true", "false", "none", "same"}

    def __init__(self):
        self.used: set[str] = set()

    def new(self, raw: str) -> str:
        parts = [p for p in raw.split("/") if p]
        op = parts[-1] if len(parts) > 1 and re.fullmatch(r"[A-Z][A-Za-z]*(_\d+)?", parts[-1]) else None
        base = self._clean("_".join(parts[:-1] if op else parts))
        if op and self._valid(base) in self.used:  # `/layer1/Relu` beside `/layer1/conv1/Conv`: keep the op
            base = self._clean("_".join(parts[:-1] + [op.lower()]))
        return self._unique(self._valid(base))

    @staticmethod
    def _clean(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or "layer"

    def _valid(self, base: str) -> str:
        return "n_" + base if base[0].isdigit() or base in self.RESERVED else base

    def _unique(self, base: str) -> str:
        name, i = base, 1
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name


def _shape_text(shape) -> str:
    return " x ".join(str(s) for s in shape)


def convert(model, network: str, flat: bool = False, loss: bool = True):
    """(.net text, checkpoint arrays) of an onnx.ModelProto: a classifier whose class scores
    feed a `softmax_loss` (a final Softmax dropped), or with `loss=False` the inference graph
    as it is, whose final tensors are the model's outputs (written flat)."""
    g, kept = folded(model)
    shapes = {name: shape[1:] for name, shape in g.shapes.items()}
    inputs = [i for i in model.graph.input if i.name not in g.consts]
    if len(inputs) != 1:
        raise NetDslError(f"the model has {len(inputs)} inputs; netdsl networks have one image input")
    image = inputs[0].name
    image_shape = shapes.get(image, [])
    if len(image_shape) != 3 or not all(isinstance(s, int) and s > 0 for s in image_shape):
        raise NetDslError(f"input `{image}` is not a fixed C x H x W image (it is {image_shape})",
                          hint="export with a fixed-size example input")
    names = Names()
    tensor_name = {image: "image"}
    rows: list[Row] = []
    outputs = [o.name for o in model.graph.output]
    nodes = fuse(g, kept, outputs)
    read = {g.name(t) for node in nodes for t in node.input}
    for node in nodes:
        if loss and node.op_type == "Softmax" and node.output[0] in outputs and node.output[0] not in read:
            # the probabilities: the loss stands for them, and the scores are what they were computed from
            g.alias[node.output[0]] = g.name(node.input[0])
            continue
        mapper = OPS.get(node.op_type)
        if mapper is None:
            raise _unsupported(node, f"op {node.op_type} has no netdsl layer kind")
        layer = mapper(g, node)
        if len([o for o in node.output if o]) > 1 and node.op_type != "Dropout":
            raise _unsupported(node, "more than one output cannot be expressed")
        sources = []
        for t in layer.inputs:
            t = g.name(t)
            if t not in tensor_name:
                raise _unsupported(node, f"its input `{t}` is neither a layer's output nor the image")
            sources.append(tensor_name[t])
        name = names.new(node.name or node.output[0])
        tensor_name[node.output[0]] = name
        rows.append(Row(name, layer.kind, sources, list(layer.args), layer.params, layer.state,
                        node.name or node.output[0]))
    header = [f"# Imported from ONNX ({model.producer_name or 'unknown producer'}, opset "
              f"{max((o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')), default='?')}).",
              f"network {network}", "", f"input image : {_shape_text(image_shape)}"]
    flat_rows = Gathered([], [(r.name, r.text(), r.name) for r in rows], {}, {})
    if not loss:  # every output is a layer's; the final ones are the network's outputs
        _outputs_known(g, outputs, tensor_name)
        return _written(network, header + [""], rows, None, flat_rows, strict=False)
    scores = _scores(g, outputs, tensor_name)
    header += [f"input label : {_classes(scores[0], shapes)} classes", ""]
    for stacks in ([] if flat else [True, False]):
        gathered = gather(rows, scores[1], REGISTRY, stacks)
        if gathered is None:
            break
        try:  # a file with blocks that netdsl refuses, or whose names miss the weights', is written plainer
            return _written(network, header, rows, scores[1], gathered, strict=True)
        except NetDslError:
            pass
    return _written(network, header, rows, scores[1], flat_rows, strict=False)


def _written(network: str, header: list[str], rows: list[Row], scores: str | None, gathered: Gathered, strict: bool):
    """(.net text, checkpoint arrays) of the statements, built by netdsl first (its shapes are the comments);
    `scores` feed the loss, none without one."""
    arrays = {}
    for row in rows:
        name = gathered.renamed.get(row.name, row.name)
        arrays |= {f"param/{name}.{k}": np.asarray(v, np.float32) for k, v in row.params.items()}
        arrays |= {f"state/{name}.{k}": np.asarray(v, np.float32) for k, v in row.state.items()}
    blocks = [line for block in gathered.blocks for line in (*block.splitlines(), "")]
    statements = [text for _, text, _ in gathered.statements]
    loss = [f"loss = softmax_loss({gathered.refs.get(scores, scores)}, label)"] if scores else []
    body = blocks + statements + loss + [""]
    net = _built(network, "\n".join(header + body)) if strict else _checked(network, "\n".join(header + body))
    if strict and _weight_shapes(net) != {k: v.shape for k, v in arrays.items()}:
        raise NetDslError("the layers inside the blocks are not named as their weights")
    width = max((len(text) for text in statements), default=0)
    body[len(blocks):len(blocks) + len(statements)] = [
        f"{text:<{width}}   # {_shape_text(net.graph.nodes[node].shape)}" for _, text, node in gathered.statements]
    arrays |= {"meta/steps": np.int64(0), "meta/lr": np.float64(0.0), "meta/seed": np.int64(0)}
    return "\n".join(header + body), arrays


def _weight_shapes(net) -> dict[str, tuple]:
    """`param/LAYER.NAME` and `state/LAYER.NAME` -> shape, of every layer of a built network."""
    from ..graph_ops import ordered_inputs
    g, shapes = net.graph, {}
    for node in g:
        d = g.nodes[node]
        if not d.is_layer or d.kind not in REGISTRY:
            continue
        in_shapes = [tuple(g.nodes[u].shape) for u in ordered_inputs(g, node)]
        shapes |= {f"param/{node}.{k}": tuple(s) for k, s in d.params.items()}
        shapes |= {f"state/{node}.{k}": tuple(s) for k, s in REGISTRY[d.kind].state_shapes(d.args, in_shapes).items()}
    return shapes


def _built(network: str, text: str):
    from ..train.launch import network_from_source
    return network_from_source(text, f"{network}.net", {})


def _checked(network: str, text: str):
    """The written network, built by netdsl itself: its shapes are the comments, and a file
    netdsl would refuse is never written."""
    try:
        return _built(network, text)
    except NetDslError as err:
        raise NetDslError(f"the imported network is not valid netdsl: {err.message}",
                          hint="please report it with the model; the importer should have refused the op") from None


def _classes(scores: str, shapes: dict) -> int:
    """The class count of a classifier's scores: a vector (or C x 1 x 1, as a global pool gives)."""
    out_shape = shapes.get(scores) or ["?"]
    classes = out_shape[0]
    if any(side != 1 for side in out_shape[1:]) or not isinstance(classes, int):
        raise NetDslError(f"output `{scores}` is {_shape_text(out_shape)} per image, not a vector of class scores",
                          hint="export the model with its classifier (a Flatten and a Gemm) at the end, or "
                          "import it as it is, without a loss: `netdsl import --no-loss`")
    return classes


def _outputs_known(g: Graph, outputs, tensor_name) -> None:
    """Each output of the model is a layer's (not the image itself, nor a folded constant)."""
    for o in outputs:
        if g.name(o) not in tensor_name or tensor_name[g.name(o)] == "image":
            raise NetDslError(f"output `{o}` is not computed by any layer", hint="netdsl networks compute their "
                              "outputs from the image; export the model without constant outputs")


def _scores(g: Graph, outputs, tensor_name) -> tuple[str, str]:
    """(ONNX tensor, .net name) of the class scores: the one output that is not a softmax of another."""
    candidates = list(dict.fromkeys(g.name(o) for o in outputs if g.name(o) in tensor_name))
    if len(candidates) != 1:
        raise NetDslError(f"the model has {len(candidates)} class-score outputs ({', '.join(candidates)}); "
                          "netdsl import takes one (a softmax of it may be a second)")
    t = candidates[0]
    return t, tensor_name[t]


def _write_both(files: list[tuple[Path, object]]) -> None:
    """Every file to a temporary name beside it first, then all renamed: a failure while
    writing (a full disk) leaves neither file, nor a temporary one."""
    temps = []
    try:
        for path, write in files:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temps.append(tmp)
            with os.fdopen(fd, "wb") as f:
                write(f)
        for (path, _), tmp in zip(files, temps):
            os.replace(tmp, path)
    except BaseException:
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise


def import_onnx(model_path: str, output: str | None = None, weights: str | None = None,
                flat: bool = False, loss: bool = True) -> tuple[Path, Path]:
    try:
        import onnx
    except ImportError:
        raise NetDslError("importing needs the onnx package", hint='pip install "netdsl[onnx]"') from None
    source = Path(model_path)
    if not source.is_file():
        raise NetDslError(f"no ONNX model at {source}")
    try:
        model = onnx.load(str(source))
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a user error
        raise NetDslError(f"{source} is not an ONNX model ({type(exc).__name__})") from None
    net_path = Path(output) if output else source.with_suffix(".net")
    ckpt_path = Path(weights) if weights else net_path.with_suffix(".npz")
    network = re.sub(r"[^A-Za-z0-9_]", "_", net_path.stem) or "imported"
    network = "n_" + network if network[0].isdigit() else network
    text, arrays = convert(model, network, flat, loss)  # everything that can fail, before anything is written
    if net_path.resolve() == ckpt_path.resolve():
        raise NetDslError(f"the network and its weights would both be {net_path}", hint="name another --weights")
    for path in (net_path, ckpt_path):
        if not path.parent.is_dir():
            raise NetDslError(f"cannot write {path}: no folder {path.parent}")
    _write_both([(ckpt_path, lambda f: np.savez(f, **arrays)), (net_path, lambda f: f.write(text.encode()))])
    return net_path, ckpt_path
