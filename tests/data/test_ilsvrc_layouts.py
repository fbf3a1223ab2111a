"""The ILSVRC-2012 layouts as downloaded: class tars under train/, one flat val/
folder labelled by the devkit's ground truth, Kaggle's LOC_val_solution.csv or a
`FILE CLASS` list. Each must give the images and labels its class-folder
equivalent gives; every labelling mismatch is an error before any decoding."""
from __future__ import annotations

import io
import json
import math
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from netdsl.cli import main
from netdsl.data.folder import scan_folder
from netdsl.data import tars as tars_module
from netdsl.data.prepare import prepare

WNIDS = ["n01440764", "n01443537", "n01484850"]
NAMES = ["tench, Tinca tinca", "goldfish, Carassius auratus", "great white shark"]
TRAIN_PER_CLASS = 3
VAL_CLASSES = [2, 0, 1, 0, 2, 1]  # the class of ILSVRC2012_val_00000001.JPEG, ...
VAL_FILES = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, len(VAL_CLASSES) + 1)]


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (12, 14, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def train_name(c: int, i: int) -> str:
    return f"{WNIDS[c]}_{i}.JPEG"


def folders(root: Path) -> Path:
    """The class-folder layout every other layout must equal."""
    for c, wnid in enumerate(WNIDS):
        for i in range(TRAIN_PER_CLASS):
            write(root / "train" / wnid / train_name(c, i), jpeg(10 * c + i))
    for n, (name, c) in enumerate(zip(VAL_FILES, VAL_CLASSES)):
        write(root / "val" / WNIDS[c] / name, jpeg(100 + n))
    return root


def ilsvrc(root: Path, tars: bool = False) -> Path:
    """The same images as `folders`, val/ flat and train/ in tars if asked, no label file yet."""
    for c, wnid in enumerate(WNIDS):
        if tars:
            (root / "train").mkdir(parents=True, exist_ok=True)
            with tarfile.open(root / "train" / f"{wnid}.tar", "w") as tar:
                for i in range(TRAIN_PER_CLASS):
                    data = jpeg(10 * c + i)
                    info = tarfile.TarInfo(train_name(c, i))
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        else:
            for i in range(TRAIN_PER_CLASS):
                write(root / "train" / wnid / train_name(c, i), jpeg(10 * c + i))
    for n, name in enumerate(VAL_FILES):
        write(root / "val" / name, jpeg(100 + n))
    return root


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def with_truth(root: Path) -> Path:
    (root / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{c + 1}\n" for c in VAL_CLASSES))
    # The devkit numbers classes its own way; matching goes through the WNID, never the number.
    (root / "meta.txt").write_text("".join(f"{c + 1} {w} {n}\n" for c, (w, n) in enumerate(zip(WNIDS, NAMES))))
    return root


def with_kaggle(root: Path) -> Path:
    rows = [f"{Path(f).stem},{WNIDS[c]} 1 2 30 40 {WNIDS[c]} 5 6 7 8" for f, c in zip(VAL_FILES, VAL_CLASSES)]
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows[::-1]) + "\n")
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} {n}\n" for w, n in zip(WNIDS, NAMES)))
    return root


def with_list(root: Path) -> Path:
    (root / "val.txt").write_text("".join(f"{f} {WNIDS[c]}\n" for f, c in zip(VAL_FILES, VAL_CLASSES)))
    return root


LAYOUTS = {
    "tars + ground truth + meta listing": lambda root: with_truth(ilsvrc(root, tars=True)),
    "LOC_val_solution.csv + LOC_synset_mapping.txt": lambda root: with_kaggle(ilsvrc(root)),
    "FILE CLASS list": lambda root: with_list(ilsvrc(root)),
}


def pairs(items) -> list[tuple[str, int, bytes]]:
    """(file name, label, bytes) of each image: what decoding will see."""
    return [(Path(str(source)).name, label, source.read_bytes()) for source, label in items]


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_gives_the_images_and_labels_of_class_folders(tmp_path, layout):
    reference = scan_folder(folders(tmp_path / "folders"))
    dataset = scan_folder(LAYOUTS[layout](tmp_path / "ilsvrc"))
    assert dataset.classes == reference.classes == WNIDS
    assert pairs(dataset.train) == pairs(reference.train)
    assert sorted(pairs(dataset.val)) == sorted(pairs(reference.val))
    assert [label for _, label in sorted((Path(str(s)).name, l) for s, l in dataset.val)] == VAL_CLASSES
    if layout != "FILE CLASS list":
        assert dataset.class_names == NAMES


def test_tar_layout_prepares_the_same_pixels_as_class_folders(tmp_path):
    reference = prepare(folders(tmp_path / "folders"), size=8, workers=1, progress=False)
    data = prepare(with_truth(ilsvrc(tmp_path / "ilsvrc", tars=True)), size=8, workers=2, progress=False)
    assert np.array_equal(data.train_images, reference.train_images)
    assert np.array_equal(data.train_labels, reference.train_labels)
    assert np.array_equal(data.mean, reference.mean)
    # Class folders list val/ class by class, the flat folder by file name: compare by name.
    row = {p.name: i for i, (p, _) in enumerate(scan_folder(tmp_path / "folders").val)}
    rows = [row[name] for name in VAL_FILES]
    assert list(data.val_labels) == VAL_CLASSES == list(reference.val_labels[rows])
    assert np.array_equal(data.val_images, reference.val_images[rows])


