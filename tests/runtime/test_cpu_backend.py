"""The cpu backend (generated C) against the numpy reference executor.

For a one-layer network per example of every registered kind, and for every
example network: each layer's forward output, the loss and every parameter
gradient of a training pass (dropout on), and the weights after three SGD
steps, with the same seed, so dropout masks and initial weights agree bit
for bit and any difference is float32 rounding.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl.codegen import nvcc
from netdsl.compiler import compile_graph
from netdsl.graph_ops import ordered_inputs
from netdsl.layers import REGISTRY
from netdsl.runtime import cbuild
from netdsl.runtime.base import NonFiniteError
from netdsl.runtime.cpu import Executor
from netdsl.runtime.reference import ReferenceExecutor
from netdsl.runtime.select import c_compiler_available
from netdsl.passes import plan_step
from netdsl.codegen import render_module
from netdsl.step import Copy, TensorRef
from backend_comparison import spread_weights
from tolerances import assert_close

pytestmark = pytest.mark.skipif(not c_compiler_available() or cbuild.find_blas() is None,
                                reason="the cpu backend needs a C compiler and a CBLAS library")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Whole networks in float32: a few ulps per layer, compounded over a dozen
# layers and three updates of every weight.
NETWORK_RTOL = 1e-4
STEPS = 3


def example_text(kind: str, index: int) -> str:
    """A network around one example of `kind`: each input made by a layer with weights (a
    1x1 convolution, or fully connected for vectors), so the kind's input gradients reach
    a parameter gradient the test compares, then fully connected scores and a loss."""
    layer, example = REGISTRY[kind], REGISTRY[kind].examples[index]
    lines = ["defaults conv, fc { init = gauss(0.3); bias = 0.1 }",
             "train { optimizer = sgd(lr=0.05, momentum=0.9, weight_decay=0.001) }"]
    first = example.in_shapes[0]
    image = first if len(first) == 3 else (2, 3, 3)
    lines.append(f"input image : {' x '.join(map(str, image))}")
    if "loss" in layer.traits:  # C x 1 x 1 scores from a 1x1 convolution, vectors from fully connected
        make = f"conv(image, {first[0]}, size=1)" if len(first) == 3 else f"fc(image, {first[0]})"
        lines += [f"input label : {first[0]} classes", f"scores = {make}",
                  f"loss = {kind}(scores, label)"]
        return "\n".join(lines)
    names = []
    for i, shape in enumerate(example.in_shapes):
        make = f"conv(image, {shape[0]}, size=1)" if len(shape) == 3 else f"fc(image, {shape[0]})"
        lines.append(f"x{i} = {make}")
        names.append(f"x{i}")
    args = ", ".join(names + [f"{k}={_literal(v)}" for k, v in example.args.items()])
    lines += [f"h = {kind}({args})", "input label : 3 classes", "scores = fc(h, 3)",
              "loss = softmax_loss(scores, label)"]
    return "\n".join(lines)


def _literal(value) -> str:
    if isinstance(value, str):  # a name, as `region=within`
        return value
    return ("true" if value else "false") if isinstance(value, bool) else repr(value)


def data(graph, batch: int, seed: int = 0):
    node = next(n for n, d in graph.nodes(data=True) if d.is_input and not d.label)
    classes = next(d.shape[0] for _, d in graph.nodes(data=True) if d.is_input and d.label)
    gen = np.random.default_rng(seed)
    images = gen.standard_normal((batch,) + tuple(graph.nodes[node].shape)).astype(np.float32)
    return images, gen.integers(0, classes, batch)


def restart(executor, weights: dict) -> None:
    """Back to step 0 with the given weights and no momentum."""
    executor.set_params(weights)
    for velocity in executor.velocity.values():
        velocity[...] = 0
    executor.steps = 0


def pair(graph, batch: int, seed: int = 5):
    """Every tensor kept apart (keep_values), so each layer's output can be compared."""
    cpu, ref = Executor(graph, batch, seed, keep_values=True), ReferenceExecutor(graph, batch, seed)
    for name in ref.params:
        np.testing.assert_array_equal(cpu.params[name], ref.params[name], err_msg=f"initial {name}")
    return cpu, ref


