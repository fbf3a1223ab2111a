"""Data the pipeline used to get wrong: 16-bit PNGs, files rewritten with their
old size and time, symbolic links that lead nowhere, and build folders of a
killed `prepare`."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from netdsl.data import build_folders
from netdsl.data.folder import DataWarning, decode_square, scan_folder
from netdsl.data.prepare import prepare

prepare_module = importlib.import_module("netdsl.data.prepare")


def test_16_bit_grayscale_png_keeps_its_levels(tmp_path):
    levels = (np.arange(16 * 16).reshape(16, 16) * 257).astype(np.uint16)  # 0 .. 65535 in 257 steps
    path = tmp_path / "grey16.png"
    Image.fromarray(levels).save(path)
    assert Image.open(path).mode.startswith("I")
    pixels = decode_square(path, 16)
    assert pixels.shape == (16, 16, 3)
    assert np.array_equal(pixels[..., 0], (levels // 257).astype(np.uint8))
    assert np.array_equal(pixels[..., 0], pixels[..., 2])


def test_rewrite_with_old_size_and_time_rebuilds(tiny_dataset):
    """What `cp -p` and `rsync -t` do: new bytes, same size, same modification time."""
    before = prepare(tiny_dataset, size=8, workers=1, progress=False)
    target = tiny_dataset / "train" / "ant" / "0.png"
    other = tiny_dataset / "train" / "ant" / "1.png"
    stat = target.stat()
    data = other.read_bytes()
    assert len(data) == stat.st_size  # random PNGs of one shape compress to one size
    target.write_bytes(data)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert target.stat().st_size == stat.st_size and target.stat().st_mtime_ns == stat.st_mtime_ns
    after = prepare(tiny_dataset, size=8, workers=1, progress=False)
    assert np.array_equal(after.train_images[0], after.train_images[1])
    assert not np.array_equal(before.train_images[0], after.train_images[0])


def test_dangling_and_looping_links_are_counted_and_named(tiny_dataset):
    folder = tiny_dataset / "train" / "bee"
    os.symlink("nowhere.png", folder / "dangling.png")
    os.symlink("loop.png", folder / "loop.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        data = prepare(tiny_dataset, size=8, workers=1, progress=False)
    assert sorted(data.skipped) == ["train/bee/dangling.png", "train/bee/loop.png"]
    message = " ".join(str(w.message) for w in caught)
    assert "skipped 2 unreadable" in message and "dangling.png" in message and "loop.png" in message


def test_build_folder_of_a_killed_prepare_is_removed(tiny_dataset):
    cache_root = tiny_dataset / ".netdsl-cache"
    cache_root.mkdir()
    abandoned = cache_root / ".8.building-deadbeef"
    abandoned.mkdir()
    (abandoned / "train_images.npy").write_bytes(b"\0" * 4096)
    (abandoned / ".owner").write_text(f"{os.uname().nodename} 999999999\n")  # no such process
    without_owner = cache_root / ".8.building-0badf00d"
    without_owner.mkdir()
    stale = cache_root / ".8.stale-12345678"
    stale.mkdir()
    running = cache_root / ".8.building-cafecafe"
    running.mkdir()
    (running / ".owner").write_text(f"{os.uname().nodename} {os.getpid()}\n")
    prepare(tiny_dataset, size=8, workers=1, progress=False)
    assert sorted(p.name for p in cache_root.iterdir()) == [".8.building-cafecafe", "8"]


def test_owner_host_is_what_prepare_writes():
    host, pid = build_folders._owner().split()
    assert host == os.uname().nodename and int(pid) == os.getpid()


def test_skipped_images_are_named_on_every_run_in_netdsl_words(tiny_dataset, capfd):
    """The cache is built by the first run and reused by the second: both say what was skipped,
    as `warning: ...`, without Python's source path or code line."""
    from netdsl.cli import main
    (tiny_dataset / "train" / "bee" / "broken.png").write_bytes(b"not an image")
    for run in range(2):
        assert main(["prepare", str(tiny_dataset), "--size", "8", "--workers", "1"]) == 0
        err = capfd.readouterr().err
        lines = [line for line in err.splitlines() if "skipped 1 unreadable" in line]
        assert len(lines) == 1 and lines[0].startswith("warning: skipped 1 unreadable image(s) in "), (run, err)
        assert "broken.png" in lines[0] and ".py:" not in err and "warnings.warn" not in err


def test_a_build_of_the_same_files_by_a_running_prepare_is_refused_not_shared(tiny_dataset):
    target = tiny_dataset / ".netdsl-cache" / "8"
    fingerprint = prepare_module._fingerprint(scan_folder(tiny_dataset), 8)
    building = build_folders.build_folder(target, fingerprint)
    building.mkdir(parents=True)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        (building / ".owner").write_text(f"{os.uname().nodename} {other.pid}\n")
        try:
            with pytest.raises(ValueError, match=f"another prepare \\(process {other.pid} on .*\\) is building"):
                prepare(tiny_dataset, size=8, workers=1, progress=False)
        finally:
            other.kill()
    assert building.is_dir() and not target.exists()
    assert prepare(tiny_dataset, size=8, workers=1, progress=False).train_images.shape[0] == 12  # its owner gone
