"""Fixtures for the whole suite."""
from __future__ import annotations

import os

import pytest

# One BLAS thread per test process (and for the `netdsl` processes tests
# start), set before numpy loads OpenBLAS. The tests' matrices are small, and
# where the cores are busy OpenBLAS's spinning threads made the same tests
# several times slower: the training and reference-executor tests took 28 s
# with one thread against 53-82 s with two on a loaded 2-core machine. An
# OPENBLAS_NUM_THREADS already set wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


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
