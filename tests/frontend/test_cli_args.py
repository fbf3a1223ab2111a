"""Command-line arguments are checked before anything large is loaded: bad
numbers by the parser (exit 2, the option named), paths by name."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netdsl.cli import main
from netdsl.train import launch

NET = Path(__file__).resolve().parents[2] / "examples" / "lenet.net"


@pytest.mark.parametrize("argv,option", [
    (["train", str(NET), "--batch", "0"], "--batch"),
    (["train", str(NET), "--batch", "-1"], "--batch"),
    (["train", str(NET), "--epochs", "0"], "--epochs"),
    (["train", str(NET), "--epochs", "-1"], "--epochs"),
    (["train", str(NET), "--save-every", "-1"], "--save-every"),
    (["train", str(NET), "--workers", "-1"], "--workers"),
    (["train", str(NET), "--seed", "-1"], "--seed"),
    (["info", str(NET), "--batch", "0"], "--batch"),
    (["info", str(NET), "--batch", "1e30"], "--batch"),
    (["test", "--checkpoint", "c.npz", "--data", "d", "--batch", "-3"], "--batch"),
    (["prepare", "d", "--size", "0"], "--size"),
    (["prepare", "d", "--workers", "0"], "--workers"),
])
def test_bad_numbers_are_refused_by_the_parser(capsys, argv, option):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "Traceback" not in err


def no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("loaded data or a checkpoint before checking the arguments")
    monkeypatch.setattr(launch, "open_data", refuse)
    monkeypatch.setattr(launch, "checkpoint_network", refuse)


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_a_file_that_is_not_there_or_is_a_directory(tmp_path, capsys, monkeypatch, what):
    no_loading(monkeypatch)
    path = tmp_path / "x.net"
    if what == "directory":
        path.mkdir()
    for argv in (["info", str(path)], ["compile", str(path), "-o", str(tmp_path / "o")],
                 ["train", str(path), "--no-progress"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert str(path) in err and ("does not exist" if what == "missing" else "is a directory") in err


def test_out_on_an_existing_file_is_refused_before_data(tmp_path, capsys, monkeypatch):
    no_loading(monkeypatch)
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    assert main(["train", str(NET), "--out", str(blocker), "--no-progress"]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert blocker.read_text() == "mine"
    assert main(["train", str(NET), "--out", str(blocker / "run"), "--no-progress"]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["compile", str(NET), "-o", str(blocker)]) == 2
    assert blocker.read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_out_in_an_unwritable_place_is_refused(tmp_path, capsys, monkeypatch):
    no_loading(monkeypatch)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert main(["train", str(NET), "--out", str(locked / "run"), "--no-progress"]) == 2
    assert "is not writable" in capsys.readouterr().err


def test_unwritable_check_uses_the_nearest_existing_folder(tmp_path, monkeypatch):
    """The same refusal as above, shown where tests run as root: os.access answers no."""
    from netdsl import userpaths
    from netdsl.errors import NetDslError
    monkeypatch.setattr(userpaths.os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(NetDslError, match=f"{tmp_path} is not writable"):
        userpaths.check_out_dir(tmp_path / "a" / "b")


def test_predict_on_a_fifo_answers_at_once_without_loading_the_checkpoint(tmp_path, capsys, monkeypatch):
    no_loading(monkeypatch)
    fifo = tmp_path / "image.jpg"
    os.mkfifo(fifo)
    started = time.perf_counter()
    assert main(["predict", str(tmp_path / "ckpt.npz"), str(fifo)]) == 2
    assert time.perf_counter() - started < 2
    assert "is not a regular file" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["predict", "{d}/missing.npz", "{d}/image.png"],
                                  ["test", "--checkpoint", "{d}", "--data", "{d}"],
                                  ["test", "--checkpoint", "{d}/image.png", "--data", "{d}/nodata"],
                                  ["train", "--resume", "{d}/norun", "--no-progress"]])
def test_missing_run_files_are_named(tmp_path, capsys, argv):
    (tmp_path / "image.png").write_bytes(b"not really")
    assert main([a.format(d=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(tmp_path) in err and "Traceback" not in err


def test_non_image_error_names_the_file_not_a_buffer(tmp_path):
    text = launch.decoder_reason(OSError("cannot identify image file <_io.BytesIO object at 0x7f00deadbeef>"))
    assert "BytesIO" not in text and "not an image" in text


def test_closed_pipe_gives_no_traceback():
    """`netdsl ... | head`: the reader is gone before netdsl writes."""
    read, write = os.pipe()
    os.close(read)
    proc = subprocess.run([sys.executable, "-m", "netdsl", "info", str(NET)], stdout=write, stderr=subprocess.PIPE,
                          timeout=60)
    os.close(write)
    assert proc.returncode == 0
    assert b"Traceback" not in proc.stderr and b"BrokenPipe" not in proc.stderr


def test_compile_without_a_network_statement_stays_inside_out(tmp_path):
    from netdsl.graph import default_name
    assert default_name(str(tmp_path / "...net")) == "network"
    assert default_name("dir/my net.net") == "my_net"
    assert default_name("lenet.net") == "lenet"
