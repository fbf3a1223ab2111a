"""The one timing rule every benchmark here uses."""
from __future__ import annotations

import statistics
import time


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of `repeats` calls after one warm-up call (page faults on
    fresh buffers, caches, lazy initialisation)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
