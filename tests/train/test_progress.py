"""Validation and testing show a bar where stderr is a terminal, and none with
--no-progress or where stderr is not a terminal (logs stay clean)."""
from __future__ import annotations

import io
import sys

from netdsl.cli import main
from netdsl.data.progress import counted

from runfiles import train_run, write_net


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_counted_yields_every_batch_and_draws_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert list(counted(iter(range(5)), 5, "testing")) == list(range(5))
    assert sys.stderr.getvalue() == ""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert list(counted(iter(range(5)), 5, "testing", False)) == list(range(5))
    assert terminal.getvalue() == ""
    assert list(counted(iter(range(5)), 5, "testing")) == list(range(5))
    assert "testing:" in terminal.getvalue() and "/5 [" in terminal.getvalue()


def test_validation_and_test_draw_a_bar_on_a_terminal(small_shapes, tmp_path, monkeypatch):
    net, run = write_net(tmp_path), tmp_path / "run"
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["train", str(net), "--data", str(small_shapes), "--out", str(run), "--backend", "reference"]) == 0
    assert "validation 1/1" in terminal.getvalue()
    terminal.seek(0), terminal.truncate()
    assert main(["test", "--checkpoint", str(run / "best.npz"), "--data", str(small_shapes),
                 "--backend", "reference"]) == 0
    assert "testing" in terminal.getvalue()
    terminal.seek(0), terminal.truncate()
    assert main(["test", "--checkpoint", str(run / "best.npz"), "--data", str(small_shapes), "--backend",
                 "reference", "--no-progress"]) == 0
    assert "testing" not in terminal.getvalue()
    terminal.seek(0), terminal.truncate()
    assert train_run(net, small_shapes, tmp_path / "quiet") == 0  # --no-progress
    assert "validation" not in terminal.getvalue()
