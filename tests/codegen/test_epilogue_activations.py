"""Activations applied in a matrix product's epilogue (the layer kinds'
`epilogue_activations`; netdsl/passes/epilogues.py decides where): every
example of every such kind, rendered with the activation fused, runs its
forward pass under the emulator in TF32 and BF16 and must equal the
activation's own reference applied to the float64 layer reference, at the
products' tolerance (3u, as test_mma_layers.py). The backward kernels are the
unfused layer's, tested there."""
from __future__ import annotations

import shutil
from dataclasses import dataclass

import numpy as np
import pytest
from cuda_emulator import Emulator
from kernel_cases import BATCHES, KernelCase
from kernel_checks import fresh_buffers, reference
from test_mma_gemm import UNIT_ROUNDOFF
from tolerances import assert_close

from netdsl.codegen import render_layer, render_module
from netdsl.layers import REGISTRY


@dataclass(frozen=True)
class FusedCase(KernelCase):
    activation: str = ""

    def __str__(self) -> str:
        return f"{self.kind}+{self.activation}-{self.index}-b{self.batch}"

    @property
    def node(self) -> str:
        return f"test.{self.kind}_{self.activation}{self.index}@b{self.batch}"

    def render(self, target: str, precision: str = "fp32"):
        # the case's data is laid out by the C rendering, which has no epilogue to fuse into
        activation = self.activation if target == "cuda" else ""
        out_shape = self.layer.output_shape(self.args, self.in_shapes)
        return render_layer(self.kind, self.node, 100 + self.index, self.args, self.in_shapes, out_shape,
                            self.batch, target, precision, activation=activation)


CASES = [FusedCase(kind, index, batch, activation) for kind, layer in sorted(REGISTRY.items())
         for activation in sorted(layer.epilogue_activations)
         for index in range(len(layer.examples)) for batch in BATCHES]


def activated(case, y: np.ndarray) -> np.ndarray:
    act = REGISTRY[case.activation]
    return act.forward({}, {}, [y], case.context())[0]


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


def test_the_convolution_and_fc_offer_relu():
    assert {case.kind for case in CASES} >= {"conv", "fc"}


@pytest.mark.parametrize("precision", tuple(UNIT_ROUNDOFF))
@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_forward_epilogue_applies_the_activation(emulated, case, precision):
    run, source = emulated[str(case), precision]
    # one product computes the output: no bias pass, no activation pass, no regrouping
    assert [k.shape for k in source.forward] == ["gemm"], [k.purpose for k in source.forward]
    assert source.forward[0].name.endswith(f"_{case.activation}"), source.forward[0].name
    buffers = fresh_buffers(source, case)
    for kernel in source.forward:
        run(kernel, buffers, case.scalars())
    y, _, _ = reference(case, np.float64)
    want = activated(case, y)
    got = buffers["y"].reshape(np.shape(y))
    assert_close(got, want, 3 * UNIT_ROUNDOFF[precision], f"{case} y")
    # where the activation clearly changes the output, the result follows it, not the product
    changed = np.abs(want - y) > 1e-2 * np.abs(y).max()
    assert changed.any(), "no output the activation changes: the case cannot see it"
    assert (np.abs(got - want) < np.abs(got - y))[changed].all()


@pytest.mark.parametrize("target, precision", [("cuda", "fp32"), ("c", "fp32"), ("c", "tf32")])
def test_a_fused_activation_needs_the_product_epilogue(target, precision):
    case = CASES[0]
    out_shape = case.layer.output_shape(case.args, case.in_shapes)
    with pytest.raises(ValueError, match=f"no {case.activation} epilogue|products only|no implicit-GEMM"):
        render_layer(case.kind, case.node, 1, case.args, case.in_shapes, out_shape, case.batch, target,
                     precision, activation=case.activation)
