"""Operator frequency from the DX7's oscillator mode, coarse, fine and detune settings.

Sources: Yamaha DX7 Operation Manual (ratio mode: coarse 0 means 0.5, fine adds 1 % of the
coarse value per step; fixed mode: 1, 10, 100 or 1000 Hz times 10^(fine/100)).
"""

from __future__ import annotations

import numpy as np


def frequency_ratio(coarse, fine):
    """Frequency ratio of a ratio-mode operator (multiplier of the note's f0).

    Args:
        coarse: 0-31 (0 stands for 0.5), scalar or array.
        fine: 0-99, each step adds 1 % of the coarse value, scalar or array.

    Returns:
        ratio as float (or float array), e.g. coarse 1 fine 50 -> 1.5, coarse 0 fine 0 -> 0.5.
    """
    coarse = np.asarray(coarse, dtype=np.float64)
    base = np.where(coarse == 0, 0.5, coarse)
    # (100 + fine) / 100 rather than 1 + fine / 100: 7 * 121 / 100 is exactly the float 8.47.
    out = base * (100.0 + np.asarray(fine, dtype=np.float64)) / 100.0
    return float(out) if out.ndim == 0 else out


def fixed_frequency(coarse, fine):
    """Frequency in Hz of a fixed-mode operator (detune not applied).

    Args:
        coarse: 0-31; only ``coarse % 4`` counts (1, 10, 100, 1000 Hz).
        fine: 0-99, a logarithmic step of 10^(1/100) each (so fine 99 almost reaches the next decade).

    Returns:
        frequency in Hz, e.g. coarse 2 fine 0 -> 100.0, coarse 3 fine 99 -> 9772.4.
    """
    exponent = np.asarray(coarse, dtype=np.int64) % 4 + np.asarray(fine, dtype=np.float64) / 100.0
    out = np.power(10.0, exponent)
    return float(out) if out.ndim == 0 else out
