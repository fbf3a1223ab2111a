"""Each rank reads from the cache only the images of its share of a batch.

The towers of one rank split the model, not the batch: they share the rank's one
loader, so a rank's reads are the only reads of its images. Here a recording
stand-in for the cache's image array logs every image a loader touches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from netdsl.data.augment import AugmentSpec
from netdsl.data.loader import BatchLoader
from netdsl.data.prepare import prepare
from netdsl.data.synthetic import make_shapes
from netdsl.distributed import World


class Ranks(World):
    def __init__(self, rank, size):
        super().__init__()
        self.rank, self.size = rank, size


class RecordingImages:
    """The cache's N x S x S x 3 array, remembering which images were read (by whole-image index)."""

    def __init__(self, images: np.ndarray):
        self.images, self.shape, self.read = np.asarray(images), images.shape, []

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key):
        index = key[0] if isinstance(key, tuple) else key
        self.read.extend(np.atleast_1d(np.arange(len(self.images))[index]).tolist())
        return self.images[key]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = make_shapes(tmp_path_factory.mktemp("s") / "s", classes=4, train_per_class=8, val_per_class=1, size=12,
                       seed=2)
    return prepare(root, size=12, progress=False)


@pytest.mark.parametrize("crops", [False, True])
@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_read_disjoint_shares_whose_union_is_the_batch(data, ranks, crops):
    spec = AugmentSpec(crop=10, flip=True, pca_std=0.1)
    whole_loader = BatchLoader(data, "train", 12, spec, seed=3, epoch=1, workers=0, crops=crops)
    for index in range(whole_loader.batches_per_epoch):
        whole = whole_loader.make_batch(index)
        reads, made = [], []
        for rank in range(ranks):
            recorder = RecordingImages(data.train_images)
            mine = dataclasses.replace(data, train_images=recorder)
            loader = BatchLoader(mine, "train", 12, spec, seed=3, epoch=1, workers=0, crops=crops,
                                 shard=Ranks(rank, ranks).shard)
            made.append(loader.make_batch(index))
            share = loader.rows(index)[Ranks(rank, ranks).shard(12)]
            assert sorted(recorder.read) == sorted(share.tolist()), f"rank {rank} read outside its share"
            assert len(recorder.read) == len(set(recorder.read)), f"rank {rank} read an image twice"
            reads.append(set(recorder.read))
        for a in range(ranks):
            for b in range(a + 1, ranks):
                assert not reads[a] & reads[b], f"ranks {a} and {b} both read {sorted(reads[a] & reads[b])}"
        assert set().union(*reads) == set(whole_loader.rows(index).tolist())
        if crops:
            for field in ("crops", "windows", "shifts"):
                np.testing.assert_array_equal(np.concatenate([getattr(m[0], field) for m in made]),
                                              getattr(whole[0], field))
        else:
            np.testing.assert_array_equal(np.concatenate([m[0] for m in made]), whole[0])
        np.testing.assert_array_equal(np.concatenate([m[1] for m in made]), whole[1])
