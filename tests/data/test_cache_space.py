"""The cache's size is announced before decoding and a cache that will not fit is refused."""

from __future__ import annotations

import collections
import importlib
import shutil

import pytest

from netdsl.cli import main
from netdsl.data.cache_space import bytes_on_disk, cache_bytes, check_space
from netdsl.data.prepare import prepare

prepare_module = importlib.import_module("netdsl.data.prepare")


def on_disk(directory) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def test_the_estimate_covers_the_cache_as_written_and_is_close(tiny_dataset, tmp_path):
    data = prepare(tiny_dataset, size=16, cache_dir=tmp_path / "c", progress=False)
    written, estimate = on_disk(data.cache_dir), cache_bytes(12 + 5, 16)
    assert written <= estimate
    pixels = 17 * 16 * 16 * 3
    assert estimate - written < (1 << 20) + 16 * 16 * 3 * 4 + 17 * 8  # only the fixed allowance is slack
    assert written > pixels


def test_a_cache_too_big_for_the_disk_is_one_line_exit_2_before_decoding(tiny_dataset, monkeypatch, capsys):
    Usage = collections.namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**6, 10**6 - 1000, 1000))
    decoded = []
    monkeypatch.setattr(prepare_module, "_build", lambda *a: decoded.append(a))
    assert main(["prepare", str(tiny_dataset), "--size", "16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "need" in err[0] and "17 images at 16 px" in err[0]  # announced first
    assert len(err) == 2 and "needs" in err[1] and "only 1.0 kB free" in err[1] and err[1].startswith("error:"), err
    assert not decoded
    target = prepare_module.default_cache_dir(tiny_dataset, 16)
    assert not target.exists() and not list(target.parent.glob(f".{target.name}.building-*"))


def test_a_resumed_build_needs_only_what_is_not_written_yet(tmp_path, monkeypatch, capsys):
    Usage = collections.namedtuple("Usage", "total used free")
    total = cache_bytes(1000, 64)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**12, 0, total - 4 * 10**6))
    with pytest.raises(ValueError, match=r"needs 13\.4 MB but"):
        check_space(tmp_path, 1000, 64, announce=False)
    built = tmp_path / "build"
    built.mkdir()
    (built / "train_images.npy").write_bytes(b"\1" * 5 * 10**6)  # written blocks, not a sparse length
    assert check_space(tmp_path, 1000, 64, announce=True, built=built) <= total - 5 * 10**6
    assert "5.0 MB of it already written" in capsys.readouterr().err
    with open(built / "val_images.npy", "wb") as sparse:
        sparse.truncate(10**9)  # as open_memmap makes an image file: long, with nothing written
    assert bytes_on_disk(built) < 6 * 10**6
