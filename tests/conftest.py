"""Fixtures for the whole suite."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """Point every cache netdsl writes (built-in datasets, compiled kernels,
    prepared images of read-only folders) at a directory of this test session,
    so the tests never read stale files from, or write into, the user's cache.

    NETDSL_CACHE is netdsl's own setting; XDG_CACHE_HOME too, because it is the
    fallback of everything that does not read NETDSL_CACHE. Subprocesses the
    tests start (the `netdsl` command) inherit both.
    """
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NETDSL_CACHE", str(root / "netdsl"))
        patch.setenv("XDG_CACHE_HOME", str(root / "xdg"))
        yield root
