"""`netdsl compress` on a briefly trained net: pruning 0% is the original
checkpoint exactly, the pruning removes the smallest magnitudes, the stored
sizes match a count by hand, and int8 stays within its derived bound."""
from __future__ import annotations

import json

import numpy as np
import pytest
from networks import make_run

from netdsl.cli import main
from netdsl.data.prepare import prepare
from netdsl.data.synthetic import make_shapes
from netdsl.inspect.checkpoints import open_executor, stored_params
from netdsl.inspect.compression import compress_params, quantise, stored_bytes, unpack
from netdsl.train.launch import test_checkpoint as checkpoint_errors

TINY = """
network tiny
input image : 3 x 16 x 16
input label : 5 classes
defaults conv, fc { init = gauss(0.1) }
c1 = conv(image, 6, size=3, pad=1) -> relu -> maxpool(2, stride=2)
f1 = fc(c1, 12) -> relu
out = fc(f1, 5)
loss = softmax_loss(out, label)
train { batch = 8; epochs = 2; augment = [scale(0.015625)]; test = center_crop
        optimizer = sgd(lr=0.02, momentum=0.9, weight_decay=0.0005) }
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run directory, data) of TINY trained for two epochs on 5 shapes."""
    root = tmp_path_factory.mktemp("compress")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NETDSL_CACHE", str(root / "cache"))
        data = make_shapes(root / "shapes", classes=5, train_per_class=16, val_per_class=8, size=16, seed=2)
        (root / "tiny.net").write_text(TINY)
        assert main(["train", str(root / "tiny.net"), "--data", str(data), "--out", str(root / "run"),
                     "--backend", "reference", "--no-progress"]) == 0
        yield root / "run", data


@pytest.fixture(autouse=True)
def private_cache(trained, monkeypatch):
    monkeypatch.setenv("NETDSL_CACHE", str(trained[0].parent / "cache"))


def compressed(run, data, *args):
    assert main(["compress", str(run), "--data", str(data), "--backend", "reference", *args]) == 0
    return json.loads((run / "compressed" / "compress.json").read_text())


def test_pruning_nothing_is_the_original_exactly(trained, capsys):
    run, data = trained
    table = compressed(run, data, "--prune", "0,0.5", "--quantize", "int8")
    rows = {r["setting"]: r for r in table["rows"]}
    original, prune0 = rows["original (float32, dense)"], rows["prune0"]
    plain = checkpoint_errors(str(run / "best.npz"), str(data), None, "reference", None)
    for key in ("top1_error", "top5_error", "loss", "images"):
        assert prune0[key] == original[key] == plain[key], key
    assert prune0["bytes"] == original["bytes"]
    before, after = stored_params(run / "best.npz"), stored_params(run / "compressed" / "prune0.npz")
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    # the compressed checkpoints are ordinary ones: `netdsl test` reads them
    assert main(["test", "--checkpoint", str(run / "compressed" / "prune50-int8.npz"), "--data", str(data),
                 "--backend", "reference"]) == 0
    out = capsys.readouterr().out
    assert f"top-1 error {rows['prune50-int8']['top1_error']:.2%}" in out
    assert "where the bytes go" in out and "f1.fc" in out


def test_the_smallest_magnitudes_go_per_layer_and_globally(trained):
    run, data = trained
    weights = {k: v for k, v in stored_params(run / "best.npz").items() if v.ndim >= 2}
    for scope in ("layer", "global"):
        compressed(run, data, "--prune", "0.8", "--scope", scope)
        pruned = stored_params(run / "compressed" / "prune80.npz")
        gone = {k: pruned[k] == 0 for k in weights}
        kept_min = {k: np.abs(weights[k][~gone[k]]).min() for k in weights}
        gone_max = {k: np.abs(weights[k][gone[k]]).max() for k in weights if gone[k].any()}
        if scope == "layer":
            for k, w in weights.items():
                assert gone[k].sum() == int(0.8 * w.size), k
                assert kept_min[k] >= gone_max[k], k
        else:
            total = sum(w.size for w in weights.values())
            assert sum(g.sum() for g in gone.values()) == int(0.8 * total)
            assert min(kept_min.values()) >= max(gone_max.values())
            # one threshold: the layers lose different shares
            assert len({round(float(g.mean()), 3) for g in gone.values()}) > 1
        for k in pruned:  # biases are kept as they were
            if k not in weights:
                assert np.array_equal(pruned[k], stored_params(run / "best.npz")[k])


