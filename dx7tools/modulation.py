"""The DX7's voice modulators as numpy: the LFO, the pitch EG, and what they do to each operator.

For one held note, per frame (250 frames/s by default; Dexed updates all of these once per
64-sample block, which is one frame at 16 kHz):

* :func:`lfo` — the LFO's value (0..1) and its delay envelope (0..1).
* :func:`pitch_eg_cents` — the pitch EG's offset in cents.
* :func:`pitch_cents` — pitch EG plus LFO pitch modulation: what moves every ratio-mode
  operator's frequency (fixed-frequency operators follow neither, as in Dexed).
* :func:`amp_mod_gain` — each operator's LFO amplitude-modulation gain (1 = none).

Sources: the DX7 manual for what each parameter is; the constants and rules are those of the
MSFA engine as Dexed runs it (its ``lfo``, ``pitchenv`` and ``dx7note`` sources), measured
against dexed-py renders: LFO speed 10/35/70/99 gave 1.6135/5.804/16.91/50.90 Hz, pitch
modulation peaks at PMS 1/3/7 with PMD 99 of ±47/±154/±1190 cents, amplitude modulation at AMD
99 of -3.4/-7.1 dB (AMS 1/2) and silence (AMS 3), a pitch EG rate 60 at 3,268 cents/s.

Not modelled here (one held note, no MIDI): controllers (mod wheel, breath, foot, aftertouch),
pitch bend, and the LFO shared across notes (Dexed runs one LFO for the whole instrument and
restarts it only at a note-on while no key is held); the LFO starts as dexed-py's does for
each note: phase 0, or half a cycle with LFO KEY SYNC on, and the sample-and-hold generator
from 0.
"""

from __future__ import annotations

import functools

import numpy as np

from .audio import FRAME_RATE

LFO_TABLE_HZ = np.array([
    0.062541, 0.125031, 0.312393, 0.437120, 0.624610, 0.750694, 0.936330, 1.125302, 1.249609, 1.436782,
    1.560915, 1.752081, 1.875117, 2.062494, 2.247191, 2.374451, 2.560492, 2.686728, 2.873976, 2.998950,
    3.188013, 3.369840, 3.500175, 3.682224, 3.812065, 4.000800, 4.186202, 4.310716, 4.501260, 4.623209,
    4.814636, 4.930480, 5.121901, 5.315191, 5.434783, 5.617346, 5.750431, 5.946717, 6.062811, 6.248438,
    6.431695, 6.564264, 6.749460, 6.868132, 7.052186, 7.250580, 7.375719, 7.556294, 7.687577, 7.877738,
    7.993605, 8.181967, 8.372405, 8.504848, 8.685079, 8.810573, 8.986341, 9.122423, 9.300595, 9.500285,
    9.607994, 9.798158, 9.950249, 10.117361, 11.251125, 11.384335, 12.562814, 13.676149, 13.904338, 15.092062,
    16.366612, 16.638935, 17.869907, 19.193858, 19.425019, 20.833333, 21.034918, 22.502250, 24.003841, 24.260068,
    25.746653, 27.173913, 27.578599, 29.052876, 30.693677, 31.191516, 32.658393, 34.317090, 34.674064, 36.416606,
    38.197097, 38.550501, 40.387722, 40.749796, 42.625746, 44.326241, 44.883303, 46.772685, 48.590865, 49.261084])
"""LFO SPEED 0-99 -> Hz as the engine's table lists it (a DX7's measured rates)."""
LFO_RATE_FACTOR = 4437500000 / 2 ** 32
"""Dexed's phase step is the table value times 4,437,500,000 / 2^32: it runs 3.3 % fast (measured)."""
LFO_DELAY_SECONDS = 85.25
"""The LFO delay's two stretches last this many seconds divided by a value from LFO DELAY."""

PITCH_MOD_SENSITIVITY = np.array([0, 10, 20, 33, 55, 92, 153, 255]) / 256
"""PITCH MOD SENSITIVITY 0-7 -> the share of PMD's octave reached."""
AMP_MOD_SENSITIVITY = np.array([0, 4342338, 7171437, 16777216]) / 2 ** 24
"""AMP MOD SENSITIVITY 0-3 -> the share of AMD that reaches an operator."""
AM_CUT_LOG = (12.2, 0.07 * 2 ** 24 / 2 ** 18)
"""An operator's level cut by amplitude modulation at depth s (0..1): exp(a + b*s) / 2^24 of its
level in octaves above the engine's floor (so louder operators lose more dB; AMS 1-3 lose
1.2 % even at depth 0, as Dexed does)."""
ENGINE_OCTAVES_AT_FULL = 15.0
"""An operator at output level 99 and EG level 99 sits this many octaves above the engine's floor
(measured: the 1.2 % cut is 1.07 dB there and 0.81 dB at output level 70)."""

