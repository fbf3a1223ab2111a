"""`netdsl test --sweep`: the value that moves nothing is `netdsl test`
exactly, quarter turns are the rotate90/180/270 transforms, and any angle,
magnification or shift moves a linear ramp where geometry says it must."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from networks import make_run
from pictures import read_png

from netdsl.cli import main
from netdsl.data.synthetic import make_shapes
from netdsl.inspect.ensemble import ensemble_errors
from netdsl.inspect.geometry import geometric
from netdsl.inspect.sweep import parse_sweep, sweep
from netdsl.inspect.transforms import TRANSFORMS
from netdsl.train.launch import test_checkpoint as checkpoint_errors


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def data(tmp_path):
    return make_shapes(tmp_path / "shapes", classes=5, train_per_class=2, val_per_class=4, size=16, seed=2)


def test_no_movement_is_netdsl_test_exactly(tmp_path, data):
    run = make_run(tmp_path / "r", seed=3)
    plain = checkpoint_errors(str(run / "best.npz"), str(data), False, "reference", None)
    for spec in ("rotate=0:360:180", "scale=1,2", "translate=0,3", "translate_y=-2,0"):
        result = sweep(str(run / "best.npz"), str(data), spec, backend="reference")
        row = next(r for r in result["rows"] if r["value"] == (1 if spec.startswith("scale") else 0))
        for key in ("images", "loss", "top1_error", "top5_error"):
            assert row[key] == plain[key], (spec, key)
    assert result["rows"][0]["loss"] != plain["loss"]  # a 2-pixel shift changes what the network sees


def test_quarter_turns_are_the_rotate_transforms(tmp_path, data):
    run = make_run(tmp_path / "r", seed=4)
    result = sweep(str(run / "best.npz"), str(data), "rotate=90:270:90", fill="black", backend="reference")
    for row in result["rows"]:
        fixed = ensemble_errors([str(run / "best.npz")], str(data), transform=f"rotate{row['value']:g}",
                                backend="reference")["members"][0][1]
        assert row["top1_error"] == fixed["top1_error"] and row["top5_error"] == fixed["top5_error"]
        assert row["loss"] == pytest.approx(fixed["loss"], rel=1e-12)
    assert len({r["loss"] for r in result["rows"]}) == 3


def test_geometry_quarter_turns_and_identity_are_exact():
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)
    for fill in ("reflect", "black"):
        for angle, name in ((90, "rotate90"), (180, "rotate180"), (270, "rotate270"), (-90, "rotate270")):
            assert np.array_equal(geometric("rotate", angle, fill)(x), TRANSFORMS[name](x)), (angle, fill)
        for kind, value in (("rotate", 0), ("rotate", 360), ("scale", 1), ("translate", 0)):
            assert np.array_equal(geometric(kind, value, fill)(x), x)
    moved = geometric("translate", 2, "black")(x)
    assert np.array_equal(moved[..., 2:], x[..., :-2]) and not moved[..., :2].any()
    down = geometric("translate_y", 3, "reflect")(x)
    assert np.array_equal(down[..., 3:, :], x[..., :-3, :])
    assert np.array_equal(down[..., 0, :], x[..., 3, :])  # mirrored about the top row's centre


@pytest.mark.parametrize("kind,value", [("rotate", 37.0), ("rotate", -123.0), ("scale", 1.7), ("scale", 0.6),
                                        ("translate", 1.25)])
def test_any_angle_moves_a_ramp_where_the_geometry_says(kind, value):
    """Bilinear interpolation reproduces a linear image exactly, so inside the crop the output is
    the ramp at the inverse-mapped point, written out here from the rotation/scaling matrices."""
    side, a, b = 15, 0.3, -0.7
    r, c = np.meshgrid(np.arange(side, dtype=np.float64), np.arange(side, dtype=np.float64), indexing="ij")
    ramp = (a * r + b * c).astype(np.float32)
    out = geometric(kind, value, "black")(ramp[None])[0]
    centre = (side - 1) / 2
    dy, dx = r - centre, c - centre
    if kind == "rotate":
        t = math.radians(value)
        sr, sc = centre + math.cos(t) * dy + math.sin(t) * dx, centre + math.cos(t) * dx - math.sin(t) * dy
    elif kind == "scale":
        sr, sc = centre + dy / value, centre + dx / value
    else:
        sr, sc = r, c - value
    inside = (sr >= 0) & (sr <= side - 1) & (sc >= 0) & (sc <= side - 1)
    assert inside.sum() > side  # enough of the crop to tell
    assert np.allclose(out[inside], (a * sr + b * sc)[inside], atol=1e-5)
    assert np.all(out[~((sr > -1) & (sr < side) & (sc > -1) & (sc < side))] == 0)  # black past one pixel
    reflected = geometric(kind, value, "reflect")(ramp[None])[0]
    assert np.allclose(reflected[inside], out[inside], atol=1e-6)  # the fills differ only outside


def test_command_writes_csv_and_png_and_refuses_bad_sweeps(tmp_path, data, capsys):
    run = make_run(tmp_path / "r", seed=5)
    assert main(["test", "--checkpoint", str(run / "best.npz"), "--data", str(data), "--sweep", "rotate=0:360:45",
                 "--backend", "reference", "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "filled by reflect" in out and "sweep-rotate.png" in out
    with open(tmp_path / "out" / "sweep-rotate.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["value"]) for r in rows] == [0, 45, 90, 135, 180, 225, 270, 315, 360]
    assert rows[0]["top1_error"] == rows[-1]["top1_error"] and rows[0]["loss"] == rows[-1]["loss"]
    assert all(0 < float(r["true_probability"]) < 1 for r in rows)
    read_png(tmp_path / "out" / "sweep-rotate.png")
    assert parse_sweep("scale=0.5:2:0.5") == ("scale", [0.5, 1.0, 1.5, 2.0])
    for bad in ("spin=0:90:10", "rotate=0:90", "rotate=90:0:10", "scale=0,1", "rotate=a,b"):
        assert main(["test", "--checkpoint", str(run / "best.npz"), "--data", str(data), "--sweep", bad,
                     "--backend", "reference"]) == 2, bad
        err = capsys.readouterr().err
        assert "Traceback" not in err and "--sweep" in err
    assert main(["test", "--checkpoint", str(run / "best.npz"), "--checkpoint", str(run / "best.npz"), "--data",
                 str(data), "--sweep", "rotate=0,90", "--backend", "reference"]) == 2