def compare(cpu: Executor, ref: ReferenceExecutor, spread: bool = False) -> None:
    """Everything a training step computes, cpu against reference, from step 0."""
    if spread:
        weights = spread_weights(ref.params)
        restart(cpu, weights)
        restart(ref, weights)
    images, labels = data(ref.g, ref.batch)

    _, values, _ = cpu._forward(images, labels, True)
    _, expected, _ = ref._forward(images, labels, True)
    for node in ref.order:  # graph order: the first layer that differs is the one reported
        if node in expected:
            assert_close(values[node], expected[node], NETWORK_RTOL, f"{node} output")

    loss, grads = cpu.gradients(images, labels)
    ref_loss, ref_grads = ref.gradients(images, labels)
    assert_close(loss, ref_loss, NETWORK_RTOL, "loss")
    assert grads.keys() == ref_grads.keys()
    largest = max(float(np.linalg.norm(g)) for g in ref_grads.values())
    noise = set()
    for name in ref_grads:
        if np.linalg.norm(ref_grads[name]) < 1e-5 * largest:
            noise.add(name)
            # zero but for rounding (a bias before batchnorm, whose mean it removes): both
            # sides are noise, so only their size is compared
            assert np.linalg.norm(grads[name]) < 1e-5 * largest, f"gradient of {name} is not ~0"
            continue
        assert_close(grads[name], ref_grads[name], NETWORK_RTOL, f"gradient of {name}")

    start = {name: value.copy() for name, value in ref.params.items()}
    for _ in range(STEPS):
        metrics, ref_metrics = cpu.step(images, labels), ref.step(images, labels)
        assert metrics["loss"] == pytest.approx(ref_metrics["loss"], rel=NETWORK_RTOL, abs=1e-6)
    for name in ref.params:
        # the change, not just the weights: a wrong update hides in weights it barely moves;
        # but a change far below the weight (batchnorm's scale near 1, a bias whose gradient is
        # noise) is resolved only to the weight's rounding, so two float32 ulps of it are allowed
        if name in noise:  # moved by weight decay and noise alone
            np.testing.assert_allclose(cpu.params[name], ref.params[name], rtol=1e-6, atol=1e-7, err_msg=name)
            continue
        change, expected = cpu.params[name] - start[name], ref.params[name] - start[name]
        if np.linalg.norm(change - expected) > np.linalg.norm(2 * np.spacing(np.abs(ref.params[name]))):
            assert_close(change, expected, NETWORK_RTOL, f"{name} after {STEPS} steps, change")
    assert cpu.steps == ref.steps == STEPS


KIND_EXAMPLES = [(kind, i) for kind in sorted(REGISTRY) for i in range(len(REGISTRY[kind].examples))]


@pytest.mark.parametrize("kind, index", KIND_EXAMPLES, ids=[f"{k}-{i}" for k, i in KIND_EXAMPLES])
def test_each_layer_example_matches_the_reference(kind, index):
    graph = compile_graph(text=example_text(kind, index), file=f"{kind}-{index}.net", training=True)
    compare(*pair(graph, batch=3))


NETS = {"lenet.net": 1, "cifar.net": 3}  # batch 1 and an odd batch; AlexNet below
# At batch 2 of noise the paper's rate 0.1 fits the two images within three steps
# (loss 2.27 -> 0.56), and from there float32 rounding grows about 100x a step.
OVERRIDES = {"resnet20-cifar.net": {"optimizer.lr": "0.01"}}


# ImageNet-sized nets are left out: AlexNet has its own tests below, the others their torch twins
# (test_resnet18.py, test_vgg16.py, test_zfnet.py, test_resnet50.py, test_mobilenet_v2.py, test_googlenet.py).
IMAGENET = ("alexnet", "resnet18", "vgg16", "zfnet", "resnet50", "mobilenet_v2", "googlenet")
BATCH_NORM_NETS = ("resnet20", "nin", "se_resnet")  # a few seconds each: with the slow tests


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n.startswith(BATCH_NORM_NETS) else n
                                  for n in sorted(p.name for p in EXAMPLES.glob("*.net")
                                                  if not p.name.startswith(IMAGENET))])
def test_example_network_matches_the_reference(name):
    graph = netdsl.load(EXAMPLES / name, overrides=OVERRIDES.get(name)).graph
    batch = NETS.get(name, 2)
    compare(*pair(graph, batch, seed_without_relu_ties(graph, batch)))


