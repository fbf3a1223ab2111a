"""Building generated C: the cache, its location, failures, and the BLAS it links."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

from netdsl.runtime import cbuild

SOURCE = """
#include <stdint.h>
void netdsl_test_scale(const float *restrict x, float *restrict y, int64_t n, float by)
{
    #pragma omp parallel for
    for (int64_t i = 0; i < n; ++i)
        y[i] = x[i] * by;
}
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path))
    return tmp_path / "kernels"


def test_build_caches_by_source_under_netdsl_cache(cache):
    path = cbuild.build(SOURCE)
    assert path.parent == cache and path.suffix == ".so"
    stamp = path.stat().st_mtime_ns
    assert cbuild.build(SOURCE) == path and path.stat().st_mtime_ns == stamp, "a cached library is not rebuilt"
    assert cbuild.build(SOURCE + "\n/* changed */\n") != path
    assert not [p for p in cache.iterdir() if p.name.startswith(".build-")], "no temporary left behind"


def test_loaded_library_runs(cache):
    library = cbuild.load(SOURCE)
    function = library.netdsl_test_scale
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_float]
    x = np.arange(100_000, dtype=np.float32)
    y = np.empty_like(x)
    function(x.ctypes.data, y.ctypes.data, x.size, 0.5)
    np.testing.assert_array_equal(y, x * np.float32(0.5))


def test_compiler_errors_carry_the_diagnostics(cache):
    with pytest.raises(cbuild.BuildError, match="undeclared"):
        cbuild.build("void broken(void) { return missing; }")


def test_blas_is_found_and_exports_its_sgemm():
    blas = cbuild.find_blas()
    if blas is None:
        pytest.skip("no CBLAS library on this machine")
    assert blas.library.is_absolute() and blas.library.exists()
    assert hasattr(ctypes.CDLL(str(blas.library)), blas.sgemm)
    assert blas.int_type == ("int64_t" if blas.sgemm.endswith("64_") else "int")
    assert f"-DNETDSL_CBLAS_SGEMM={blas.sgemm}" in blas.flags
