"""Crops, mirrors, mean subtraction and PCA lighting, checked pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest

from netdsl.data.augment import (
    PIXEL_MAX,
    AugmentSpec,
    RowView,
    Windows,
    add_lighting,
    augment_batch,
    center_crop,
    counter_rng,
    extract,
    lighting_shifts,
    random_crop,
    random_windows,
    ten_crop,
)


def expected_window(image: np.ndarray, top: int, left: int, crop: int, flipped: bool) -> np.ndarray:
    """The reference cut, written the obvious way: HWC slice, optional mirror, to CHW float."""
    window = image[top : top + crop, left : left + crop]
    if flipped:
        window = window[:, ::-1]
    return window.transpose(2, 0, 1).astype(np.float32)


def test_extract_cuts_mirrors_and_transposes_exactly(ramp):
    images = ramp(4, 9)
    windows = Windows(np.array([0, 2, 4, 1]), np.array([0, 3, 4, 0]), np.array([False, True, True, False]))
    out = extract(images, windows, 5)
    assert out.shape == (4, 3, 5, 5) and out.dtype == np.float32
    for i in range(4):
        expected = expected_window(images[i], windows.top[i], windows.left[i], 5, windows.flipped[i])
        assert np.array_equal(out[i], expected)
    # Ramp check in words: a mirrored window's first column is its source's last.
    assert out[1, 1, 0, 0] == 3 + 5 - 1 and out[1, 0, 0, 0] == 2


def test_mean_is_subtracted_at_the_source_pixel_even_when_mirrored(ramp):
    images = ramp(3, 8)
    mean = np.random.default_rng(0).uniform(0, 255, (8, 8, 3)).astype(np.float32)
    windows = Windows(np.array([1, 0, 3]), np.array([2, 3, 0]), np.array([True, False, True]))
    out = extract(images, windows, 5, mean)
    for i in range(3):
        top, left, flipped = windows.top[i], windows.left[i], windows.flipped[i]
        expected = expected_window(images[i], top, left, 5, flipped) - expected_window(mean, top, left, 5, flipped)
        np.testing.assert_array_equal(out[i], expected)


def test_random_windows_are_uniform_in_range_and_flip_about_half(ramp):
    windows = random_windows(counter_rng(3, 1, 0, 0), 4000, 256, 224, flip=True)
    assert windows.top.min() == 0 and windows.top.max() == 32
    assert windows.left.min() == 0 and windows.left.max() == 32
    assert 0.45 < windows.flipped.mean() < 0.55
    assert not np.array_equal(windows.top, windows.left)
    assert not random_windows(counter_rng(3, 1, 0, 0), 50, 256, 224, flip=False).flipped.any()


def test_random_crop_is_extract_of_the_drawn_windows(ramp):
    images = ramp(6, 10)
    out = random_crop(images, 7, counter_rng(1, 1, 2, 3), flip=True)
    windows = random_windows(counter_rng(1, 1, 2, 3), 6, 10, 7, flip=True)
    assert np.array_equal(out, extract(images, windows, 7))


def test_center_crop_takes_the_middle(ramp):
    out = center_crop(ramp(2, 9), 4)  # (9 - 4) // 2 = 2
    assert out[:, 0, :, 0].tolist() == [[2, 3, 4, 5]] * 2  # rows
    assert out[:, 1, 0, :].tolist() == [[2, 3, 4, 5]] * 2  # columns
    assert out[:, 2, 0, 0].tolist() == [0, 1]


def test_ten_crop_layout_is_corners_centre_then_their_mirrors(ramp):
    images = ramp(3, 6)
    out = ten_crop(images, 4)
    assert out.shape == (10, 3, 3, 4, 4)
    corners = [(0, 0), (0, 2), (2, 0), (2, 2), (1, 1)]
    for k, (flipped, (top, left)) in enumerate((f, c) for f in (False, True) for c in corners):
        for i in range(3):
            assert np.array_equal(out[k, i], expected_window(images[i], top, left, 4, flipped)), (k, i)


def test_pca_lighting_adds_exactly_the_scaled_eigvec_times_alpha_eigval():
    rng = np.random.default_rng(0)
    eigval = np.array([0.2175, 0.0188, 0.0045])
    eigvec, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    shifts = lighting_shifts(counter_rng(5, 1, 0, 0), 4, 0.1, eigval, eigvec)
    alphas = counter_rng(5, 1, 0, 0).normal(0.0, 0.1, (4, 3))
    for i in range(4):
        np.testing.assert_allclose(shifts[i], PIXEL_MAX * eigvec @ (alphas[i] * eigval), rtol=1e-12)

    batch = rng.uniform(-100, 100, (4, 3, 5, 5)).astype(np.float32)
    lit = add_lighting(batch.copy(), shifts)
    np.testing.assert_allclose(lit - batch, np.broadcast_to(shifts[:, :, None, None], batch.shape), atol=1e-4)


def test_augment_batch_is_crop_then_lighting_with_the_same_generator(prepared):
    images = np.asarray(prepared.train_images[:8])
    spec = AugmentSpec(crop=9, flip=True, pca_std=0.1)
    out = augment_batch(images, spec, counter_rng(7, 1, 1, 4), prepared.mean, prepared.eigval, prepared.eigvec)
    rng = counter_rng(7, 1, 1, 4)
    expected = random_crop(images, 9, rng, flip=True, mean=prepared.mean)
    add_lighting(expected, lighting_shifts(rng, 8, 0.1, prepared.eigval, prepared.eigvec))
    assert np.array_equal(out, expected)


def test_evaluation_modes_are_deterministic_and_take_no_randomness(prepared):
    images = np.asarray(prepared.val_images[:5])
    args = (prepared.mean, prepared.eigval, prepared.eigvec)
    center = augment_batch(images, AugmentSpec.paper_test(8), counter_rng(0, 1, 0, 0), *args)
    assert np.array_equal(center, augment_batch(images, AugmentSpec.paper_test(8), counter_rng(9, 1, 9, 9), *args))
    assert np.array_equal(center, center_crop(images, 8, prepared.mean))
    ten = augment_batch(images, AugmentSpec.paper_test(8, ten=True), counter_rng(0, 1, 0, 0), *args)
    assert ten.shape == (10, 5, 3, 8, 8)
    no_mean = augment_batch(images, AugmentSpec(crop=None, crop_mode="center", mean_subtract=False), None, *args)
    assert np.array_equal(no_mean, images.transpose(0, 3, 1, 2).astype(np.float32))


def test_counter_rng_depends_only_on_its_four_numbers():
    keys = [(0, 1, 0, 0), (0, 1, 0, 1), (0, 1, 1, 0), (0, 2, 0, 0), (1, 1, 0, 0)]
    draws = {args: counter_rng(*args).random(4).tolist() for args in keys}
    assert len({tuple(d) for d in draws.values()}) == len(draws)
    assert counter_rng(0, 1, 1, 0).random(4).tolist() == draws[(0, 1, 1, 0)]
    with pytest.raises(ValueError, match="non-negative"):
        counter_rng(-1, 1, 0, 0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"crop_mode": "five"}, "unknown crop mode"),
        ({"crop": 0}, "crop size must be positive"),
        ({"pca_std": -0.1}, "non-negative"),
        ({"crop": 8, "crop_mode": "ten", "flip": True}, "for evaluation"),
        ({"crop": 8, "crop_mode": "center", "pca_std": 0.1}, "for evaluation"),
    ],
)
def test_augment_spec_rejects_nonsense(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AugmentSpec(**kwargs)


def test_crop_larger_than_the_images_is_an_error(ramp):
    with pytest.raises(ValueError, match="crop 9 is larger than the 8x8"):
        center_crop(ramp(1, 8), 9)


def test_row_view_reads_the_cache_as_the_gathered_batch_would(prepared):
    rows = np.array([1, 4, 5, 9, 20])
    gathered = np.asarray(prepared.train_images[rows])
    view = RowView(prepared.train_images, rows)
    assert len(view) == 5 and view.shape == gathered.shape
    assert np.array_equal(view[3], gathered[3]) and np.array_equal(view[2, 1:4, ::-1], gathered[2, 1:4, ::-1])
    for spec in (AugmentSpec(crop=9, flip=True, pca_std=0.1), AugmentSpec.paper_test(8, ten=True)):
        args = (spec, counter_rng(3, 1, 0, 2), prepared.mean, prepared.eigval, prepared.eigvec)
        assert np.array_equal(augment_batch(view, *args), augment_batch(gathered, *args[:1], counter_rng(3, 1, 0, 2),
                                                                          *args[2:]))