def seed_without_relu_ties(graph, batch: int, first: int = 5, tries: int = 10) -> int:
    """Of ten weight seeds, the one whose ReLU inputs stay furthest from 0.

    Batch norm makes ReLU inputs standard normal, so among a ResNet's 300,000
    of them one can sit within a rounding of 0 (-1.07e-6 was found with seed
    5): the backends then disagree on its sign, that element's whole gradient
    flips, and batch norm's backward spreads the difference over its channel
    (0.6% of a gradient). Such a seed tests nothing but the tie. The margin is
    each layer's smallest |input| over its largest; without ReLUs, `first`."""
    images, labels = data(graph, batch)
    relus = [n for n in graph if graph.nodes[n].kind == "relu" and graph.nodes[n].is_layer]
    if not relus:
        return first

    def margin(seed):
        _, values, _ = ReferenceExecutor(graph, batch, seed)._forward(images, labels, True)
        inputs = [values[u] for n in relus for u in ordered_inputs(graph, n) if u in values]
        return min(float(np.abs(v).min() / max(np.abs(v).max(), 1e-30)) for v in inputs)

    return max(range(first, first + tries), key=margin)


ALEXNET_LR = {"optimizer.lr": "0.001"}  # batch 2 of noise: the paper's 0.01 overshoots


@pytest.fixture(scope="module")
def alexnet():
    """The two-GPU AlexNet at batch 2, cpu and reference (built once: initialising 61M
    weights takes seconds per executor)."""
    return pair(netdsl.load(EXAMPLES / "alexnet.net", overrides=ALEXNET_LR).graph, 2)


@pytest.mark.slow
def test_two_gpu_alexnet_matches_the_reference(alexnet):
    """Both towers on one host: the numbers are those of the reference, which knows no devices."""
    compare(*alexnet, spread=True)


@pytest.mark.slow
def test_one_gpu_alexnet_matches_the_reference():
    compare(*pair(netdsl.load(EXAMPLES / "alexnet-1gpu.net", overrides=ALEXNET_LR).graph, 2), spread=True)


@pytest.mark.slow
def test_results_do_not_depend_on_the_device_mapping(alexnet):
    """The towers share tensors across each transfer on one host; kept apart with copies,
    as on two GPUs, every number is the same bit for bit."""
    shared = alexnet[0]
    apart = Executor(shared.g, 2, shared.seed, copy_transfers=True)
    assert not any(isinstance(s, Copy) for s in shared.plan.steps)
    copies = [s for s in apart.plan.forward if isinstance(s, Copy)]
    assert {s.node for s in copies} >= {"conv2.maxpool@gpu0->gpu1", "fc6.dropout@gpu1->gpu0"}
    weights = spread_weights(shared.params)
    restart(shared, weights)
    restart(apart, weights)
    images, labels = data(shared.g, 2)
    for _ in range(2):
        a, b = shared.step(images, labels), apart.step(images, labels)
        assert a == b
    for name in shared.params:
        np.testing.assert_array_equal(shared.params[name], apart.params[name], err_msg=name)


def test_smaller_batches_are_padded_for_prediction():
    """A last, smaller batch gives the scores (and dropout masks) a batch of its size would."""
    graph = compile_graph(text=example_text("dropout", 0), training=True)
    cpu, ref = Executor(graph, 4, seed=2), ReferenceExecutor(graph, 3, seed=2)
    images, labels = data(graph, 3)
    assert_close(cpu.forward(images, train=True), ref.forward(images, train=True), NETWORK_RTOL, "scores")
    metrics, expected = cpu.evaluate(images, labels), ref.evaluate(images, labels)
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=NETWORK_RTOL)
    with pytest.raises(ValueError, match="batches of 4"):
        cpu.step(images, labels)


def test_kernels_read_the_parameter_arrays_and_gradients_are_copies():
    graph = netdsl.load(EXAMPLES / "lenet.net").graph
    cpu = Executor(graph, 2, seed=0)
    images, labels = data(graph, 2)
    before = cpu.forward(images)
    cpu.set_params({"out.bias": np.full(10, 3.0, np.float32)})
    np.testing.assert_allclose(cpu.forward(images) - before, 3.0, rtol=1e-5)
    _, first = cpu.gradients(images, labels)
    kept = {k: v.copy() for k, v in first.items()}
    cpu.gradients(images + 1, labels)
    for name in kept:
        np.testing.assert_array_equal(first[name], kept[name], err_msg=f"{name} changed under the caller")


def test_guard_names_the_first_non_finite_layer():
    graph = netdsl.load(EXAMPLES / "lenet.net").graph
    cpu = Executor(graph, 2, seed=0)
    cpu.params["f5.fc.weight"][0, 0] = np.inf
    images, labels = data(graph, 2)
    with pytest.raises(NonFiniteError, match="output of `f5.fc`"):
        cpu.step(images, labels)
    unguarded = Executor(graph, 2, seed=0, guard=False)
    unguarded.params["f5.fc.weight"][0, 0] = np.nan
    unguarded.forward(images)  # no check, no error


