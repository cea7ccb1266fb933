"""DX7 operator levels: the output-level curve, modulation index, velocity and keyboard scaling.

Every function takes plain numbers or numpy arrays and returns the same shape (a Python scalar
for scalar input). Levels are the DX7's 0-99 panel values; amplitudes are linear, with an
operator at output level 99 and EG level 99 being 1.0.

The engine's own unit, used internally here and in :mod:`dx7tools.envelope`, is the
*microstep*: 1/256 of an octave of amplitude, ``20*log10(2)/256`` ~ 0.0235 dB. The DX7 adds its
level contributions (output level, EG level, keyboard level scaling, velocity) as numbers in
that log domain and turns the sum into a linear gain only at the very end.

Sources of the curves and constants
-----------------------------------
* Output-level curve (:func:`scale_level`): the MSFA engine (Raph Levien, Google, 2012) as used
  in Dexed (``Source/msfa/env.cc``: ``levellut`` and ``scaleoutlevel``). Output levels 0-19 go
  through a 20-entry lookup table, 20-99 map to ``level + 28``, giving the 0-127 internal scale
  of the DX7 (its "TL" attenuation steps). One internal step is 32 microsteps = 1/8 octave =
  0.753 dB. Measured against dexed-py 0.3.0 (16 kHz, OP1 alone): the carrier's amplitude
  falls by 0.7526 dB per output-level step from 99 down to 20, and output level 0 and 1 are
  silent, as this curve predicts.
* Engine offsets: an operator's level in microsteps is
  ``(scale_level(eg_level) >> 1) * 64 + scale_level(output_level) * 32 - 4256``, floored at 16
  (MSFA ``Env::advance`` / ``Dx7Note::init``). Output level 99 with EG level 99 gives 3840
  microsteps, which is amplitude 1.0 here. Dexed's floor (16) is ~90 dB down and comes out of
  the Mark I engine as digital silence, so it is treated as exactly 0.
* Modulation index (:func:`output_level_to_index`): in the engine, phase is a fraction of a
  cycle (Q24) and a modulator's output is added to its target's phase, so a modulator output
  of 1.0 (engine units) shifts the phase by one whole cycle. A modulator at output level 99 and
  EG level 99 sits at 3840 microsteps, i.e. 2^(3840/256 - 14) = 2.0 engine units: *two* cycles,
  so the peak phase deviation is ``4*pi*amplitude`` radians, not ``2*pi*amplitude``.
  VERIFIED against dexed-py 0.3.0 (Mark I engine): OP2 -> OP1 in algorithm 1 at MIDI 36, the
  carrier's sideband amplitudes fitted with Bessel functions |J_k(beta)| give
  beta / (4*pi*amplitude) = 0.9994 for every output level tried (50-99; beta = 12.559 at 99,
  4*pi = 12.566), i.e. twice the ``2*pi*amplitude`` of a one-cycle-per-unit reading. See
  tests/test_levels_envelope.py.
* Velocity sensitivity (:func:`velocity_offset`): the 64-entry velocity table and the formula
  ``((sensitivity * (table[velocity >> 1] - 239) + 7) >> 3) << 4`` microsteps, from MSFA
  ``dx7note.cc`` (``velocity_data``, ``ScaleVelocity``). Velocity 100 at any sensitivity is
  within +16 microsteps (0.4 dB) of full level; velocity 0 at sensitivity 7 is -3344
  microsteps (-78.6 dB).
* Keyboard level scaling (:func:`keyboard_level_scaling`): MSFA ``ScaleLevel``/``ScaleCurve``
  and its 33-entry exponential table ``exp_scale_data``. The key offset is
  ``note - breakpoint - 17`` (breakpoint value b is MIDI note b + 21, 39 = C3 = MIDI 60, so the
  offset counts from 4 semitones above the breakpoint key), grouped in threes away from it; the
  linear curves add ``group * depth * 329 / 4096`` internal steps and the exponential curves
  ``table[group] * depth * 329 / 32768``; curves 0 (-LIN) and 1 (-EXP) attenuate, 2 (+EXP) and
  3 (+LIN) boost (the sum is capped at internal step 127). Curve numbering is the DX7 manual's.
* Velocity and keyboard scaling were checked against dexed-py through the envelope (OP1's
  level at random velocities, sensitivities, breakpoints, depths and curves: within 0.5 dB,
  Dexed's output quantisation at -54 dB).
"""

