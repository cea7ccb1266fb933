"""The DX7 envelope generator (EG) as numpy: per-frame operator amplitude for a held note.

The model follows the DX7 EG as implemented in the MSFA engine inside Dexed, with the same
integer arithmetic, but instead of stepping block by block it computes the few corners of
the envelope in closed form and interpolates between them:

* The EG works in the engine's log-amplitude domain (Q24: 2^24 per octave; one "microstep" is
  2^16 of those, 1/256 octave, 0.0235 dB) and updates once per block of 64 samples.
* Each of the four stages heads for a target ``(scale_level(L) >> 1) * 64 + outlevel - 4256``
  microsteps (floored at 16), where ``outlevel`` is the operator's output level with keyboard
  scaling and velocity (:func:`dx7tools.levels.operator_outlevel`).
* Rate 0-99 becomes a "qrate" ``rate * 41 >> 6`` (0-63) plus the rate-scaling delta; the step per
  block is ``(4 + qrate % 4) << (8 + qrate // 4)`` Q24 units at 44.1 kHz (scaled by 44100/fs):
  every 4 qrates double the speed.
* Falling stages (decays, release) step by that amount: linear in dB.
* Rising stages (attacks) first jump to 1716 microsteps (50 dB below full scale) if below it -- the
  DX7's attack "jump" -- then step by ``floor(17 - level_in_octaves)`` times that amount, so an
  attack is fast at low levels and slows as it approaches full level (exponential-ish, in
  integer bands of one octave).
* A stage whose target equals the current level is a timed hold (the DX7 keeps going through
  its rate even when there is nothing to move): the hold lasts ``statics[rate]`` samples at
  44.1 kHz for rates below 77, ``20 * (99 - rate)`` above. An attack to LEVEL 1 = 0 is such a
  hold too, a twentieth as long below rate 77 (Dexed ``Env::advance``).
* Key-off starts stage 4 from wherever the envelope is.

Between the 64-sample blocks the level is interpolated linearly in the log domain, which is
what Dexed's Mark I engine does with the gain inside each block. Output frames sample that
piecewise-linear curve, so the result is exact at the block boundaries of a Dexed render at
``sample_rate`` and the cost is O(number of corners + number of frames).

Sources of the curves and constants
-----------------------------------
* MSFA engine (Raph Levien, Google, 2012; Pascal Gauthier, Dexed, 2013-2017), Dexed
  ``Source/msfa/env.cc``/``env.h``: the 64-sample block (``LG_N = 6``), ``qrate = rate * 41 >> 6``,
  the increment ``(4 + (qrate & 3)) << (2 + LG_N + (qrate >> 2))``, the 44100/fs scaling of the
  increment, the attack jump target 1716, the attack slope ``(17 << 24) - level >> 24``, the
  target formula with its 4256 offset and floor of 16, and (``ACCURATE_ENVELOPE``, enabled in
  Dexed) the ``statics`` table of hold lengths, which its author measured on a DX7 ("using 2
  TF1s") at 44.1 kHz.
* Rate scaling: MSFA ``ScaleRate``: ``x = clamp(note // 3 - 7, 0, 31)``, qrate delta
  ``sensitivity * x >> 3`` (also added to the rate that picks a hold length).
* Level curve: :mod:`dx7tools.levels` (MSFA ``scaleoutlevel``).
* Measured against dexed-py 0.3.0 (Mark I engine, 16 kHz, OP1 alone at a fixed 1000 Hz so each
  64-sample frame holds exactly 4 cycles; see tests/test_levels_envelope.py):
  - Key-up takes effect at the first block boundary at or after ``note_seconds``
    (``ceil(round(note_seconds * fs) / 64)`` blocks), the first block after note-on already
    takes one EG step.
  - Dexed's hold length is sample-rate dependent: it scales the hold's sample count by
    44100/fs instead of fs/44100, so at 16 kHz a hold lasts (44100/16000)^2 = 7.6 times longer
    than at 44.1 kHz (R2 = 50: 1.14 s at 16 kHz, 0.15 s at 44.1 kHz). This module reproduces
    the engine at ``sample_rate`` -- quirk included -- so pass the rate of the render you
    compare with; ``sample_rate=44100`` gives the hold times Dexed was tuned to.
  - Agreement with Dexed's RMS per 64-sample frame (eleven envelopes, see the test module's
    header): within 0.16 dB above -40 dB (median 0.001-0.07 dB), steady levels within 0.04 dB,
    threshold crossings on the same 4 ms frame or the adjacent one.
"""

