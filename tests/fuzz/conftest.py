"""A tiny finished run shared by the fuzz cases that need run files."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))  # runfiles: the tiny network and its run

from runfiles import train_run, write_net  # noqa: E402

from netdsl.data.synthetic import make_shapes  # noqa: E402


@pytest.fixture(scope="session")
def fuzz_run(tmp_path_factory):
    """(data folder, the tiny network, its finished one-epoch run directory)."""
    root = tmp_path_factory.mktemp("fuzzrun")
    data = make_shapes(root / "shapes", classes=10, train_per_class=4, val_per_class=2, size=16, seed=5)
    net = write_net(root)
    assert train_run(net, data, root / "run") == 0
    return data, net, root / "run"