from __future__ import annotations

import numpy as np

from .errors import DX7Error

MICROSTEP_DB = 20.0 * np.log10(2.0) / 256.0
"""dB per engine microstep (1/256 octave of amplitude), ~0.0235 dB."""
STEP_DB = 32 * MICROSTEP_DB
"""dB per step of the 0-127 internal output-level scale (1/8 octave), ~0.753 dB."""
FULL_SCALE = 3840
"""Microsteps of an operator at output level 99 and EG level 99: amplitude 1.0."""
FLOOR = 16
"""Lowest engine level (microsteps); the engine clamps every target here. Treated as silence."""
ENGINE_OFFSET = 4256
"""Microsteps subtracted when EG level and output level are added (MSFA ``Env::advance``)."""
MAX_INDEX = 4.0 * np.pi
"""Modulation index (radians of peak phase deviation) of a modulator at amplitude 1.0."""

# MSFA levellut: the internal 0-127 level for output levels 0-19 (20 and up are level + 28).
_LOW_LEVELS = np.array([0, 5, 9, 13, 17, 20, 23, 25, 27, 29, 31, 33, 35, 37, 39, 41, 42, 43, 45, 46])
# The whole curve as a table, for the inverse (strictly increasing, so np.interp can invert it).
_SCALED = np.concatenate([_LOW_LEVELS, np.arange(20, 100) + 28])

# MSFA velocity_data (64 entries, indexed by velocity >> 1); 239 is the table value of "no change".
_VELOCITY_TABLE = np.array([
    0, 70, 86, 97, 106, 114, 121, 126, 132, 138, 142, 148, 152, 156, 160, 163,
    166, 170, 173, 174, 178, 181, 184, 186, 189, 190, 194, 196, 198, 200, 202,
    205, 206, 209, 211, 214, 216, 218, 220, 222, 224, 225, 227, 229, 230, 232,
    233, 235, 237, 238, 240, 241, 242, 243, 244, 246, 246, 248, 249, 250, 251,
    252, 253, 254,
])
_VELOCITY_NEUTRAL = 239

# MSFA exp_scale_data: the exponential level-scaling curve per group of three keys.
_EXP_SCALE = np.array([
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 14, 16, 19, 23, 27, 33, 39, 47, 56, 66,
    80, 94, 110, 126, 142, 158, 174, 190, 206, 222, 238, 250,
])

CURVE_NAMES = ("-LIN", "-EXP", "+EXP", "+LIN")
"""Keyboard level-scaling curves by their stored value 0-3 (DX7 manual names)."""


def _out(x):
    """A 0-d array becomes a Python scalar; anything else is returned as is."""
    x = np.asarray(x)
    return x.item() if x.ndim == 0 else x


