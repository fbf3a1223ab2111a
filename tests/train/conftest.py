from __future__ import annotations

import pytest

from netdsl.data.synthetic import make_shapes


@pytest.fixture(scope="session")
def small_shapes(tmp_path_factory):
    """10 classes x 16 training images at 32x32: seconds to train on."""
    return make_shapes(tmp_path_factory.mktemp("data") / "shapes", classes=10, train_per_class=16, val_per_class=4,
                       size=32, seed=3)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path / "cache"))
