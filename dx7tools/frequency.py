"""Operator frequency from the DX7's oscillator mode, coarse, fine and detune settings.

Sources: Yamaha DX7 Operation Manual (ratio mode: coarse 0 means 0.5, fine adds 1 % of the
coarse value per step; fixed mode: 1, 10, 100 or 1000 Hz times 10^(fine/100)).

Detune (OSC DETUNE 0-14, 7 = none) follows Dexed's engine (``Source/msfa/dx7note.cc``,
``osc_freq``), whose constants its author measured on a DX7:

* ratio mode: the note's pitch, as log2(f0), is scaled by ``1 + c * (detune - 7)`` with
  ``c = 0.0209 * exp(-0.396 * log2(f0)) / 7``, before the coarse/fine ratio is applied. The
  shift is therefore pitch dependent: about 2.0 cents per step at C1 (MIDI 36), 1.2 cents at C3
  (MIDI 60), 0.97 cent at A4 (so +-7 steps span +-14 cents at C1, +-8.4 cents at C3); the
  sign flips for f0 below 1 Hz, never reached by a MIDI note.
* fixed mode: detune only raises the pitch, by 13457 / 2^24 octave (0.963 cent) per step above 7;
  detune 0-7 leave it unchanged.

Measured against dexed-py 0.3.0 (OP1 alone, phase-slope frequency estimate over 1 s):
the predicted frequencies agree to 1e-6 relative (e.g. MIDI 36, coarse 8, detune 0/14:
519.0714/527.4628 Hz measured, 519.0721/527.4639 Hz predicted; fixed 316.23 Hz, detune 14:
317.4602 measured, 317.4609 predicted).
"""

from __future__ import annotations

import numpy as np

from .errors import DX7Error


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


# Dexed/MSFA detune constants (see the module notes).
DETUNE_SCALE = 0.0209 / 7.0
DETUNE_DECAY = 0.396
FIXED_DETUNE_OCTAVES = 13457.0 / (1 << 24)


def _detune_steps(detune) -> np.ndarray:
    d = np.asarray(detune)
    if d.dtype.kind not in "iuf" or np.any(d != np.round(d)) or np.any((d < 0) | (d > 14)):
        raise DX7Error(f"detune must be whole numbers 0-14 (7 = centre), got {detune!r}")
    return d.astype(np.float64) - 7.0


def _positive_hz(name: str, value) -> np.ndarray:
    f = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(f)) or np.any(f <= 0):
        raise DX7Error(f"{name} must be finite and > 0 Hz, got {value!r}")
    return f


def detune_ratio(detune, f0_hz, *, fixed=False):
    """Frequency multiplier of OSC DETUNE, as Dexed applies it.

    Args:
        detune: 0-14 (7 = no change), scalar or array.
        f0_hz: the note's fundamental (Hz, > 0), scalar or array; broadcast with ``detune``.
            Ignored in fixed mode.
        fixed: True for a fixed-frequency operator (detune raises the pitch only, 0.963 cent
            per step above 7).

    Returns:
        float multiplier (1.0 at detune 7), e.g. MIDI 60 (261.63 Hz), detune 14: 1.00491
        (+8.4 cents); fixed mode, detune 14: 1.00390 (+6.7 cents).
    """
    steps = _detune_steps(detune)
    if fixed:
        shift = np.exp2(FIXED_DETUNE_OCTAVES * np.maximum(steps, 0.0))
        out = shift * np.ones_like(np.asarray(f0_hz, dtype=np.float64))  # broadcast like f0
    else:
        # Dexed scales the note's log2 frequency itself, so lower notes shift more (in cents).
        log_f0 = np.log2(_positive_hz("f0_hz", f0_hz))
        out = np.exp2(DETUNE_SCALE * np.exp(-DETUNE_DECAY * log_f0) * log_f0 * steps)
    return float(out) if out.ndim == 0 else out


def detune_hz(detune, f0_hz, *, fixed=False, base_hz=None):
    """Frequency shift in Hz caused by OSC DETUNE.

    Args:
        detune: 0-14 (7 = none).
        f0_hz: the note's fundamental (Hz).
        fixed: fixed-frequency operator (see :func:`detune_ratio`).
        base_hz: the operator's undetuned frequency; default ``f0_hz``.

    Returns:
        float Hz (negative below 7 in ratio mode), broadcast over the arguments.
    """
    base = np.asarray(f0_hz if base_hz is None else base_hz, dtype=np.float64)
    out = base * (np.asarray(detune_ratio(detune, f0_hz, fixed=fixed)) - 1.0)
    return float(out) if out.ndim == 0 else out


def operator_frequency(mode, coarse, fine, detune, f0_hz):
    """Frequency in Hz of an operator playing a note of fundamental ``f0_hz``.

    Args:
        mode: 0 = ratio (f0 x coarse/fine ratio), 1 = fixed (coarse/fine give Hz).
        coarse: 0-31.
        fine: 0-99.
        detune: 0-14 (7 = none); pitch-dependent in ratio mode, upward-only in fixed mode.
        f0_hz: the note's fundamental in Hz (> 0), scalar or array (e.g. one per frame).

    Returns:
        float Hz (array if any argument is an array), e.g. ratio mode coarse 1, detune 7:
        ``f0_hz`` itself; fixed mode coarse 2, fine 0: 100.0 Hz for every f0.
    """
    m = np.asarray(mode)
    if np.any((m != 0) & (m != 1)):
        raise DX7Error(f"mode must be 0 (ratio) or 1 (fixed), got {mode!r}")
    f0 = _positive_hz("f0_hz", f0_hz)
    ratio_hz = f0 * np.asarray(frequency_ratio(coarse, fine)) * np.asarray(detune_ratio(detune, f0))
    fixed_hz = np.asarray(fixed_frequency(coarse, fine)) * np.asarray(detune_ratio(detune, f0, fixed=True))
    out = np.where(m == 1, fixed_hz, ratio_hz)
    return float(out) if out.ndim == 0 else out