def _as_int(name: str, value, low: int, high: int) -> np.ndarray:
    """``value`` as an int64 array, or :class:`DX7Error` if it is not whole numbers in range."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf" and arr.dtype != bool:
        raise DX7Error(f"{name} must be a number or an array of numbers, got {value!r}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise DX7Error(f"{name} must be whole numbers {low}-{high}, got {value!r}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < low or arr.max() > high):
        bad = arr[(arr < low) | (arr > high)].flat[0]
        raise DX7Error(f"{name} must be {low}-{high}, got {int(bad)}")
    return arr


def _as_float(name: str, value, low: float = 0.0) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if np.any(np.isnan(arr)) or np.any(arr < low):
        raise DX7Error(f"{name} must be >= {low:g} (and not NaN), got {value!r}")
    return arr


# -- the output-level curve ---------------------------------------------------------------------
def scale_level(level):
    """The DX7's internal 0-127 level for a panel level 0-99 (MSFA ``scaleoutlevel``).

    Args:
        level: output or EG level 0-99, scalar or array.

    Returns:
        int (or int array) 0-127; each step is 0.753 dB. 0-19 follow a table, 20-99 are +28.
    """
    return _out(_SCALED[_as_int("level", level, 0, 99)])


def microsteps_to_amplitude(microsteps):
    """Linear amplitude of an engine level in microsteps (1/256 octave).

    3840 (output level 99, EG level 99) is 1.0; the engine floor (16) and below is exactly 0.

    Args:
        microsteps: engine level, scalar or array (float allowed: interpolated envelopes).

    Returns:
        float amplitude, ``2 ** ((microsteps - 3840) / 256)``, 0.0 at or below the floor.
    """
    m = np.asarray(microsteps, dtype=np.float64)
    amp = np.where(m > FLOOR, np.exp2((m - FULL_SCALE) / 256.0), 0.0)
    return _out(amp)


def output_level_to_amplitude(level):
    """Linear amplitude of an operator at output level ``level`` with its EG at level 99.

    Args:
        level: output level 0-99, scalar or array.

    Returns:
        float amplitude: 1.0 at 99, 0.753 dB less per internal step (about per level above 20),
        exactly 0.0 at level 0. (Level 1, 2.5e-5 nominally, is also silent in Dexed: the engine
        floors it; it is kept nominal here so that the curve stays invertible.)
    """
    lv = _as_int("output level", level, 0, 99)
    amp = np.where(lv > 0, np.exp2((_SCALED[lv] - 127) / 8.0), 0.0)
    return _out(amp)


def amplitude_to_output_level(amplitude):
    """Inverse of :func:`output_level_to_amplitude`: the (fractional) output level of an amplitude.

    Between table points the internal scale is interpolated linearly, so whole levels map back
    exactly. Amplitudes above 1.0 give 99, 0 (and anything below level 0's nominal 1.7e-5) gives 0.

    Args:
        amplitude: linear amplitude >= 0, scalar or array.

    Returns:
        float output level in 0..99.
    """
    amp = _as_float("amplitude", amplitude)
    with np.errstate(divide="ignore"):
        scaled = 127.0 + 8.0 * np.log2(amp)  # -inf for 0, which np.interp clips to level 0
    return _out(np.interp(scaled, _SCALED, np.arange(100, dtype=np.float64)))


def round_output_level(amplitude):
    """The whole output level 0-99 nearest (on the DX7's level scale) to ``amplitude``."""
    return _out(np.rint(np.asarray(amplitude_to_output_level(amplitude))).astype(np.int64))


# -- modulation index ---------------------------------------------------------------------------
def output_level_to_index(level):
    """Modulation index of a modulator at output level ``level`` with its EG at full level.

    The index is the peak phase deviation (radians) it causes in the operator it modulates:
    ``4 * pi * output_level_to_amplitude(level)`` -- 12.57 rad at level 99 (see the module
    notes: verified against Dexed's sidebands).

    Args:
        level: output level 0-99, scalar or array.

    Returns:
        float index in radians.
    """
    return _out(MAX_INDEX * np.asarray(output_level_to_amplitude(level)))


def index_to_output_level(index):
    """Inverse of :func:`output_level_to_index`: the fractional output level for an index (rad)."""
    return amplitude_to_output_level(_as_float("modulation index", index) / MAX_INDEX)


# -- velocity ------------------------------------------------------------------------------------
def velocity_offset(velocity, sensitivity):
    """Level change from key velocity, in microsteps (1/256 octave, 0.0235 dB).

    Args:
        velocity: MIDI velocity 0-127, scalar or array.
        sensitivity: KEY VELOCITY SENSITIVITY 0-7 (0: velocity ignored).

    Returns:
        int microsteps (<= 0 except +16..+224 for loud notes near 127; 0 at sensitivity 0).
        E.g. sensitivity 7: velocity 127 -> +224 (+5.3 dB), 64 -> -448 (-10.5 dB).
    """
    vel = _as_int("velocity", velocity, 0, 127)
    sens = _as_int("velocity sensitivity", sensitivity, 0, 7)
    raw = _VELOCITY_TABLE[vel >> 1] - _VELOCITY_NEUTRAL
    # Floor division like the engine's arithmetic shift, then whole steps of 16 microsteps.
    return _out(((sens * raw + 7) >> 3) << 4)


def velocity_gain(velocity, sensitivity):
    """Linear gain factor of :func:`velocity_offset` (1.0 at sensitivity 0)."""
    return _out(np.exp2(np.asarray(velocity_offset(velocity, sensitivity)) / 256.0))


# -- keyboard level scaling ---------------------------------------------------------------------
def keyboard_level_scaling(note, breakpoint, left_depth, right_depth, left_curve, right_curve):
    """Level change from keyboard level scaling, in internal steps (0.753 dB each).

    Args:
        note: MIDI note 0-127, scalar or array.
        breakpoint: KBD LEV SCL BRK PT 0-99 (0 = A-1, 39 = C3 = MIDI 60).
        left_depth, right_depth: 0-99.
        left_curve, right_curve: 0 -LIN, 1 -EXP, 2 +EXP, 3 +LIN.

    Returns:
        int internal steps, negative for the "-" curves; added to :func:`scale_level` of the
        output level (the sum is capped at 127 by the engine).
    """
    n = _as_int("note", note, 0, 127)
    bp = _as_int("breakpoint", breakpoint, 0, 99)
    depths = (_as_int("left depth", left_depth, 0, 99), _as_int("right depth", right_depth, 0, 99))
    curves = (_as_int("left curve", left_curve, 0, 3), _as_int("right curve", right_curve, 0, 3))
    offset = n - bp - 17
    right = offset >= 0
    # Groups of three keys counted away from the breakpoint on either side.
    group = np.where(right, (offset + 1) // 3, (1 - offset) // 3)
    depth = np.where(right, depths[1], depths[0])
    curve = np.where(right, curves[1], curves[0])
    linear = (group * depth * 329) >> 12
    exponential = (_EXP_SCALE[np.minimum(group, len(_EXP_SCALE) - 1)] * depth * 329) >> 15
    scale = np.where((curve == 0) | (curve == 3), linear, exponential)
    return _out(np.where(curve < 2, -scale, scale))


def operator_outlevel(output_level, *, note=60, velocity=100, velocity_sensitivity=0,
                      breakpoint=39, left_depth=0, right_depth=0, left_curve=0, right_curve=0):
    """The engine's per-operator output level in microsteps, key scaling and velocity included.

    ``(min(127, scale_level(output_level) + keyboard_level_scaling(...)) << 5) + velocity_offset``
    floored at 0 (MSFA ``Dx7Note::init``). The EG adds this to each of its levels; with the
    defaults (no scaling) output level 99 gives 4064.

    Args:
        output_level: 0-99, scalar or array.
        note: MIDI note 0-127 (for keyboard level scaling).
        velocity: MIDI velocity 0-127.
        velocity_sensitivity: 0-7.
        breakpoint, left_depth, right_depth, left_curve, right_curve: keyboard level scaling
            parameters as in :func:`keyboard_level_scaling` (defaults: none).

    Returns:
        int microsteps, 0..4288.
    """
    kls = keyboard_level_scaling(note, breakpoint, left_depth, right_depth, left_curve, right_curve)
    return outlevel_microsteps(output_level, kls, velocity_offset(velocity, velocity_sensitivity))


def outlevel_microsteps(output_level, level_scaling=0, velocity_microsteps=0):
    """Combine an output level with level-scaling steps and a velocity offset, as the engine does.

    ``max(0, min(127, scale_level(output_level) + level_scaling) * 32 + velocity_microsteps)``.

    Args:
        output_level: 0-99.
        level_scaling: internal steps (:func:`keyboard_level_scaling`).
        velocity_microsteps: microsteps (:func:`velocity_offset`).

    Returns:
        int microsteps (4064 for output level 99 alone).
    """
    scaled = np.asarray(scale_level(output_level)) + np.asarray(level_scaling, dtype=np.int64)
    scaled = np.minimum(127, scaled)
    return _out(np.maximum(0, scaled * 32 + np.asarray(velocity_microsteps, dtype=np.int64)))
