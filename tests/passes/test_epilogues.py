"""Which ReLUs the lowering fuses into the convolution or fully connected
layer before them (netdsl/passes/epilogues.py): on cuda with tensor-core
products, a ReLU that is its layer's only reader runs in the product's
epilogue and has no forward kernel of its own; anywhere else, or where the
graph needs the layer's output for something else, nothing changes."""
from __future__ import annotations

from pathlib import Path

import pytest

from netdsl.compiler import compile_graph
from netdsl.passes import plan_step
from netdsl.step import Call, TensorRef

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def forward_kinds(plan) -> dict[str, list[str]]:
    """Each forward node's kernel purposes."""
    found: dict[str, list[str]] = {}
    for step in plan.forward:
        if isinstance(step, Call):
            found.setdefault(step.node, []).append(step.kernel.purpose)
    return found


def fused_products(plan) -> set[str]:
    """The forward nodes whose product applies an activation."""
    variants = {v.name: v for source in plan.modules for v in source.gemms}
    return {s.node for s in plan.forward if isinstance(s, Call) and s.kernel.shape == "gemm"
            and variants[s.kernel.name].activation is not None}


def small(body: str):
    text = f"""
network small
input image : 3 x 10 x 10
input label : 4 classes
{body}
loss = softmax_loss(scores, label)
"""
    return compile_graph(text=text, file="small.net", training=True)


@pytest.fixture(scope="module")
def alexnet():
    return compile_graph(EXAMPLES / "alexnet.net", training=True)


def test_every_alexnet_product_applies_its_relu(alexnet):
    plan = plan_step(alexnet, 4, "cuda", precision="tf32")
    layers = {f"conv{i}.conv@gpu{t}" for i in range(1, 6) for t in (0, 1)}
    layers |= {f"fc{i}.fc@gpu{t}" for i in (6, 7) for t in (0, 1)}
    assert fused_products(plan) == layers
    kinds = forward_kinds(plan)
    for layer in layers:
        act = layer.replace(".conv@", ".act@").replace(".fc@", ".act@")
        assert act not in kinds, f"{act} runs a kernel of its own"
        # the ReLU's output is the layer's tensor; its backward reads it and still runs
        assert plan.values[act] == TensorRef(layer, "value") and layer not in plan.values
        assert any(s.node == f"{act}:backward" for s in plan.backward)
    # the output layer has no ReLU, but its product adds the bias: no bias_fill pass
    assert kinds["fc8"] == ["forward_product"]


@pytest.mark.parametrize("target, precision", [("cuda", "fp32"), ("c", "fp32")])
def test_without_the_tensor_core_epilogue_nothing_is_fused(alexnet, target, precision):
    plan = plan_step(alexnet, 2, target, precision=precision)
    assert not fused_products(plan)
    kinds = forward_kinds(plan)
    assert kinds["conv1.act@gpu0"] == kinds["fc6.act@gpu0"] == ["forward"]


def test_a_caller_reading_every_layer_gets_the_convolutions_output(alexnet):
    plan = plan_step(alexnet, 2, "cuda", precision="bf16", fuse=False)
    assert not fused_products(plan) and "conv3.conv@gpu1" in plan.values


@pytest.mark.parametrize("body, fused", [
    # the plain case
    ("c = conv(image, 4, size=3, pad=1) -> relu\nscores = fc(c, 4)", {"c.conv"}),
    ("h = fc(image, 6) -> relu\nscores = fc(h, 4)", {"h.fc"}),
    # a second reader of the convolution's output needs it before the ReLU
    ("c = conv(image, 4, size=3, pad=1)\nr = relu(c)\nj = concat(r, c)\nscores = fc(j, 4)", set()),
    # other activations whose backward reads only their output fuse as well
    ("c = conv(image, 4, size=3, pad=1) -> tanh\nscores = fc(c, 4)", {"c.conv"}),
    ("c = conv(image, 4, size=3, pad=1) -> leaky_relu(0.2)\nscores = fc(c, 4)", {"c.conv"}),
    # gelu's backward reads its input, which the fused pair would not keep
    ("c = conv(image, 4, size=3, pad=1) -> gelu\nscores = fc(c, 4)", set()),
    # a ReLU that does not follow a convolution
    ("c = maxpool(image, 2) -> relu\nscores = fc(c, 4)", set()),
    # a residual sum: the ReLU after the add is not the convolution's
    ("c = conv(image, 3, size=3, pad=1)\ns = add(c, image) -> relu\nscores = fc(s, 4)", set()),
])
def test_what_the_graph_allows(body, fused):
    assert fused_products(plan_step(small(body), 2, "cuda", precision="tf32")) == fused