PITCH_EG_LEVELS = np.array(
    [-128, -116, -104, -95, -85, -76, -68, -61, -56, -52, -49, -46, -43, -41, -39, -37, -35, -33, -32, -31]
    + list(range(-30, 36))
    + [38, 40, 43, 46, 49, 53, 58, 65, 73, 82, 92, 103, 115, 127])
"""PITCH EG LEVEL 0-99 -> pitch in 1/32 octave (37.5 cents); 50 is no shift."""
PITCH_EG_RATES = np.array(
    [1, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 16, 16, 17, 18, 18,
     19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 30, 31, 33, 34, 36, 37, 38, 39, 41, 42, 44, 46, 47, 49, 51, 53, 54, 56,
     58, 60, 62, 64, 66, 68, 70, 72, 74, 76, 79, 82, 85, 88, 91, 94, 98, 102, 106, 110, 115, 120, 125, 130, 135,
     141, 147, 153, 159, 165, 171, 178, 185, 193, 202, 211, 232, 243, 254, 255])
"""PITCH EG RATE 0-99 -> speed; the pitch moves by speed / 21.3 octaves per second."""
PITCH_EG_SECONDS = 21.3
PITCH_EG_UNIT_CENTS = 1200 / 32

WAVES = ("triangle", "saw down", "saw up", "square", "sine", "sample and hold")


def lfo_hz(speed: int) -> float:
    """The LFO's frequency (Hz) at LFO SPEED 0-99, as Dexed runs it."""
    return float(LFO_TABLE_HZ[int(speed)] * LFO_RATE_FACTOR)


