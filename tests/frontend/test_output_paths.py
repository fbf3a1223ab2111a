"""Every output path that cannot be written gives one line, exit 2, no
traceback and nothing written: a missing or unwritable parent, a file where
a folder should be, and a run folder that turns read-only mid-run.

As root, chmod does not stop writes, so the unwritable-folder case runs only
for other users; the file-where-a-folder-should-be cases run for everyone."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from netdsl.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LENET = str(EXAMPLES / "lenet.net")


def commands(target: Path) -> dict[str, list[str]]:
    """Each command writing into `target` (a folder or a file path under it)."""
    return {
        "compile -o": ["compile", LENET, "-o", str(target / "out")],
        "train --out": ["train", LENET, "--out", str(target / "run"), "--backend", "reference", "--no-progress"],
        "make-dataset": ["make-dataset", "shapes", str(target / "shapes")],
        "export -o": ["export", "nothing.npz", "-o", str(target / "model.onnx")],
        "show filters -o": ["show", "filters", "nothing", "-o", str(target / "filters.png")],
        "show saliency -o": ["show", "saliency", "nothing.npz", "image.png", "-o", str(target / "s.png")],
        "compare -o": ["compare", "nothing", "-o", str(target / "compare.png")],
    }


def expect_one_line(capsys, *parts: str) -> None:
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and all(part in errors[0] for part in parts), captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("name", list(commands(Path("x"))))
def test_output_under_a_file(tmp_path, capsys, name):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(commands(blocker)[name]) == 2
    expect_one_line(capsys, str(blocker), "not a directory")
    assert blocker.read_text() == "not a folder" and sorted(tmp_path.iterdir()) == [blocker]


@pytest.mark.parametrize("name", ["compile -o", "train --out", "make-dataset"])
def test_output_folder_that_is_a_file(tmp_path, capsys, name):
    argv = commands(tmp_path)[name]
    target = Path(argv[argv.index(next(a for a in argv if a.startswith(str(tmp_path))))])
    target.write_text("a file")
    assert main(argv) == 2
    expect_one_line(capsys, f"{target} exists and is not a directory")
    assert target.read_text() == "a file"


@pytest.mark.parametrize("name", ["export -o", "show filters -o", "compare -o"])
def test_output_file_that_is_a_folder(tmp_path, capsys, name):
    argv = commands(tmp_path)[name]
    target = Path(argv[-1])
    target.mkdir()
    assert main(argv) == 2
    expect_one_line(capsys, f"-o {target} is a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="as root, a folder without write permission is still written to")
@pytest.mark.parametrize("name", list(commands(Path("x"))))
def test_output_into_an_unwritable_folder(tmp_path, capsys, name):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert main(commands(locked)[name]) == 2
        expect_one_line(capsys, "is not writable")
        assert not list(locked.iterdir())
    finally:
        locked.chmod(0o755)


def test_run_folder_turned_read_only_mid_run(tmp_path, capsys, monkeypatch):
    """The first checkpoint write fails as a read-only folder makes it fail (simulated, since
    root writes anyway): one line naming the file, exit 2, no traceback."""
    from netdsl.data.synthetic import make_shapes
    from netdsl.train import trainer
    data = make_shapes(tmp_path / "shapes", classes=10, train_per_class=8, val_per_class=2, size=32, seed=1)
    run = tmp_path / "run"

    def refused(self, name="checkpoint.npz"):
        raise PermissionError(errno.EROFS, os.strerror(errno.EROFS), str(self.run_dir / name))

    monkeypatch.setattr(trainer.Trainer, "save", refused)
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path / "cache"))
    assert main(["train", LENET, "--data", str(data), "--out", str(run), "--backend", "reference",
                 "--no-progress", "--set", "epochs=1", "--batch", "16"]) == 2
    expect_one_line(capsys, f"error: cannot write or read {run / 'checkpoint.npz'}: {os.strerror(errno.EROFS)}")
    assert not (run / "checkpoint.npz").exists()


def test_compile_stopped_by_a_full_disk_mid_write_leaves_each_file_whole(tmp_path, capsys, monkeypatch):
    """A disk that fills while plan.json is half written: one line, exit 2, and every file in
    the folder is the earlier compile's or this one's, never half of one, with no leftovers."""
    out = tmp_path / "out"
    assert main(["compile", LENET, "-o", str(out), "--target", "c"]) == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    capsys.readouterr()
    write_text = Path.write_text

    def disk_full_in_plan(self, text, *args, **kwargs):
        if self.name.endswith("plan.json.partial"):
            write_text(self, text[: len(text) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full_in_plan)
    assert main(["compile", LENET, "-o", str(out), "--target", "c", "--set", "act=tanh"]) == 2
    expect_one_line(capsys, "cannot write or read", "plan.json.partial", os.strerror(errno.ENOSPC))
    after = {path.name: path.read_bytes() for path in out.iterdir()}
    assert sorted(after) == sorted(before)  # no .partial file left behind
    assert after["plan.json"] == before["plan.json"]  # the old plan, whole
    assert after["kernels.c"] != before["kernels.c"]  # written before the disk filled: the new one, whole
