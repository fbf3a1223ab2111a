"""Saliency: the reference executor's input gradient against central
differences in float64, and the picture `netdsl show saliency` draws."""
from __future__ import annotations

import numpy as np
import pytest
from networks import TWO_TOWER, make_run, well_scaled
from pictures import read_png

from netdsl.cli import main
from netdsl.data.synthetic import make_shapes
from netdsl.inspect.saliency import saliency
from netdsl.train.launch import network_from_source


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path / "cache"))


def test_input_gradient_matches_central_differences():
    # two towers both read the image: their gradients must be summed
    net = network_from_source(TWO_TOWER, "x.net", {})
    ex = net.executor(backend="reference", batch=2, dtype=np.float64)
    ex.set_params(well_scaled(ex))
    r = np.random.default_rng(0)
    x = r.standard_normal((2, 3, 16, 16))
    weights = r.standard_normal((2, 5))
    grad = ex.input_gradient(x, weights)
    assert grad.shape == x.shape and np.abs(grad).max() > 0
    eps = 1e-6  # small: max-pool and ReLU kinks sit within 1e-5 of these random inputs
    for trial in range(3):
        v = r.standard_normal(x.shape)
        numeric = ((ex.forward(x + eps * v) * weights).sum() - (ex.forward(x - eps * v) * weights).sum()) / (2 * eps)
        assert (grad * v).sum() == pytest.approx(numeric, rel=1e-5)
    # single pixels too, where a sum over directions could hide a wrong sign
    for c, i, j in [(0, 3, 4), (2, 15, 0)]:
        bump = np.zeros_like(x)
        bump[1, c, i, j] = eps
        numeric = ((ex.forward(x + bump) * weights).sum() - (ex.forward(x - bump) * weights).sum()) / (2 * eps)
        assert grad[1, c, i, j] == pytest.approx(numeric, rel=1e-5, abs=1e-10)


def test_show_saliency_draws_image_map_and_overlay(tmp_path, capsys):
    data = make_shapes(tmp_path / "shapes", classes=5, train_per_class=1, val_per_class=1, size=16, seed=2)
    run = make_run(tmp_path / "run", seed=5)
    image = next((data / "val" / "s0002").iterdir())
    heat, crop, klass, p, _ = saliency(str(run), str(image), None)
    assert heat.shape == (16, 16) and crop.shape == (16, 16, 3) and heat.std() > 0 and 0 < p <= 1
    other, _, k2, _, _ = saliency(str(run), str(image), (klass + 1) % 5)
    assert k2 == (klass + 1) % 5 and not np.allclose(heat, other)  # the map depends on the class
    out = tmp_path / "s.png"
    assert main(["show", "saliency", str(run / "best.npz"), str(image), "-o", str(out)]) == 0
    pixels = read_png(out, 800, 300)
    thirds = np.array_split(pixels, 3, axis=1)
    assert all(t.std() > 5 for t in thirds)  # three panels, none blank
    assert main(["show", "saliency", str(run), str(image), "--class", "7"]) == 2
    assert "outside the network's 5 classes" in capsys.readouterr().err
