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


def peak_mac_rate(sizes=(256, 512, 1024), repeat: int = 20) -> float:
    """The machine's practical peak, multiply-accumulates per second on the current torch threads:
    the fastest float32 square matrix product (BLAS, the fastest dense arithmetic torch reaches on
    this CPU) over ``sizes``, best of ``repeat`` each."""
    import torch

    best = 0.0
    for size in sizes:
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b
        best = max(best, size ** 3 / best_of(repeat, lambda: a @ b))
    return best
