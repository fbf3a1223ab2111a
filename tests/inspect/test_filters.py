"""`netdsl show filters`: one panel per tower, RGB for the layer that reads
the image, every kernel stretched to its own range."""
from __future__ import annotations

import numpy as np
import pytest
from networks import EXAMPLES, make_run
from pictures import read_png

import netdsl
from netdsl.cli import main
from netdsl.inspect.filters import filter_panels, filters_figure, stretch


@pytest.fixture(scope="module")
def alexnet():
    # random conv weights of the right shapes: initialising all 61 million parameters takes seconds
    net = netdsl.load(EXAMPLES / "alexnet.net")
    r = np.random.default_rng(0)
    return net, {f"{n}.{p}": r.standard_normal(shape).astype(np.float32) for n, d in net.graph.nodes(data=True)
                 if d.kind == "conv" and d.is_layer for p, shape in d.params.items()}


def test_two_towers_give_two_rgb_panels_with_every_kernel_stretched(tmp_path, alexnet):
    run = make_run(tmp_path / "run")
    out = tmp_path / "filters.png"
    assert main(["show", "filters", str(run), "-o", str(out)]) == 0
    pixels = read_png(out)
    # colour: the channels of a trained-looking RGB kernel grid are not all equal
    assert np.abs(pixels[..., 0] - pixels[..., 1]).mean() > 1

    net, params = alexnet
    panels = filter_panels(net.graph, params, "conv1")
    assert [title.split()[0] for title, _ in panels] == ["gpu0", "gpu1"]
    for (_, image), node in zip(panels, ["conv1.conv@gpu0", "conv1.conv@gpu1"]):
        # Figure 3: 48 kernels of 11x11 in 3 rows of 16, 1-pixel gaps
        assert image.shape == (3 * 12 - 1, 16 * 12 - 1, 3)
        first = image[:11, :11]
        assert first.min() == 0 and first.max() == 1
        np.testing.assert_allclose(first, stretch(params[f"{node}.weight"][0].transpose(1, 2, 0)), rtol=1e-6)
    fig = filters_figure(net.graph, params, "conv1")
    assert len(fig.axes) == 2 and fig.axes[0].get_title().startswith("gpu0")


def test_a_deeper_layer_is_grey_and_a_single_node_can_be_named(alexnet):
    net, params = alexnet
    panels = filter_panels(net.graph, params, "conv2")
    assert len(panels) == 2 and panels[0][1].ndim == 2
    tile = panels[0][1][:5, :5]
    np.testing.assert_allclose(tile, stretch(params["conv2.conv@gpu0.weight"][0].mean(axis=0)), rtol=1e-5, atol=1e-6)
    assert len(filter_panels(net.graph, params, "conv2.conv@gpu1")) == 1


def test_unknown_layer_is_a_named_error(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    assert main(["show", "filters", str(run), "--layer", "c3"]) == 2
    err = capsys.readouterr().err
    assert "no convolution `c3`" in err and "c1, c2" in err
    assert main(["show", "filters", str(tmp_path / "nothing")]) == 2
