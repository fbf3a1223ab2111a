"""What makes a shard compute its part of the global batch, in one process (no MPI):
dropout bits at global positions, augmentation drawn for the whole batch, the loader's
parts, the segmented backward the gradient buckets hook into, and `info --ranks`."""
from __future__ import annotations

import numpy as np
import pytest

from netdsl.compiler import Network, compile_graph
from netdsl.data.augment import AugmentSpec, augment_batch, counter_rng
from netdsl.distributed import World
from netdsl.distributed.buckets import group
from netdsl.layers.base import Context
from netdsl.layers.dropout import keep_mask
from netdsl.runtime.select import c_compiler_available

NET = """network tiny
input image : 3 x 8 x 8
input label : 4 classes
c = conv(image, 4, size=3, init=gauss(0.1)) -> relu -> dropout(0.5)
f = fc(c, 6, init=gauss(0.1)) -> relu -> dropout(0.25)
out = fc(f, 4, init=gauss(0.1))
loss = softmax_loss(out, label)
train { batch = 8 }
"""


def network():
    return Network(compile_graph(text=NET, file="tiny.net", training=True))


def test_a_shards_dropout_mask_is_its_slice_of_the_whole_batchs():
    whole = keep_mask({"rate": 0.5}, (8, 3, 5), Context(seed=4, step=7, stream="d"))
    part = keep_mask({"rate": 0.5}, (3, 3, 5), Context(seed=4, step=7, stream="d", image_offset=5))
    np.testing.assert_array_equal(part, whole[5:])
    assert not np.array_equal(part, whole[:3])


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_shards_with_offsets_train_forward_as_the_whole_batch(backend):
    if backend == "cpu" and not c_compiler_available():
        pytest.skip("no C compiler")
    net = network()
    images = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    whole = net.executor(backend=backend, batch=8, seed=2).forward(images, train=True)
    parts = []
    for offset in (0, 4):
        ex = net.executor(backend=backend, batch=4, seed=2)
        ex.image_offset = offset
        parts.append(ex.forward(images[offset:offset + 4], train=True))
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-5, atol=1e-6)


def test_augmentation_of_a_part_is_that_part_of_the_whole_batchs():
    pixels = np.random.default_rng(1).integers(0, 256, (6, 12, 12, 3), dtype=np.uint8)
    spec, mean = AugmentSpec(crop=8, flip=True, pca_std=0.1), np.full((12, 12, 3), 100.0)
    eigval, eigvec = np.array([0.2, 0.02, 0.005]), np.eye(3)
    whole = augment_batch(pixels, spec, counter_rng(3, 1, 0, 5), mean, eigval, eigvec)
    part = augment_batch(pixels[2:5], spec, counter_rng(3, 1, 0, 5), mean, eigval, eigvec, within=(2, 6))
    np.testing.assert_array_equal(part, whole[2:5])


class Ranks(World):
    """A World that only answers what rank it is, for the loader's shards."""

    def __init__(self, rank, size):
        super().__init__()
        self.rank, self.size = rank, size


def test_the_ranks_shards_tile_each_batch_in_order(tmp_path):
    from netdsl.data.loader import BatchLoader
    from netdsl.data.prepare import prepare
    from netdsl.data.synthetic import make_shapes
    data = prepare(make_shapes(tmp_path / "s", classes=4, train_per_class=6, val_per_class=2, size=12, seed=1),
                   size=12, progress=False)
    spec = AugmentSpec(crop=10, flip=True)
    whole = BatchLoader(data, "train", 8, spec, seed=5, workers=0).make_batch(1)
    parts = [BatchLoader(data, "train", 8, spec, seed=5, workers=0, shard=Ranks(r, 2).shard).make_batch(1)
             for r in range(2)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole[0])
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), whole[1])
    assert [Ranks(r, 3).shard(7) for r in range(3)] == [slice(0, 2), slice(2, 4), slice(4, 7)]


def test_a_world_of_one_is_the_identity_and_refuses_uneven_batches():
    one, three = World(), Ranks(0, 3)
    assert one.shard(5) == slice(0, 5) and one.local_batch(5) == 5
    assert one.mean_metrics({"loss": 2.0}) == {"loss": 2.0}
    with pytest.raises(Exception, match="does not split evenly over 3 ranks"):
        three.local_batch(128)


def test_buckets_close_at_the_cap_in_backward_order():
    assert group([("a", 3), ("b", 3), ("c", 9), ("d", 1)], cap=5) == [["a", "b"], ["c"], ["d"]]
    assert group([("a", 3)], cap=100) == [["a"]]


@pytest.mark.skipif(not c_compiler_available(), reason="no C compiler")
def test_segmented_backward_reports_every_layer_once_and_changes_nothing():
    net = network()
    rng = np.random.default_rng(3)
    images, labels = rng.standard_normal((8, 3, 8, 8)).astype(np.float32), rng.integers(0, 4, 8)
    ex = net.executor(backend="cpu", batch=8, seed=2)
    _, plain = ex.gradients(images, labels)
    seen = []
    ex.on_gradients_ready = lambda layer, refs: seen.append((layer, {r.index for r in refs}))
    _, segmented = ex.gradients(images, labels)
    assert sorted(layer for layer, _ in seen) == sorted({name.rsplit(".", 1)[0] for name in ex.params})
    assert [layer for layer, _ in seen][0].startswith("out")  # the last layer's gradients are ready first
    for name in plain:
        np.testing.assert_array_equal(segmented[name], plain[name])


def test_info_reports_gradient_bytes_per_rank(capsys):
    from netdsl.cli import main
    assert main(["info", "examples/lenet.net", "--ranks", "2"]) == 0
    out = capsys.readouterr().out
    params = sum(int(np.prod(v.shape)) for v in network_of("examples/lenet.net").executor().params.values())
    assert f"gradient bytes/step/rank {4 * params:,}" in out
    assert "batch 32 per rank, global batch 64" in out


def network_of(path):
    from netdsl.compiler import load
    return load(path)
