"""Generated command lines and damaged run directories: exit 0, or exit 2 with
a positioned or named message; never a traceback, never a hang, and never a
changed checkpoint."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from fuzzing import assert_clean, budget, run_cli
from hypothesis import given
from hypothesis import strategies as st

from netdsl.train import launch, trainer

NUMBERS = ["0", "-1", "1", "2", "3", "1e30", "x", "", "99999999999999999999", "-0", "65537"]
OPTIONS = {
    "info": ["--batch", "--set"],
    "compile": ["-o", "--dump-after", "--set"],
    "train": ["--epochs", "--batch", "--seed", "--workers", "--save-every", "--set", "--out", "--data", "--resume",
              "--backend"],
    "test": ["--checkpoint", "--data", "--batch", "--ten-crop", "--no-ten-crop", "--backend"],
    "predict": ["--backend"],
    "prepare": ["--size", "--workers"],
}
FLAGS = {"--ten-crop", "--no-ten-crop"}


class DataReached(Exception):
    """Training got as far as reading data: every argument was accepted."""


@pytest.fixture
def paths(fuzz_run, tmp_path):
    """Names a command line may use, each a different kind of path."""
    data, net, run = fuzz_run
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "file").write_text("a plain file")
    image = next((data / "val").rglob("*.jp*g"))
    return {"NET": str(net), "RUN": str(run), "CKPT": str(run / "checkpoint.npz"), "BEST": str(run / "best.npz"),
            "DATA": str(data), "IMAGE": str(image), "FIFO": str(fifo), "TEXT": str(tmp_path / "text.png"),
            "FILE": str(tmp_path / "file"), "DIR": str(tmp_path), "MISSING": str(tmp_path / "missing"),
            "NEWOUT": str(tmp_path / "new" / "out"), "EXAMPLE": str(Path(__file__).resolve().parents[2] /
                                                                     "examples" / "lenet.net")}


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


value = st.one_of(st.sampled_from(NUMBERS), st.sampled_from(
    ["NET", "RUN", "CKPT", "DATA", "IMAGE", "FIFO", "TEXT", "FILE", "DIR", "MISSING", "NEWOUT", "EXAMPLE"]),
    st.sampled_from(["act=tanh", "batch=0", "optimizer.lr=-1", "nope=1", "basic[0].c1.conv.stride=2",
                     "basic[9].c1.conv.stride=2", "unit[1].y.conv.strid=2", "=", "reference", "cpu", "infer_shapes"]))


@st.composite
def command_line(draw) -> list[str]:
    command = draw(st.sampled_from(sorted(OPTIONS)))
    argv = [command]
    if command in ("info", "compile", "train", "prepare") and draw(st.integers(0, 4)):
        argv.append(draw(st.sampled_from(["NET", "EXAMPLE", "MISSING", "DIR", "FIFO", "FILE", "DATA"])))
    if command == "predict":
        argv += [draw(st.sampled_from(["CKPT", "BEST", "MISSING", "DIR", "FILE"])),
                 *draw(st.lists(st.sampled_from(["IMAGE", "FIFO", "TEXT", "MISSING", "DIR"]), min_size=1, max_size=2))]
    for option in draw(st.lists(st.sampled_from(OPTIONS[command]), max_size=4)):
        argv.append(option)
        if option not in FLAGS:
            argv.append(draw(value))
    if command == "train":
        argv.append("--no-progress")
    return argv


@budget(300)
@given(argv=command_line())
def test_generated_command_lines(paths, monkeypatch, argv):
    def reached(*args, **kwargs):
        raise DataReached
    monkeypatch.setattr(launch, "open_data", reached)  # keeps every case short: no dataset is built or read
    argv = [paths.get(a, a) for a in argv]
    if argv[0] in ("test", "predict"):
        argv = [a if a != "cpu" else "reference" for a in argv] + ["--backend", "reference"]
    before = digest(paths["CKPT"])
    try:
        code, _, err = run_cli(argv)
    except DataReached:
        code, err = 0, ""
    assert_clean(argv, code, err)
    assert digest(paths["CKPT"]) == before


RUN_FILES = ["checkpoint.npz", "best.npz", "config.json", "metrics.jsonl", "mean.npy"]


@st.composite
def damage(draw):
    return draw(st.sampled_from(RUN_FILES)), draw(st.sampled_from(
        ["truncate", "empty", "random", "flip", "delete", "append", "drop entry", "foreign"])), draw(st.floats(0, 1))


def apply(run: Path, name: str, how: str, where: float, foreign: Path) -> None:
    path = run / name
    data = path.read_bytes()
    at = int(where * max(len(data) - 1, 0))
    if how == "truncate":
        path.write_bytes(data[:at])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "random":
        path.write_bytes(np.random.default_rng(at).bytes(max(at, 1)))
    elif how == "flip":
        path.write_bytes(data[:at] + bytes([data[at] ^ (1 << (at % 8))]) + data[at + 1:] if data else b"\1")
    elif how == "delete":
        path.unlink()
    elif how == "append":
        path.write_bytes(data + b'{"epoch": 9, "lr"')
    elif how == "drop entry" and name.endswith(".npz"):
        with np.load(path) as f:
            keys = sorted(f.files)
            arrays = {k: f[k] for k in keys if k != keys[at % len(keys)]}
        with open(path, "wb") as out:
            np.savez(out, **arrays)
    elif how == "foreign" and (foreign / name).exists():
        path.write_bytes((foreign / name).read_bytes())


@pytest.fixture(scope="module")
def foreign_run(fuzz_run, tmp_path_factory):
    """A run of a wider network: its files are foreign to the fuzz run."""
    from runfiles import TINY, train_run, write_net
    data, _, _ = fuzz_run
    root = tmp_path_factory.mktemp("foreign")
    net = write_net(root, text=TINY.replace("conv(image, 4,", "conv(image, 5,"))
    assert train_run(net, data, root / "run") == 0
    return root / "run"


@budget(150)
@given(damages=st.lists(damage(), min_size=1, max_size=2),
       command=st.sampled_from(["resume", "resume", "test", "predict"]))
def test_damaged_run_directories(fuzz_run, foreign_run, tmp_path_factory, monkeypatch, damages, command):
    data, _, run = fuzz_run
    copy = tmp_path_factory.mktemp("damaged") / "run"
    shutil.copytree(run, copy)
    for name, how, where in damages:
        if (copy / name).exists():
            apply(copy, name, how, where, foreign_run)
    monkeypatch.setattr(trainer.Trainer, "run", lambda self: [])  # a resume that is accepted trains nothing here
    ckpt = copy / "checkpoint.npz"
    before = digest(ckpt) if ckpt.exists() else None
    image = str(next((data / "val").rglob("*.jp*g")))
    argv = {"resume": ["train", "--resume", str(copy), "--epochs", "2", "--no-progress", "--backend", "reference"],
            "test": ["test", "--checkpoint", str(ckpt), "--data", str(data), "--backend", "reference"],
            "predict": ["predict", str(ckpt), image, "--backend", "reference"]}[command]
    code, _, err = run_cli(argv)
    assert_clean(argv, code, err)
    assert (digest(ckpt) if ckpt.exists() else None) == before