def lfo_delay(delay: int, seconds: np.ndarray) -> np.ndarray:
    """The LFO delay's envelope (0..1) at ``seconds`` after the LFO started: 0 for a first
    stretch, then a linear rise to 1 (LFO DELAY 0: 1 at once)."""
    t = np.asarray(seconds, dtype=np.float64)
    if int(delay) == 0:
        return np.ones_like(t)
    a = 99 - int(delay)
    a1 = (16 + a % 16) << (1 + a // 16)
    a2 = max(128, a1 & ~127)
    hold, rise = LFO_DELAY_SECONDS / a1, LFO_DELAY_SECONDS / a2
    return np.clip((t - hold) / rise, 0.0, 1.0)


def lfo_wave(wave: int, phase: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    """The waveform's value (0..1) at ``phase`` (0..1) in cycle ``cycles`` (whole cycles since the
    start; sample-and-hold draws a new value at each)."""
    p = np.asarray(phase, dtype=np.float64)
    wave = int(wave)
    if wave == 0:
        return np.where(p < 0.5, 2 * p, 2 * (1 - p))
    if wave == 1:
        return 1 - (p + 0.5) % 1.0
    if wave == 2:
        return (p + 0.5) % 1.0
    if wave == 3:
        return np.where(p < 0.5, 1.0, 0.0)
    if wave == 4:
        return 0.5 + 0.5 * np.sin(2 * np.pi * p)
    return _sample_and_hold(np.asarray(cycles, dtype=np.int64))


SH_PERIOD = 256
"""The sample-and-hold generator repeats within 256 draws from any state (an affine map modulo 2^8)."""


@functools.lru_cache(maxsize=256)
def _sh_table(r: int) -> tuple[np.ndarray, np.ndarray]:
    """From generator state ``r``: the next :data:`SH_PERIOD` values and the state after k draws."""
    values, states = np.empty(SH_PERIOD), np.empty(SH_PERIOD + 1, dtype=np.int64)
    states[0] = r
    for k in range(SH_PERIOD):
        values[k] = ((r ^ 128) + 1) / 256
        r = (179 * r + 17) % 256
        states[k + 1] = r
    return values, states


def _sample_and_hold(cycles: np.ndarray, r: int = 0) -> np.ndarray:
    """The engine's 8-bit generator (r <- 179 r + 17 mod 256, from ``r``), one value per cycle."""
    return _sh_table(int(r))[0][np.asarray(cycles, dtype=np.int64) % SH_PERIOD]


class LFO:
    """The instrument's one LFO, shared by every note, stepped once per block (Dexed's rule).

    ``blocks_per_second`` is the engine's update rate (sample rate / 64). Block ``g``'s value is
    read after the LFO has advanced ``g - anchor + 1`` steps since its last anchor (a start,
    a key-sync restart or a change of speed), as :func:`lfo` does for one note.
    """

    def __init__(self, blocks_per_second: float):
        self.bps = float(blocks_per_second)
        self.speed, self.delay, self.wave, self.sync = 35, 0, 0, False
        self.anchor, self.phase, self.r = 0, 0.0, 0        # block, phase (cycles) and S&H state there
        self.delay_start = 0                                # block the delay envelope restarted

    def _advance_to(self, block: int) -> None:
        """Move the anchor to ``block`` (phase and generator state as they stand there)."""
        cycles = self.phase + lfo_hz(self.speed) * (block - self.anchor) / self.bps
        whole = int(np.floor(cycles))
        self.r = int(_sh_table(self.r)[1][whole % SH_PERIOD])
        self.anchor, self.phase = block, cycles - whole

    def set_voice(self, voice, block: int) -> None:
        """Take ``voice``'s LFO SPEED, DELAY, WAVE and KEY SYNC from ``block`` on."""
        self._advance_to(block)
        self.speed, self.delay = int(voice["lfo_speed"]), int(voice["lfo_delay"])
        self.wave, self.sync = int(voice["lfo_waveform"]), bool(voice["lfo_key_sync"])

    def key_down(self, block: int) -> None:
        """A note-on while no key is held: the delay restarts, and with KEY SYNC the phase goes to
        half a cycle (Dexed ``Lfo::keydown``)."""
        self._advance_to(block)
        self.delay_start = block
        if self.sync:
            self.phase = 0.5

    def values(self, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(value, delay)`` for blocks ``start .. start + n - 1`` (float (n,), 0..1 each)."""
        g = start + np.arange(n)
        cycles = self.phase + lfo_hz(self.speed) * (g - self.anchor + 1) / self.bps
        whole = np.floor(cycles).astype(np.int64)
        if self.wave == 5:
            value = _sample_and_hold(whole, self.r)
        else:
            value = lfo_wave(self.wave, cycles - whole, whole)
        return value, lfo_delay(self.delay, (g - self.delay_start + 1) / self.bps)


def pmd_share(value: int) -> float:
    """PITCH (or AMP) MOD DEPTH 0-99 as the engine scales it: floor(v * 165 / 64) / 256."""
    return int(value) * 165 // 64 / 256


def pitch_mod_cents(pmd: float, pms: int, value, delay, controller: float = 0.0) -> np.ndarray:
    """The LFO's pitch offset (cents): the voice's depth (``pmd`` from :func:`pmd_share`, scaled
    by the delay) or the controllers' (``controller`` 0..1, no delay), whichever is larger, times
    PITCH MOD SENSITIVITY, on the LFO's swing ``2 * value - 1`` (Dexed ``Dx7Note::compute``)."""
    swing = 2 * np.asarray(value, dtype=np.float64) - 1
    depth = np.maximum(pmd * np.asarray(delay, dtype=np.float64), controller)
    return 1200 * depth * PITCH_MOD_SENSITIVITY[int(pms)] * swing


def amp_mod_depth(amd: float, value, delay, controller: float = 0.0, eg_bias: float = 0.0) -> np.ndarray:
    """The amplitude-modulation depth (0..1) every operator sees before its sensitivity: the
    largest of the voice's depth (``amd`` from :func:`pmd_share`, scaled by the delay), the
    controllers' (``controller`` 0..1, no delay), both on the inverted LFO ``1 - value``, and the
    EG bias (:func:`eg_bias`)."""
    down = 1 - np.asarray(value, dtype=np.float64)
    return np.maximum(np.maximum(amd * np.asarray(delay, dtype=np.float64), controller) * down, eg_bias)


def eg_bias(amount: int | None) -> float:
    """The EG-bias depth for a controller total 0-127 assigned to EG bias (``None``: no controller
    is assigned, no bias): 1 - (amount + 1) / 128, so a closed controller cuts nearly all the way."""
    return 0.0 if amount is None else 1.0 - (int(amount) + 1) / 128


def am_cut(microsteps: np.ndarray, ams, depth) -> np.ndarray:
    """Operator levels (microsteps, (..., 6)) after amplitude modulation at ``depth`` (0..1, (...,)):
    an operator with AMP MOD SENSITIVITY ``ams[k]`` > 0 loses the share
    exp(12.2 + 4.48 * depth * AMS) / 2^24 of its level (Dexed's formula; at or below the floor it
    is silent)."""
    m = np.asarray(microsteps, dtype=np.float64)
    ams = np.asarray(ams, dtype=np.int64)
    s = np.asarray(depth, dtype=np.float64)[..., None] * AMP_MOD_SENSITIVITY[ams]
    k = np.where(ams > 0, np.exp(AM_CUT_LOG[0] + AM_CUT_LOG[1] * s) / 2 ** 24, 0.0)
    return np.maximum(m * (1 - k), 0.0)


def lfo(voice, frames: int, frame_rate: float = FRAME_RATE) -> tuple[np.ndarray, np.ndarray]:
    """The LFO of one note, per frame: ``(value, delay)``, each float (frames,), 0..1.

    Frame k is the value at the end of frame k (the engine advances, then reads), counted from
    the note-on; with LFO KEY SYNC the phase starts at half a cycle, else at 0.
    """
    one = LFO(frame_rate)
    one.set_voice(voice, 0)
    one.key_down(0)
    return one.values(0, frames)


class PitchEG:
    """The pitch EG of one note as paths of corners ``(blocks, level)`` (level in 1/32 octave,
    float), constant after the last corner, for an engine stepping ``blocks_per_second`` times a
    second: at note-on it starts at LEVEL 4 and moves to LEVELs 1, 2 and 3 (held while the key is
    down), and at key-up back to LEVEL 4, each at its RATE, linearly in pitch. Each block advances
    first (block ``b`` of a path holds the level after ``b - at`` steps); a segment that reaches
    its target ends there, the rest of its step is dropped, and the next segment starts with the
    next block (Dexed ``PitchEnv``)."""

    def __init__(self, voice, blocks_per_second: float):
        self.levels = [float(PITCH_EG_LEVELS[voice[f"pitch_eg_level_{i}"]]) for i in range(1, 5)]
        self.steps = [PITCH_EG_RATES[voice[f"pitch_eg_rate_{i}"]] * 32 / PITCH_EG_SECONDS / blocks_per_second
                      for i in range(1, 5)]

    def _path(self, segments, level: float, at: int) -> tuple[np.ndarray, np.ndarray]:
        blocks, values = [at], [level]
        for seg in segments:
            target, step = self.levels[seg], self.steps[seg]
            n = max(1, int(np.ceil(abs(target - level) / step - 1e-9)))
            if n > 1:
                blocks.append(at + n - 1)
                values.append(level + np.sign(target - level) * (n - 1) * step)
            at, level = at + n, target
            blocks.append(at)
            values.append(level)
        return np.array(blocks, dtype=np.float64), np.array(values)

    def key_down(self, at: int = 0) -> tuple[np.ndarray, np.ndarray]:
        return self._path((0, 1, 2), self.levels[3], at)

    def key_up(self, level: float, at: int) -> tuple[np.ndarray, np.ndarray]:
        return self._path((3,), level, at)


def pitch_eg_cents(voice, frames: int, note_seconds: float, frame_rate: float = FRAME_RATE) -> np.ndarray:
    """The pitch EG's offset (cents) per frame of one note held ``note_seconds``: frame k is the
    level after k + 1 steps; the key-up takes effect at the first frame at or after it."""
    eg = PitchEG(voice, frame_rate)
    key_up = int(np.ceil(note_seconds * frame_rate))     # the first frame after the key is released
    down = eg.key_down(0)
    frames_at = np.arange(frames) + 1.0
    out = np.interp(frames_at, *down)
    if key_up < frames:
        up = eg.key_up(float(np.interp(key_up, *down)), key_up)
        out = np.where(frames_at > key_up, np.interp(frames_at, *up), out)
    return out * PITCH_EG_UNIT_CENTS


def pitch_cents(voice, frames: int, note_seconds: float, frame_rate: float = FRAME_RATE) -> np.ndarray:
    """Pitch offset (cents) of every ratio-mode operator per frame: the pitch EG plus the LFO's
    pitch modulation (PMD x PMS x the LFO delay, centred on the LFO's middle)."""
    value, delay = lfo(voice, frames, frame_rate)
    return pitch_eg_cents(voice, frames, note_seconds, frame_rate) + pitch_mod_cents(
        pmd_share(voice["lfo_pitch_mod_depth"]), voice["pitch_mod_sensitivity"], value, delay)


def amp_mod_gain(voice, amplitudes: np.ndarray, frame_rate: float = FRAME_RATE) -> np.ndarray:
    """Each operator's gain from the LFO's amplitude modulation, per frame.

    Args:
        amplitudes: (frames, 6) the operators' levels without it (:func:`dx7tools.envelope.operator_levels`:
            1.0 = output level 99 at EG level 99); the cut depends on them.

    Returns:
        float (frames, 6), 1 where an operator's AMP MOD SENSITIVITY is 0, else below 1 (0 where
        the cut reaches the engine's floor).
    """
    a = np.asarray(amplitudes, dtype=np.float64)
    value, delay = lfo(voice, len(a), frame_rate)
    depth = amp_mod_depth(pmd_share(voice["lfo_amp_mod_depth"]), value, delay)
    octaves = np.maximum(ENGINE_OCTAVES_AT_FULL + np.log2(np.maximum(a, 1e-30)), 0.0)
    ams = [voice[f"op{n}_amp_mod_sensitivity"] for n in range(1, 7)]
    cut = am_cut(octaves, ams, depth)
    return np.where(octaves > 0, np.where(cut > 0, np.exp2(cut - octaves), 0.0), 1.0)