from __future__ import annotations

import math

import numpy as np

from .audio import FRAME_RATE, SAMPLE_RATE
from .errors import DX7Error
from .levels import (
    ENGINE_OFFSET,
    FLOOR,
    MICROSTEP_DB,
    _as_int,
    _out,
    keyboard_level_scaling,
    microsteps_to_amplitude,
    outlevel_microsteps,
    scale_level,
    velocity_offset,
)

BLOCK = 64
"""Samples per EG update in the engine (MSFA ``N``)."""
DEFAULT_SAMPLE_RATE = float(SAMPLE_RATE)
"""Engine sample rate modelled by default: 16 kHz, where a 64-sample block is one 250 Hz frame."""

_MICRO = 1 << 16  # Q24 units per microstep
_OCTAVE = 1 << 24  # Q24 units per octave
_JUMP = 1716 * _MICRO  # attack jump target (MSFA ``jumptarget``)

# MSFA ``statics``: hold length in samples at 44.1 kHz for rates 0-76 (77 and up: 20 * (99 - r)).
_STATICS = (
    1764000, 1764000, 1411200, 1411200, 1190700, 1014300, 992250,
    882000, 705600, 705600, 584325, 507150, 502740, 441000, 418950,
    352800, 308700, 286650, 253575, 220500, 220500, 176400, 145530,
    145530, 125685, 110250, 110250, 88200, 88200, 74970, 61740,
    61740, 55125, 48510, 44100, 37485, 31311, 30870, 27562, 27562,
    22050, 18522, 17640, 15435, 14112, 13230, 11025, 9261, 9261, 7717,
    6615, 6615, 5512, 5512, 4410, 3969, 3969, 3439, 2866, 2690, 2249,
    1984, 1896, 1808, 1411, 1367, 1234, 1146, 926, 837, 837, 705,
    573, 573, 529, 441, 441,
)


