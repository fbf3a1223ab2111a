"""augment.crop_batch and the loader's `crops` batches: the same draws as the float
path, so a batch finished from its crops is the float batch bit for bit (here in
numpy, in input_augment.j2's operations and order)."""
from __future__ import annotations

import numpy as np
import pytest

from netdsl.data.augment import AUGMENT_STREAM, AugmentSpec, augment_batch, counter_rng, crop_batch


def finish(crops, mean):
    """input_augment.j2 in numpy: mirror, convert, subtract the mean at the source pixel, add the shift."""
    n, c = len(crops), crops.crops.shape[1]
    out = np.empty((n, 3, c, c), np.float32)
    for i, (top, left, flipped) in enumerate(crops.windows):
        cols = np.arange(c)[::-1] if flipped else np.arange(c)
        pixels = crops.crops[i][:, cols].astype(np.float32)
        if mean is not None:
            pixels = pixels - mean[top : top + c, left + cols]
        if crops.shifts is not None:
            pixels = pixels + crops.shifts[i]
        out[i] = pixels.transpose(2, 0, 1)
    return out


def inputs(seed=0, count=6, size=20):
    gen = np.random.default_rng(seed)
    images = gen.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    mean = gen.uniform(0, 255, (size, size, 3)).astype(np.float32)
    return images, mean, np.array([0.3, 0.05, 0.01]), np.linalg.qr(gen.standard_normal((3, 3)))[0]


@pytest.mark.parametrize("spec", [AugmentSpec(crop=15, flip=True, pca_std=0.1), AugmentSpec(crop=15, flip=True),
                                  AugmentSpec(crop=20, mean_subtract=False)])
def test_crops_finished_are_the_float_batch_bit_for_bit(spec):
    images, mean, eigval, eigvec = inputs()
    want = augment_batch(images, spec, counter_rng(5, AUGMENT_STREAM, 1, 2), mean, eigval, eigvec)
    crops = crop_batch(images, spec, counter_rng(5, AUGMENT_STREAM, 1, 2), eigval, eigvec)
    assert crops.crops.dtype == np.uint8 and crops.crops.shape == (6, spec.crop, spec.crop, 3)
    assert crops.windows.dtype == np.int32 and (crops.shifts is None) == (not spec.pca_std)
    got = finish(crops, mean if spec.mean_subtract else None)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_a_shard_gets_its_part_of_the_whole_batchs_draws():
    images, mean, eigval, eigvec = inputs()
    spec = AugmentSpec(crop=15, flip=True, pca_std=0.1)
    whole = crop_batch(images, spec, counter_rng(5, AUGMENT_STREAM, 0, 0), eigval, eigvec)
    part = crop_batch(images[2:5], spec, counter_rng(5, AUGMENT_STREAM, 0, 0), eigval, eigvec, within=(2, 6))
    for name in ("crops", "windows", "shifts"):
        np.testing.assert_array_equal(getattr(part, name), getattr(whole, name)[2:5], err_msg=name)


def test_evaluation_crops_stay_on_the_host():
    images, _, eigval, eigvec = inputs()
    with pytest.raises(ValueError, match="random crops"):
        crop_batch(images, AugmentSpec(crop=15, crop_mode="center"), counter_rng(0, 1, 0, 0), eigval, eigvec)
