"""Timing helper shared by the benchmark scripts."""

from __future__ import annotations

import time


def best_of(repeat: int, fn) -> float:
    """Shortest wall time (s) of ``repeat`` calls of ``fn()``."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