# -- rates ---------------------------------------------------------------------------------------
def rate_scaling_delta(note, sensitivity):
    """Extra qrate (0-63 speed scale; +4 doubles the speed) from keyboard rate scaling.

    Args:
        note: MIDI note 0-127, scalar or array.
        sensitivity: KBD RATE SCALING 0-7.

    Returns:
        int qrate delta, 0..27 (sensitivity 7 at the top of the keyboard).
    """
    n = _as_int("note", note, 0, 127)
    sens = _as_int("rate scaling", sensitivity, 0, 7)
    return _out((sens * np.clip(n // 3 - 7, 0, 31)) >> 3)


def qrate(rate, rate_delta=0):
    """The engine's 0-63 speed of an EG rate 0-99 (``rate * 41 >> 6`` + delta, capped at 63)."""
    r = _as_int("EG rate", rate, 0, 99)
    return _out(np.minimum(63, ((r * 41) >> 6) + np.asarray(rate_delta, dtype=np.int64)))


def decay_db_per_second(rate, *, rate_delta=0):
    """Speed of a falling EG stage (and the base speed of a rising one) in dB per second.

    Args:
        rate: EG rate 0-99, scalar or array.
        rate_delta: qrate delta from :func:`rate_scaling_delta`.

    Returns:
        float dB/s, e.g. rate 99 -> 14 500 dB/s, 50 -> 64.8 dB/s, 0 -> 0.25 dB/s.
    """
    q = np.asarray(qrate(rate, rate_delta))
    q24_per_block = (4 + (q & 3)) * np.exp2(8 + (q >> 2))  # at 44.1 kHz
    return _out(q24_per_block * (44100.0 / BLOCK) / _MICRO * MICROSTEP_DB)


# -- the engine's EG, corner by corner ------------------------------------------------------------
def _check_stages(name: str, values) -> tuple[int, int, int, int]:
    arr = _as_int(name, values, 0, 99)
    if arr.shape != (4,):
        raise DX7Error(f"{name} must be 4 values 0-99, got shape {arr.shape}")
    return tuple(int(v) for v in arr)


def _sr_multiplier(sample_rate: float) -> int:
    """Dexed's 44100/fs in Q24 (truncated like its uint32 conversion)."""
    if not np.isfinite(sample_rate) or not 1000.0 <= sample_rate <= 400000.0:
        raise DX7Error(f"sample_rate must be 1000-400000 Hz, got {sample_rate!r}")
    return int(44100.0 / float(sample_rate) * _OCTAVE)


class _Stage:
    """What ``Env::advance`` computes when a stage starts: target, step, hold length (blocks)."""

    __slots__ = ("target", "inc", "hold")

    def __init__(self, rates, levels, ix: int, level: int, outlevel: int, rate_delta: int, mult: int):
        target = ((int(scale_level(levels[ix])) >> 1) << 6) + outlevel - ENGINE_OFFSET
        self.target = max(FLOOR, target) * _MICRO
        q = min(63, ((rates[ix] * 41) >> 6) + rate_delta)
        self.inc = (((4 + (q & 3)) << (8 + (q >> 2))) * mult) >> 24
        self.hold = 0  # blocks; 0 = not a hold
        silent_attack = ix == 0 and levels[0] == 0  # LEVEL 1 = 0: the attack waits (a short hold)
        if self.target == level or silent_attack:
            r = min(99, rates[ix] + rate_delta)
            samples = _STATICS[r] if r < 77 else 20 * (99 - r)
            if silent_attack and r < 77:
                samples //= 20  # Dexed: "attack is scaled faster"
            samples = (samples * mult) >> 24  # Dexed's (sample-rate dependent) scaling
            self.hold = -(-samples // BLOCK)


def _run(rates, levels, outlevel, rate_delta, mult, ix, last_ix, level, entered, corners):
    """Run stages ``ix`` .. ``last_ix - 1`` from ``level``; append (block, Q24 level) corners.

    ``entered`` is the number of blocks already computed when stage ``ix`` starts; its first
    step lands on block ``entered + 1``. Blocks are counted from note-on: block b's value is the
    level at time ``b * 64 / fs``. Returns the block at which stage ``last_ix`` is reached.
    """
    immediate = False  # a stage begun when a hold runs out steps in that same block
    while ix < last_ix:
        st = _Stage(rates, levels, ix, level, outlevel, rate_delta, mult)
        if st.hold:
            # Flat for ``hold`` blocks; the next stage starts inside the last of them.
            entered += st.hold
            corners.append((entered - 1, level))
            ix, immediate = ix + 1, True
            continue
        c = entered - 1 if immediate else entered  # last block before the first step
        if st.target > level:  # rising: attack-style, banded by whole octaves
            if level < _JUMP:
                level = _JUMP + ((17 * _OCTAVE - _JUMP) >> 24) * st.inc
                c += 1
                if level >= st.target:
                    level = st.target
                corners.append((c, level))
            while level < st.target:
                k = (17 * _OCTAVE - level) >> 24  # >= 1: levels never reach 16 octaves
                d = k * st.inc
                band_top = (17 - k) * _OCTAVE  # k stays the same up to here, inclusive
                to_target = -(-(st.target - level) // d)
                to_band = (band_top - level) // d + 1
                if to_target <= to_band:
                    if to_target > 1:
                        corners.append((c + to_target - 1, level + (to_target - 1) * d))
                    c += to_target
                    level = st.target
                else:
                    c += to_band
                    level += to_band * d
                corners.append((c, level))
        else:  # falling (or already there): linear in the log domain, at least one block
            n = max(1, -(-(level - st.target) // st.inc))
            if n > 1:
                corners.append((c + n - 1, level - (n - 1) * st.inc))
            c += n
            level = st.target
            corners.append((c, level))
        entered, ix, immediate = c, ix + 1, False
    return entered


def _corners(rates, levels, note_blocks, outlevel, rate_delta, mult):
    """All corners (block, Q24 level) of the envelope for a key released after ``note_blocks``."""
    corners = [(0, 0)]
    _run(rates, levels, outlevel, rate_delta, mult, 0, 3, 0, 0, corners)
    blocks = np.array([c[0] for c in corners], dtype=np.float64)
    values = np.array([c[1] for c in corners], dtype=np.float64)
    # Key-down part up to the release (the level there is exact: segments are linear per block).
    keep = blocks < note_blocks
    off_level = int(round(np.interp(note_blocks, blocks, values)))
    corners = [c for c, k in zip(corners, keep) if k] + [(note_blocks, off_level)]
    _run(rates, levels, outlevel, rate_delta, mult, 3, 4, off_level, note_blocks, corners)
    return corners


def _note_blocks(note_seconds: float, sample_rate: float) -> int:
    # Dexed renders the held part, then processes key-up before its next 64-sample block.
    return -(-int(round(note_seconds * sample_rate)) // BLOCK)


def eg_corners(rates, levels, note_seconds, *, outlevel=4064, rate_delta=0,
               sample_rate=DEFAULT_SAMPLE_RATE):
    """The envelope as corners of a piecewise-linear curve in the log domain.

    Args:
        rates: EG RATE 1-4, four values 0-99.
        levels: EG LEVEL 1-4, four values 0-99.
        note_seconds: how long the key is held (s); stage 4 starts at the next block after.
        outlevel: the operator's output level in microsteps
            (:func:`dx7tools.levels.operator_outlevel`; 4064 = output level 99, no scaling).
        rate_delta: qrate delta from :func:`rate_scaling_delta`.
        sample_rate: engine sample rate (Hz) whose 64-sample block timing is reproduced.

    Returns:
        ``(seconds, microsteps)``: float arrays of corner times (s, from note-on, increasing)
        and engine levels there (microsteps; 3840 is amplitude 1.0). The envelope is constant
        after the last corner.
    """
    r, lv = _check_stages("EG rates", rates), _check_stages("EG levels", levels)
    if not np.isfinite(note_seconds) or note_seconds < 0:
        raise DX7Error(f"note_seconds must be >= 0, got {note_seconds!r}")
    out = int(_as_int("outlevel", outlevel, 0, 4288))
    delta = int(_as_int("rate delta", rate_delta, 0, 63))
    mult = _sr_multiplier(sample_rate)
    corners = _corners(r, lv, _note_blocks(note_seconds, sample_rate), out, delta, mult)
    blocks = np.array([c[0] for c in corners], dtype=np.float64)
    values = np.array([c[1] for c in corners], dtype=np.float64) / _MICRO
    # Drop repeated block numbers (a stage that ends where the next begins): keep the last value.
    last = np.append(blocks[1:] != blocks[:-1], True)
    return blocks[last] * BLOCK / float(sample_rate), values[last]


# -- the EG as a stream: paths from a state, for an engine driven by MIDI ------------------------
class OperatorEG:
    """What the engine fixes for one operator at a note-on: its EG rates and levels, its output
    level in microsteps (keyboard level scaling and velocity included), its rate-scaling delta
    and the sample rate whose block timing is reproduced.

    The paths below are corners ``(blocks, q24)`` of a piecewise-linear curve in 64-sample blocks
    (int arrays; Q24 log-amplitude, ``q24 >> 16`` microsteps), constant after the last corner;
    :func:`level_at` evaluates one. They reproduce the engine's block-by-block EG exactly at the
    blocks (see :func:`eg_corners`), so a note can be released or changed at any block.
    """

    __slots__ = ("rates", "levels", "outlevel", "rate_delta", "mult")

    def __init__(self, rates, levels, outlevel: int, rate_delta: int = 0, sample_rate: float = DEFAULT_SAMPLE_RATE):
        self.rates = _check_stages("EG rates", rates)
        self.levels = _check_stages("EG levels", levels)
        self.outlevel = int(_as_int("outlevel", outlevel, 0, 4288))
        self.rate_delta = int(_as_int("rate delta", rate_delta, 0, 63))
        self.mult = _sr_multiplier(sample_rate)

    def _path(self, first: int, last: int, level: int, at: int) -> tuple[np.ndarray, np.ndarray]:
        corners = [(at, int(level))]
        _run(self.rates, self.levels, self.outlevel, self.rate_delta, self.mult, first, last, int(level), at, corners)
        blocks = np.array([c[0] for c in corners], dtype=np.int64)
        values = np.array([c[1] for c in corners], dtype=np.int64)
        keep = np.append(blocks[1:] != blocks[:-1], True)  # a stage ending where the next begins
        return blocks[keep], values[keep]

    def key_down(self, at: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Note-on at block ``at``: from level 0 through stages 1-3, then held at level 3."""
        return self._path(0, 3, 0, at)

    def key_up(self, level: int, at: int) -> tuple[np.ndarray, np.ndarray]:
        """Key-up at block ``at`` with the EG at ``level`` (Q24): stage 4 from there."""
        return self._path(3, 4, level, at)

    def retarget(self, level: int, at: int) -> tuple[np.ndarray, np.ndarray]:
        """A held note's EG after a live voice edit (Dexed's ``Env::update`` while the key is down):
        from ``level`` to the (new) level 3 at rate 3, then held."""
        return self._path(2, 3, level, at)


def operator_egs(voice, key: int, velocity: int, sample_rate: float = DEFAULT_SAMPLE_RATE) -> list[OperatorEG]:
    """The six :class:`OperatorEG` (OP1 first) of ``voice`` for a (transposed) ``key`` and ``velocity``."""
    egs = []
    for n in range(1, 7):
        op = voice.op(n)
        kls = keyboard_level_scaling(key, op.breakpoint, op.left_depth, op.right_depth,
                                     op.left_curve, op.right_curve)
        egs.append(OperatorEG([voice[f"op{n}_eg_rate_{i}"] for i in range(1, 5)],
                              [voice[f"op{n}_eg_level_{i}"] for i in range(1, 5)],
                              outlevel_microsteps(op.output_level, kls, velocity_offset(velocity, op.velocity_sensitivity)),
                              rate_scaling_delta(key, op.rate_scaling), sample_rate))
    return egs


def level_at(path: tuple[np.ndarray, np.ndarray], blocks) -> np.ndarray:
    """A path's level (Q24, float) at ``blocks`` (int array); constant outside its corners."""
    return np.interp(np.asarray(blocks, dtype=np.float64), path[0], path[1])


def _frame_times(total_seconds, frame_rate, end_seconds) -> np.ndarray:
    if not np.isfinite(frame_rate) or frame_rate <= 0:
        raise DX7Error(f"frame_rate must be > 0, got {frame_rate!r}")
    if total_seconds is None:
        n = int(math.ceil(end_seconds * frame_rate - 1e-9)) + 1  # up to the end of the release
    else:
        if not np.isfinite(total_seconds) or total_seconds < 0:
            raise DX7Error(f"total_seconds must be >= 0, got {total_seconds!r}")
        n = int(round(total_seconds * frame_rate))
    return np.arange(n) / float(frame_rate)


def eg_microsteps(rates, levels, note_seconds, *, total_seconds=None, frame_rate=FRAME_RATE,
                  outlevel=4064, rate_delta=0, sample_rate=DEFAULT_SAMPLE_RATE):
    """Per-frame engine level (microsteps, log domain) of one operator's EG.

    Frame ``i`` is the level at ``i / frame_rate`` seconds after note-on. Arguments as in
    :func:`eg_corners`; ``total_seconds=None`` runs until the release has finished.

    Returns:
        float array (n_frames,) of microsteps (3840 = amplitude 1.0, <= 16 = silent).
    """
    times, values = eg_corners(rates, levels, note_seconds, outlevel=outlevel,
                               rate_delta=rate_delta, sample_rate=sample_rate)
    frames = _frame_times(total_seconds, frame_rate, max(times[-1], note_seconds))
    return np.interp(frames, times, values)


def eg_levels(rates, levels, note_seconds, *, total_seconds=None, frame_rate=FRAME_RATE,
              rate_scaling=0, note=60, output_level=99, velocity=100, velocity_sensitivity=0,
              level_scaling=0, sample_rate=DEFAULT_SAMPLE_RATE):
    """Per-frame linear amplitude of one operator for a key held ``note_seconds``, then released.

    Args:
        rates: EG RATE 1-4 (0-99).
        levels: EG LEVEL 1-4 (0-99).
        note_seconds: key held for this long (s); stage 4 (release) starts then.
        total_seconds: length of the result (s); ``None``: until the release has finished.
        frame_rate: frames per second of the result (250 = 64-sample hops at 16 kHz).
        rate_scaling: KBD RATE SCALING 0-7 (with ``note``).
        note: MIDI note 0-127 (for rate scaling).
        output_level: OUTPUT LEVEL 0-99.
        velocity: MIDI velocity 0-127 (with ``velocity_sensitivity`` 0-7).
        level_scaling: keyboard level scaling in internal steps
            (:func:`dx7tools.levels.keyboard_level_scaling`).
        sample_rate: engine sample rate (Hz) whose block timing is reproduced (see module notes).

    Returns:
        float array (n_frames,): amplitude at ``i / frame_rate`` s, 1.0 = output level 99 with
        EG level 99; exactly 0.0 while the engine is at its floor.
    """
    out = outlevel_microsteps(output_level, level_scaling, velocity_offset(velocity, velocity_sensitivity))
    delta = rate_scaling_delta(note, rate_scaling)
    return microsteps_to_amplitude(eg_microsteps(
        rates, levels, note_seconds, total_seconds=total_seconds, frame_rate=frame_rate,
        outlevel=out, rate_delta=delta, sample_rate=sample_rate))


def operator_levels(voice, note=60, velocity=100, note_seconds=1.0, *, total_seconds=None,
                    frame_rate=FRAME_RATE, sample_rate=DEFAULT_SAMPLE_RATE):
    """Per-frame linear amplitude of all six operators of a voice for one note.

    Includes each operator's output level, EG, keyboard rate scaling, keyboard level scaling and
    velocity sensitivity (not the LFO's amplitude modulation). As in Dexed, the voice's
    TRANSPOSE shifts the key used for scaling (``note + transpose - 24``).

    Args:
        voice: a :class:`dx7tools.voice.Voice`.
        note: MIDI note 0-127.
        velocity: MIDI velocity 1-127 (0 would be a note-off in MIDI; accepted, quietest).
        note_seconds: key held for this long (s), then released.
        total_seconds: length of the result (s); ``None``: until the release of every audible
            operator has finished.
        frame_rate: frames per second (250 = 64-sample hops at 16 kHz).
        sample_rate: engine sample rate (Hz) whose block timing is reproduced
            (see the module notes).

    Returns:
        float array (n_frames, 6), column 0 = OP1; amplitude 1.0 = output level 99 at EG level 99
        (a modulator's index in radians is 4*pi times this, see :mod:`dx7tools.levels`).
    """
    key = int(np.clip(int(_as_int("note", note, 0, 127)) + voice["transpose"] - 24, 0, 127))
    curves = [eg_corners(eg.rates, eg.levels, note_seconds, outlevel=eg.outlevel, rate_delta=eg.rate_delta,
                         sample_rate=sample_rate) for eg in operator_egs(voice, key, velocity, sample_rate)]
    # Without a length, run until the last audible operator has finished its release.
    audible = [times[-1] for times, values in curves if values.max() > FLOOR]
    end = max([float(note_seconds)] + audible)
    frames = _frame_times(total_seconds, frame_rate, end)
    micro = np.stack([np.interp(frames, times, values) for times, values in curves], axis=1)
    return microsteps_to_amplitude(micro)
