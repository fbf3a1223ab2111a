"""Elastic distortion (Simard et al. 2003): strength 0 is the identity
exactly, a batch is a function of (seed, epoch, batch) and of nothing else,
the field is as smooth as a Gaussian-filtered white noise must be, and the
pixels move by the field."""
from __future__ import annotations

import numpy as np
import pytest

from netdsl.cli import main
from netdsl.data.augment import AUGMENT_STREAM, AugmentSpec, augment_batch, counter_rng
from netdsl.data.elastic import displacement, distort, gaussian_kernel, smooth

EIGVAL = np.array([0.2, 0.02, 0.005])
EIGVEC = np.linalg.qr(np.random.default_rng(9).standard_normal((3, 3)))[0]


def images(count=6, size=20, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def batch(spec, epoch=0, index=0, seed=7, within=None, pixels=None):
    pixels = images() if pixels is None else pixels
    mean = np.full((pixels.shape[1], pixels.shape[1], 3), 100, np.float32)
    return augment_batch(pixels, spec, counter_rng(seed, AUGMENT_STREAM, epoch, index), mean, EIGVAL, EIGVEC,
                         within=within)


def test_strength_zero_is_the_identity_exactly():
    plain = AugmentSpec(crop=16, flip=True, pca_std=0.1)
    zero = AugmentSpec(crop=16, flip=True, pca_std=0.1, elastic=(0.0, 4.0))
    assert np.array_equal(batch(zero), batch(plain))
    # and the other draws are the same with it on: only the pixels' positions change
    moved = batch(AugmentSpec(crop=16, flip=True, pca_std=0.1, elastic=(5.0, 3.0)))
    assert not np.array_equal(moved, batch(plain))


def test_a_batch_is_a_function_of_seed_epoch_and_batch():
    spec = AugmentSpec(crop=16, flip=True, elastic=(6.0, 2.0))
    first = batch(spec, epoch=2, index=3)
    assert np.array_equal(first, batch(spec, epoch=2, index=3))
    for other in (dict(epoch=3, index=3), dict(epoch=2, index=4), dict(epoch=2, index=3, seed=8)):
        assert not np.array_equal(first, batch(spec, **other)), other
    # a data-parallel rank making images 2..4 of the batch gets exactly those images' distortion
    pixels = images()
    whole = batch(spec, epoch=2, index=3, pixels=pixels)
    shard = batch(spec, epoch=2, index=3, pixels=pixels[2:5], within=(2, 6))
    assert np.array_equal(shard, whole[2:5])


def test_the_smoothing_is_scipys_gaussian_filter():
    scipy_ndimage = pytest.importorskip("scipy.ndimage")
    noise = np.random.default_rng(1).uniform(-1, 1, (2, 2, 24, 24))
    for sigma in (0.8, 3.0, 8.0):  # 8: the kernel is wider than the image, the mirror repeats
        expected = np.stack([[scipy_ndimage.gaussian_filter(f, sigma, mode="reflect", truncate=4.0) for f in pair]
                             for pair in noise])
        assert np.allclose(smooth(noise, sigma), expected, atol=1e-12), sigma


def test_the_field_is_as_smooth_as_filtered_white_noise():
    """U(-1, 1) noise (variance 1/3) through a normalised Gaussian kernel k: variance (1/3) (sum k^2)^2 in 2-D,
    and neighbours d pixels apart correlate as sum_i k_i k_{i+d} / sum_i k_i^2 per axis, about
    exp(-d^2 / (4 sigma^2)). Measured away from the border over many fields."""
    sigma, alpha, side = 3.0, 2.0, 64
    fields = np.stack([displacement(np.random.default_rng(s), side, alpha, sigma)[0] for s in range(40)])
    inner = fields[:, 16:-16, 16:-16] / alpha
    k = gaussian_kernel(sigma)
    energy = float((k ** 2).sum())
    assert inner.var() == pytest.approx(energy ** 2 / 3, rel=0.1)
    for d in (1, 3, 6):
        along = float((k[:-d] * k[d:]).sum()) / energy
        assert along == pytest.approx(np.exp(-d * d / (4 * sigma * sigma)), abs=0.01)
        measured = (inner[:, :, :-d] * inner[:, :, d:]).mean() / inner.var()
        assert measured == pytest.approx(along, abs=0.06), d
    # a smoother field changes less from pixel to pixel, relative to its size
    rough = np.stack([displacement(np.random.default_rng(s), side, alpha, 0.7)[0] for s in range(10)])
    step = lambda f: np.diff(f, axis=-1).std() / f.std()
    assert step(fields) < 0.5 * step(rough)
    assert np.array_equal(displacement(np.random.default_rng(5), side, 2 * alpha, sigma),
                          2 * displacement(np.random.default_rng(5), side, alpha, sigma))


def test_pixels_move_by_the_field():
    """Bilinear reading reproduces a linear image, so the output is the ramp at (r + dy, c + dx)."""
    side, a, b = 24, 0.5, -1.25
    r, c = np.meshgrid(np.arange(side, dtype=np.float64), np.arange(side, dtype=np.float64), indexing="ij")
    ramp = np.stack([a * r + b * c] * 3).astype(np.float32)
    field = displacement(np.random.default_rng(3), side, 12.0, 4.0)
    out = distort(ramp, field)
    sr, sc = r + field[0], c + field[1]
    inside = (sr >= 0) & (sr <= side - 1) & (sc >= 0) & (sc <= side - 1)
    assert inside.mean() > 0.5 and np.abs(field).max() > 0.5
    assert np.allclose(out[:, inside], (a * sr + b * sc)[inside], atol=1e-4)


NET = """
network tiny
input image : 3 x 16 x 16
input label : 5 classes
c1 = conv(image, 4, size=3, pad=1) -> relu
out = fc(c1, 5)
loss = softmax_loss(out, label)
train { batch = 4; augment = [random_crop(16, from=20), elastic(alpha=6, sigma=2)]; test = center_crop }
"""


def test_train_block_and_show_augment(tmp_path, monkeypatch, capsys):
    from pictures import read_png

    from netdsl.data.synthetic import make_shapes
    from netdsl.train.datasets import data_plan
    from netdsl.train.launch import network_from_source
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path / "cache"))
    _, train, test = data_plan(network_from_source(NET, "tiny.net", {}))
    assert train.elastic == (6.0, 2.0) and test.elastic is None
    defaults = network_from_source(NET.replace("elastic(alpha=6, sigma=2)", "elastic"), "tiny.net", {})
    assert data_plan(defaults)[1].elastic == (34.0, 4.0)  # Simard's MNIST setting
    net = tmp_path / "tiny.net"
    net.write_text(NET.replace("sigma=2", "sigma=0"))
    assert main(["show", "augment", str(net)]) == 2
    assert "sigma" in capsys.readouterr().err
    net.write_text(NET)
    data = make_shapes(tmp_path / "shapes", classes=5, train_per_class=3, val_per_class=1, size=20, seed=1)
    assert main(["show", "augment", str(net), "--data", str(data), "--images", "3", "--draws", "4",
                 "-o", str(tmp_path / "aug.png")]) == 0
    pixels = read_png(tmp_path / "aug.png")
    assert pixels.shape[1] > pixels.shape[0]  # 5 columns, 3 rows