def test_a_changed_label_file_rebuilds_the_cache(tmp_path):
    root = with_list(ilsvrc(tmp_path / "ilsvrc"))
    before = prepare(root, size=8, workers=1, progress=False)
    swapped = [1 - c if c < 2 else c for c in VAL_CLASSES]
    (root / "val.txt").write_text("".join(f"{f} {WNIDS[c]}\n" for f, c in zip(VAL_FILES, swapped)))
    after = prepare(root, size=8, workers=1, progress=False)
    assert list(before.val_labels) == VAL_CLASSES and list(after.val_labels) == swapped


def test_devkit_meta_mat_is_read_with_scipy(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    root = ilsvrc(tmp_path / "ilsvrc", tars=True)
    data = root / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{c + 1}\n" for c in VAL_CLASSES))
    synsets = np.zeros(len(WNIDS), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O")])
    for c, (w, n) in enumerate(zip(WNIDS, NAMES)):
        synsets[c] = (c + 1, w, n)
    scipy_io.savemat(data / "meta.mat", {"synsets": synsets})
    dataset = scan_folder(root)
    assert sorted((p.name, label) for p, label in dataset.val) == list(zip(VAL_FILES, VAL_CLASSES))
    assert dataset.class_names == NAMES


TINY = """network tiny
input image : 3 x 8 x 8
input label : 3 classes
f = fc(image, 3)
loss = softmax_loss(f, label)
train { batch = 4; epochs = 1; seed = 1; optimizer = sgd(lr=0.01); schedule = constant
        augment = [random_crop(8, from=8), scale(0.01)]; test = center_crop }
"""


def test_one_epoch_on_the_tar_layout_validates_with_the_ground_truth(tmp_path, monkeypatch):
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path / "cache"))
    net = tmp_path / "tiny.net"
    net.write_text(TINY)
    root = with_truth(ilsvrc(tmp_path / "ilsvrc", tars=True))
    assert main(["train", str(net), "--data", str(root), "--out", str(tmp_path / "run"),
                 "--backend", "reference", "--no-progress"]) == 0
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and not math.isnan(metrics[0]["val_top1_error"])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["classes"] == WNIDS and config["class_names"] == NAMES
    data = prepare(root, size=8, progress=False)  # the cache the run made, reused
    assert list(data.val_labels) == VAL_CLASSES


def test_list_inside_val_is_found_and_its_lines_may_come_in_any_order(tmp_path):
    root = ilsvrc(tmp_path / "ilsvrc")
    lines = [f"{f}\t{WNIDS[c]}" for f, c in zip(VAL_FILES, VAL_CLASSES)]
    (root / "val" / "labels.txt").write_text("\n\n".join(lines[::-1]) + "\n")
    dataset = scan_folder(root)
    assert [(p.name, label) for p, label in dataset.val] == list(zip(VAL_FILES, VAL_CLASSES))
    assert dataset.label_files == (root / "val" / "labels.txt",)


def test_unreadable_image_inside_a_class_tar_is_skipped_and_named(tmp_path):
    root = with_list(ilsvrc(tmp_path / "ilsvrc", tars=True))
    tar_path = root / "train" / "n01443537.tar"
    with tarfile.open(tar_path, "a") as tar:
        info = tarfile.TarInfo("broken.JPEG")
        info.size = 100
        tar.addfile(info, io.BytesIO(jpeg(0)[:100]))
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\) in .*: train/n01443537.tar/broken.JPEG"):
        data = prepare(root, size=8, workers=1, progress=False)
    assert data.skipped == ["train/n01443537.tar/broken.JPEG"]
    assert list(data.train_labels) == [0] * TRAIN_PER_CLASS + [1] * TRAIN_PER_CLASS + [2] * TRAIN_PER_CLASS


def test_tar_listing_is_kept_and_redone_when_the_tar_is_rewritten(tmp_path, monkeypatch):
    root = with_list(ilsvrc(tmp_path / "ilsvrc", tars=True))
    first = scan_folder(root).train
    index = root / ".netdsl-cache" / "tar-index" / "n01440764.tar.json"
    assert index.is_file()
    listed = []
    real_list = tars_module._list
    monkeypatch.setattr(tars_module, "_list", lambda *args: listed.append(args[0].name) or real_list(*args))
    assert scan_folder(root).train == first and listed == []
    # Same size and modification time, other members (what `cp -p` of another tar does).
    tar_path = root / "train" / "n01440764.tar"
    stat = tar_path.stat()
    with tarfile.open(tar_path, "w") as tar:
        for i in range(TRAIN_PER_CLASS):
            data = jpeg(50 + i)
            info = tarfile.TarInfo(f"other_{i}.JPEG")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    os.truncate(tar_path, stat.st_size)
    os.utime(tar_path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = scan_folder(root).train
    assert listed == ["n01440764.tar"]
    assert [m.name for m, label in again if label == 0] == [f"other_{i}.JPEG" for i in range(TRAIN_PER_CLASS)]