def test_input_gradients_of_the_image_are_never_computed():
    """conv1's backward runs only what its weight gradients need: the kernels that would
    only produce the image's gradient are dropped (a later conv keeps its own)."""
    cpu = Executor(netdsl.load(EXAMPLES / "lenet.net").graph, 1)
    kernels = [s.kernel for s in cpu.plan.backward if s.node == "c1.conv:backward"]
    assert kernels and all(b.role != "grad_input" for k in kernels for b in k.buffers)
    written = [s.kernel for s in cpu.plan.backward if s.node == "c3.conv:backward"]
    assert any(b.role == "grad_input" for k in written for b in k.buffers)
    assert not [t for t in cpu.plan.tensors if t.role == "discard"]


def _written_before_read(program) -> None:
    """Every tensor a step reads exists by then: written earlier in its pass, by an earlier
    pass, or given (inputs, weights, momentum, the loss's seed gradient, the update's gate)."""
    given = ("param", "momentum", "seed", "status")
    ready = set(program.inputs.values()) | {t for t in program.tensors if t.role in given}
    for name in ("forward", "backward", "update"):
        for step in getattr(program, name):
            missing = step.reads - ready
            assert not missing, f"{name}: {step.node} reads {sorted(missing)} before anything writes it"
            ready |= step.writes


def test_transfers_are_shared_on_one_host_and_copied_between_devices():
    graph = netdsl.load(EXAMPLES / "alexnet.net").graph
    transfers = {n: next(iter(graph.predecessors(n))) for n, d in graph.nodes(data=True)
                 if d.is_layer and "transfer" in REGISTRY[d.kind].traits}
    assert len(transfers) == 7
    shared = plan_step(graph, 1, "c", placement=lambda device: "host")
    apart = plan_step(graph, 1, "c")
    for program in (shared, apart):
        _written_before_read(program)
    assert not [s for s in shared.forward + shared.backward if isinstance(s, Copy)]
    for transfer, source in transfers.items():
        assert shared.values[transfer] == shared.values[source]
    forward = {s.node for s in apart.forward if isinstance(s, Copy)}
    backward = {s.node for s in apart.backward if isinstance(s, Copy)}
    assert forward == set(transfers) | {"image"}  # gpu1's conv1 reads its own copy of the batch
    assert backward == {f"{t}:backward" for t in transfers}


@pytest.mark.slow
@pytest.mark.skipif(not nvcc.available(), reason="nvcc is not on PATH")
def test_the_whole_step_compiles_for_cuda(tmp_path):
    """Gradient sums and SGD updates included, as the cuda executor loads it."""
    plan = plan_step(netdsl.load(EXAMPLES / "alexnet.net").graph, 2, "cuda")
    source = tmp_path / "step.cu"
    source.write_text(render_module(plan.modules, "cuda"))
    nvcc.compile_cubins(source, tmp_path, archs=("sm_80",))


def test_reused_memory_gives_the_same_bits_and_fits_the_plan():
    """The memory plan's reuse (layers sharing bytes, scratch included) changes no number:
    three steps with every tensor apart and with the plan's arena agree bit for bit, and
    the arena allocated is the one the plan (and `netdsl compile`) reports."""
    graph = netdsl.load(EXAMPLES / "cifar.net").graph
    apart, reused = Executor(graph, 3, 1, keep_values=True), Executor(graph, 3, 1)
    arena = reused.plan.arenas["host"]
    assert reused.arenas["host"].nbytes == arena.nbytes < apart.plan.arenas["host"].nbytes
    shared = [o for r, o in arena.offsets.items() if not r.persistent]
    assert len(shared) > len(set(shared)), "no two tensors share bytes"
    images, labels = data(graph, 3)
    for _ in range(STEPS):
        assert apart.step(images, labels) == reused.step(images, labels)
    for name in apart.params:
        np.testing.assert_array_equal(apart.params[name], reused.params[name], err_msg=name)


def test_parameters_are_views_of_the_arena():
    """The weights the kernels update are the arrays `ex.params` holds: nothing to sync."""
    cpu = Executor(netdsl.load(EXAMPLES / "lenet.net").graph, 2)
    weight = cpu.params["f5.fc.weight"]
    np.testing.assert_array_equal(cpu.view(TensorRef("f5.fc", "param", "weight")), weight.reshape(-1))
    assert np.shares_memory(weight, cpu.arenas["host"])