def test_stored_sizes_match_a_count_by_hand(trained):
    run, data = trained
    table = compressed(run, data, "--prune", "0.5", "--quantize", "int8")
    sizes = {r["setting"]: r["bytes"] for r in table["rows"]}
    # parameters: c1 6x3x3x3 = 162 + 6 bias, f1 12x384 = 4608 + 12, out 5x12 = 60 + 5
    assert sizes["original (float32, dense)"] == 4 * (162 + 6 + 4608 + 12 + 60 + 5)
    # 50% pruned, float32: mask ceil(n/8) + kept values x 4; biases dense float32
    assert sizes["prune50"] == (21 + 81 * 4) + (576 + 2304 * 4) + (8 + 30 * 4) + 4 * (6 + 12 + 5)
    # and int8: values x 1, plus a float32 scale per output channel (6, 12, 5)
    assert sizes["prune50-int8"] == (21 + 81 + 24) + (576 + 2304 + 48) + (8 + 30 + 20) + 4 * (6 + 12 + 5)
    assert table["layers"]["f1.fc"]["prune50-int8"] == 576 + 2304 + 48 + 4 * 12
    # the packed file holds exactly the counted bytes and stands for the evaluated weights
    with np.load(run / "compressed" / "prune50-int8.packed.npz") as packed:
        stored = {k: packed[k] for k in packed.files}
    assert sum(stored_bytes(stored).values()) == sizes["prune50-int8"]
    evaluated = stored_params(run / "compressed" / "prune50-int8.npz")
    assert all(np.array_equal(v, evaluated[k]) for k, v in unpack(stored).items())


def test_int8_moves_each_weight_by_at_most_half_a_step(trained):
    run, _ = trained
    params = stored_params(run / "best.npz")
    evaluated, stored = compress_params(params, 0.0, "layer", True)
    for name, w in params.items():
        if w.ndim < 2:
            assert np.array_equal(evaluated[name], w)
            continue
        step = np.abs(w).reshape(len(w), -1).max(axis=1) / 127
        err = np.abs(evaluated[name] - w).reshape(len(w), -1)
        assert (err <= step[:, None] * (0.5 + 1e-6)).all(), name
        assert err.max() > 0  # it did quantise
        q, _ = quantise(w)
        assert np.abs(q.astype(int)).max() == 127


LINEAR = """
network linear
input image : 3 x 8 x 8
input label : 5 classes
out = fc(image, 5)
loss = softmax_loss(out, label)
train { batch = 2; epochs = 1; augment = []; test = center_crop }
"""


def test_int8_logits_stay_within_the_derived_bound(tmp_path):
    """For logits z = W x + b, per-channel int8 gives |dz_k| <= sum_j |dW_kj| |x_j| <= (s_k / 2) ||x||_1
    (s_k = max_j |W_kj| / 127); a top-1 answer can change only where the margin is below
    the two classes' bounds together."""
    data = make_shapes(tmp_path / "shapes", classes=5, train_per_class=2, val_per_class=20, size=8, seed=4)
    run = make_run(tmp_path / "run", source=LINEAR, seed=5)
    assert main(["compress", str(run), "--data", str(data), "--quantize", "int8", "--backend", "reference"]) == 0
    rows = {r["setting"]: r for r in json.loads((run / "compressed" / "compress.json").read_text())["rows"]}
    prepared = prepare(data, size=8, progress=False)
    x = (prepared.val_images.astype(np.float32).transpose(0, 3, 1, 2) - prepared.mean.transpose(2, 0, 1))
    _, _, ex = open_executor(run, batch=2)
    _, _, ex8 = open_executor(run / "compressed" / "prune0-int8.npz", batch=2)
    z, z8 = ex.forward(x).astype(np.float64), ex8.forward(x).astype(np.float64)
    w = ex.params["out.weight"]
    bound = (np.abs(w).max(axis=1) / 127 / 2)[None, :] * np.abs(x.reshape(len(x), -1)).sum(axis=1)[:, None]
    assert (np.abs(z8 - z) <= bound * (1 + 1e-4) + 1e-5).all()
    assert np.abs(z8 - z).max() > 0
    top = z.argmax(axis=1)
    ranked = np.sort(z, axis=1)
    fragile = (ranked[:, -1] - ranked[:, -2]) <= bound[np.arange(len(z)), top] + bound.max(axis=1)
    changed = z8.argmax(axis=1) != top
    assert not (changed & ~fragile).any()
    labels = prepared.val_labels
    assert abs(rows["prune0-int8"]["top1_error"] - rows["original (float32, dense)"]["top1_error"]) \
        <= fragile.mean() + 1e-12
    assert rows["prune0-int8"]["top1_error"] == pytest.approx(float((z8.argmax(1) != labels).mean()))


def test_compress_needs_a_setting(trained, capsys):
    run, data = trained
    assert main(["compress", str(run), "--data", str(data)]) == 2
    assert "--prune" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        main(["compress", str(run), "--data", str(data), "--prune", "1.5"])
    assert exit.value.code == 2
