"""`netdsl neighbours`: a training image is its own nearest neighbour at
any layer, the activations are the network's, and one picture per query."""
from __future__ import annotations

import numpy as np
import pytest
from networks import TWO_TOWER, make_run, well_scaled
from pictures import read_png

import netdsl  # noqa: F401
from netdsl.cli import main
from netdsl.data.synthetic import make_shapes
from netdsl.inspect.neighbours import activations, feature_nodes, nearest, neighbours
from netdsl.train.launch import network_from_source


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path / "cache"))


def test_towers_are_joined_and_activations_are_the_networks():
    net = network_from_source(TWO_TOWER, "x.net", {})
    g = net.graph
    assert feature_nodes(g, None) == ["f.dropout@gpu0", "f.dropout@gpu1"]  # the last hidden layer, both towers
    assert feature_nodes(g, "c1") == ["c1.maxpool@gpu0", "c1.maxpool@gpu1"]
    ex = net.executor(backend="reference", batch=3)
    ex.set_params(well_scaled(ex))
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(activations(g, dict(ex.params), x, ["out"]), ex.forward(x), rtol=1e-6)
    assert activations(g, dict(ex.params), x, feature_nodes(g, None)).shape == (3, 12)


def test_nearest_is_euclidean():
    r = np.random.default_rng(1)
    features, queries = r.standard_normal((20, 5)), r.standard_normal((3, 5))
    index, distance = nearest(features, queries, 4)
    brute = np.linalg.norm(queries[:, None] - features[None], axis=2)
    np.testing.assert_array_equal(index, np.argsort(brute, axis=1)[:, :4])
    np.testing.assert_allclose(distance, np.sort(brute, axis=1)[:, :4], atol=1e-9)


def test_a_training_image_finds_itself_first(tmp_path, capsys):
    data = make_shapes(tmp_path / "shapes", classes=5, train_per_class=4, val_per_class=1, size=16, seed=6)
    run = make_run(tmp_path / "run", seed=2)
    query = sorted((data / "train" / "s0003").iterdir())[1]
    results, layer, index, distance = neighbours(str(run), str(data), [str(query)], None, 4)
    assert layer == "f.dropout@gpu0+f.dropout@gpu1"
    assert distance[0, 0] < 1e-3 * max(distance[0, 1], 1e-12) and distance[0, 1] > 0
    _, query_crop, found = results[0]
    np.testing.assert_array_equal(found[0][0], query_crop)  # the same pixels
    out = tmp_path / "pics"
    other = sorted((data / "val" / "s0001").iterdir())[0]
    assert main(["neighbours", str(run), "--data", str(data), str(query), str(other), "-k", "5", "--layer", "c2",
                 "-o", str(out)]) == 0
    written = sorted(out.glob("neighbours-*.png"))
    assert len(written) == 2
    pixels = read_png(written[0], 700, 200)
    assert all(part.std() > 5 for part in np.array_split(pixels, 6, axis=1))  # query and 5 neighbours
    assert main(["neighbours", str(run), "--data", str(data), str(query), "--layer", "nope"]) == 2
    assert "no layer `nope`" in capsys.readouterr().err
