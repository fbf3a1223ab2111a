"""Activations applied in a matrix product's epilogue (netdsl/codegen/activations.py;
netdsl/passes/epilogues.py decides where). Every example of every layer kind
with such an epilogue, with the ReLU fused, and the first examples of a
convolution, a grouped one and a fully connected layer with every other
activation the epilogue offers (each of that activation's own examples, so
arguments are written in too), run their forward pass under the emulator in
TF32 and BF16 and must equal the activation's reference applied to the
float64 layer reference, at the products' tolerance (3u, as
test_mma_layers.py). The backward kernels are the unfused layer's, tested
there."""
from __future__ import annotations

import shutil
from dataclasses import dataclass

import numpy as np
import pytest
from cuda_emulator import Emulator
from kernel_cases import BATCHES, KernelCase
from kernel_checks import fresh_buffers, reference
from test_mma_gemm import UNIT_ROUNDOFF

from netdsl.codegen import complete_args, epilogue_activation, render_layer, render_module
from netdsl.layers import REGISTRY


@dataclass(frozen=True)
class FusedCase(KernelCase):
    activation: str = ""
    example: int = 0  # of the activation's examples: its arguments

    def __str__(self) -> str:
        return f"{self.kind}+{self.activation}{self.example}-{self.index}-b{self.batch}"

    @property
    def node(self) -> str:
        return f"test.{self.kind}_{self.activation}{self.example}_{self.index}@b{self.batch}"

    @property
    def activation_args(self) -> dict:
        return complete_args(self.activation, REGISTRY[self.activation].examples[self.example].args)

    @property
    def fused(self):
        return epilogue_activation(self.activation, self.activation_args)

    def render(self, target: str, precision: str = "fp32"):
        # the case's data is laid out by the C rendering, which has no epilogue to fuse into
        activation = self.fused if target == "cuda" else None
        out_shape = self.layer.output_shape(self.args, self.in_shapes)
        return render_layer(self.kind, self.node, 100 + self.index, self.args, self.in_shapes, out_shape,
                            self.batch, target, precision, activation=activation)


def _fusable() -> list[tuple[str, int]]:
    """(activation, example) for every activation example the epilogue can apply."""
    return [(kind, i) for kind, layer in sorted(REGISTRY.items()) if "activation" in layer.traits
            for i, example in enumerate(layer.examples) if epilogue_activation(kind, example.args)]


HOSTS = [kind for kind, layer in sorted(REGISTRY.items()) if layer.activation_epilogue]
CASES = [FusedCase(kind, index, batch, "relu") for kind in HOSTS
         for index in range(len(REGISTRY[kind].examples)) for batch in BATCHES]
_FIRST = {kind: [0] + [i for i, e in enumerate(REGISTRY[kind].examples) if e.args.get("groups", 1) > 1][:1]
          for kind in HOSTS}
CASES += [FusedCase(kind, index, 3, activation, example) for activation, example in _fusable()
          if activation != "relu" for kind in HOSTS for index in _FIRST[kind]]


def activated(case, y: np.ndarray) -> np.ndarray:
    act = REGISTRY[case.activation]
    return act.forward(case.activation_args, {}, [y], case.context())[0]


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("no g++ to emulate CUDA with")
    folder = tmp_path_factory.mktemp("epilogue_activations")
    found = {}
    for precision in UNIT_ROUNDOFF:
        sources = {str(case): case.render("cuda", precision) for case in CASES}
        emulator = Emulator(render_module(list(sources.values()), "cuda"), folder, ())
        found |= {(name, precision): (emulator.launch, source) for name, source in sources.items()}
    return found


def test_what_is_offered():
    assert {case.kind for case in CASES} >= {"conv", "fc"}
    offered = {activation for activation, _ in _fusable()}
    assert offered >= {"relu", "tanh", "sigmoid", "elu", "leaky_relu", "relu6", "clip"}
    # their backward reads the input, which the fused pair no longer keeps
    assert not offered & {"gelu", "silu", "hard_swish"}


@pytest.mark.parametrize("precision", tuple(UNIT_ROUNDOFF))
@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_forward_epilogue_applies_the_activation(emulated, case, precision):
    run, source = emulated[str(case), precision]
    # one product computes the output: no bias pass, no activation pass, no regrouping
    assert [k.shape for k in source.forward] == ["gemm"], [k.purpose for k in source.forward]
    assert source.forward[0].name.endswith(f"_{case.fused.tag}"), source.forward[0].name
    buffers = fresh_buffers(source, case)
    for kernel in source.forward:
        run(kernel, buffers, case.scalars())
    y, _, _ = reference(case, np.float64)
    want = activated(case, y)
    got = buffers["y"].reshape(np.shape(y))
    # The product's error is within 3u of the unactivated output's norm (test_mma_layers.py), and
    # every activation offered here changes values by at most as much as their inputs change
    # (Lipschitz constant at most 1), so that bound holds after it: the activation's own norm can
    # be far smaller (a ReLU zeroing most outputs), which makes a relative bound on it meaningless.
    error = np.linalg.norm((got - want).ravel()) / np.linalg.norm(y.ravel())
    assert error <= 3 * UNIT_ROUNDOFF[precision], f"{case} y: error {error:.3g} of the product's norm"
    # where the activation clearly changes the output, the result follows it, not the product
    changed = np.abs(want - y) > 1e-2 * np.abs(y).max()
    if case.activation != "identity":
        assert changed.any(), "no output the activation changes: the case cannot see it"
    assert (np.abs(got - want) < np.abs(got - y))[changed].all()


@pytest.mark.parametrize("target, precision", [("cuda", "fp32"), ("c", "fp32"), ("c", "tf32")])
def test_a_fused_activation_needs_the_product_epilogue(target, precision):
    case = CASES[0]
    out_shape = case.layer.output_shape(case.args, case.in_shapes)
    with pytest.raises(ValueError, match=f"no {case.activation} epilogue|products only|no implicit-GEMM"):
        render_layer(case.kind, case.node, 1, case.args, case.in_shapes, out_shape, case.batch, target,
                     precision, activation=case.fused)
