"""One controller lane and the voice's amp-mod sensitivities, fitted together to the model's levels.

A DX7 Mark I cannot follow output-level changes while a note sounds, but it does follow a
controller live: assigned to EG BIAS, a controller lowers every operator whose AMP MOD
SENSITIVITY (AMS) is above 0 by a share of its level (:func:`dx7tools.modulation.am_cut`): the
controller at 0 silences AMS-3 operators, fully open leaves them about 1 dB down; AMS 1 and 2
reach at most 3.4 and 7.2 dB. So one lane can carry a phrase's dynamics (through the carriers)
and its brightness (through the modulators), if each operator's AMS and output level are chosen
with the lane in mind.

:func:`fit_lane` does that against the model's per-frame operator levels: for each sounding
operator in turn (two rounds) it tries AMS 0-3 -- at AMS 0 the operator's output level moves by
the median of what the model asks more (or less) than the voice gives over the phrase; with AMS
> 0 it is raised so that the lane, fully open, reaches the loud end (90th percentile) of what the
model asks of it -- and for every candidate picks, frame by frame, the lane value (0-127) whose levels
come closest to the model's in dB (all operators together). It keeps what measures best.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dx7tools.levels import FULL_SCALE, MICROSTEP_DB
from dx7tools.modulation import am_cut, eg_bias

FLOOR_DB = -60.0
"""Levels below this (dB re output level 99) count as this: differences down there are not heard."""
RANGE = 99
"""The controller's function range: the whole 0-127 of the lane reaches the EG bias."""
LEVEL_STEP = 32
"""Microsteps per output level step (1/8 octave) above output level 20."""
SMOOTH_FRAMES = 5
"""The chosen lane is median-filtered over this many frames (20 ms), as a player's breath moves."""
_FLOOR = FULL_SCALE + FLOOR_DB / MICROSTEP_DB


def bias_depths(range_: int = RANGE) -> np.ndarray:
    """(128,) the EG-bias depth for each controller value 0-127 at function range ``range_``."""
    return np.array([eg_bias(int(v * range_ / 100)) for v in range(128)])


@dataclass
class LaneFit:
    """What :func:`fit_lane` chose.

    Attributes:
        ams: (6,) AMP MOD SENSITIVITY per operator (OP1 first).
        level_shift: (6,) output level steps added to each operator (negative: lowered).
        lane: (T,) controller value 0-127 per frame (float; NaN where no note sounds).
        rms_db_before: RMS level error (dB, every sounding operator and frame) of the voice alone.
        rms_db_after: the same with the lane and the chosen AMS and levels.
    """

    ams: np.ndarray
    level_shift: np.ndarray
    lane: np.ndarray
    rms_db_before: float
    rms_db_after: float


def _micro(amp: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.maximum(FULL_SCALE + 256.0 * np.log2(np.maximum(amp, 1e-12)), _FLOOR)


def _errors(voice: np.ndarray, target: np.ndarray, ams: np.ndarray, shift: np.ndarray, depths: np.ndarray,
            weights: np.ndarray):
    """(values, frames) weighted squared dB error summed over operators, for every lane value."""
    m = voice + LEVEL_STEP * shift
    fixed = ams == 0
    w = weights
    base = np.nansum(w[:, fixed] * ((m[:, fixed] - target[:, fixed]) * MICROSTEP_DB) ** 2, axis=1) \
        if fixed.any() else 0.0
    if fixed.all():
        return np.broadcast_to(base, (len(depths), len(m)))
    cut = am_cut(m[None, :, ~fixed], ams[~fixed], np.broadcast_to(depths[:, None], (len(depths), len(m))))
    cut = np.maximum(cut, _FLOOR)
    return base + np.nansum(w[None, :, ~fixed] * ((cut - target[None, :, ~fixed]) * MICROSTEP_DB) ** 2, axis=2)


def _cost(voice, target, ams, shift, depths, weights) -> float:
    return float(np.nanmin(_errors(voice, target, ams, shift, depths, weights), axis=0).sum())


def _shift_for(voice: np.ndarray, target: np.ndarray, op: int, ams: int, room: tuple[int, int],
               depths: np.ndarray) -> int:
    """Output level steps for ``op``: at AMS 0, the median of what the model asks more than the
    voice gives over the phrase; at AMS > 0, enough for the open lane to reach the model's loud end
    (90th percentile). Within ``room`` = (lowest, highest) steps the output level allows."""
    ok = np.isfinite(voice[:, op]) & np.isfinite(target[:, op])
    if not ok.any():
        return 0
    if ams == 0:
        return int(np.clip(np.round(np.median(target[ok, op] - voice[ok, op]) / LEVEL_STEP), *room))
    open_cut = am_cut(voice[ok, op][:, None], [ams], np.full(ok.sum(), depths[-1]))[:, 0]
    need = np.percentile(target[ok, op] - open_cut, 90) / LEVEL_STEP
    return int(np.clip(np.ceil(need), *room))


def fit_lane(voice_amp: np.ndarray, model_amp: np.ndarray, output_levels, *, rounds: int = 2,
             stride: int = 2, weights: np.ndarray | None = None, operators=None, levels: bool = False) -> LaneFit:
    """Fit AMS, output-level shifts and a controller lane (module notes).

    Args:
        voice_amp: (T, 6) amplitude each operator has with the voice alone (its EG, output level,
            velocity and scaling; NaN where no note sounds or the operator is off).
        model_amp: (T, 6) the model's amplitude per operator and frame.
        output_levels: (6,) the voice's output levels (a shift keeps them within 20-99, or where
            they are when below 20, where a level is not one step).
        stride: the search uses every ``stride``-th frame (the final lane uses all).
        weights: (T, 6) or (6,) weight of each operator's squared dB error (default 1).
        operators: the operators (1-6) whose AMS may change (default: every sounding one).
        levels: also move the output level of operators left at AMS 0 by the median of what the
            model asks more than the voice gives (else only AMS > 0 operators move).
    """
    voice = _micro(np.asarray(voice_amp, dtype=np.float64))
    voice[~np.isfinite(np.asarray(voice_amp, dtype=np.float64))] = np.nan
    target = _micro(np.asarray(model_amp, dtype=np.float64))
    target[~np.isfinite(voice)] = np.nan
    depths = bias_depths()
    room = [(int(20 - lv), int(99 - lv)) if lv >= 20 else (0, 0)  # one step per level from 20 up
            for lv in np.asarray(output_levels, dtype=np.int64)]
    w = np.broadcast_to(np.ones(6) if weights is None else np.asarray(weights, dtype=np.float64), voice.shape)
    audible = [k for k in range(6) if np.isfinite(voice[:, k]).any()]
    sounding = [k for k in audible if operators is None or k + 1 in operators]
    sv, st, sw = voice[::stride], target[::stride], w[::stride]
    ams = np.zeros(6, np.int64)
    shift = np.array([_shift_for(sv, st, k, 0, room[k], depths) if levels and k in audible else 0 for k in range(6)])
    best = _cost(sv, st, ams, shift, depths, sw)
    for _ in range(rounds):
        for k in sounding:
            for a in range(4):
                trial_ams, trial_shift = ams.copy(), shift.copy()
                trial_ams[k] = a
                trial_shift[k] = _shift_for(sv, st, k, a, room[k], depths) if a or levels else 0
                cost = _cost(sv, st, trial_ams, trial_shift, depths, sw)
                if cost < best - 1e-9:
                    best, ams, shift = cost, trial_ams, trial_shift
    errors = _errors(voice, target, ams, shift, depths, w)
    notes = np.isfinite(voice).any(axis=1)
    lane = np.full(len(voice), np.nan)
    lane[notes] = np.nanargmin(errors[:, notes], axis=0).astype(np.float64)
    lane = smooth_runs(lane, SMOOTH_FRAMES)
    n = max(1, int(np.isfinite(voice).sum()))
    before = float(np.sqrt(np.nansum(((voice - target) * MICROSTEP_DB) ** 2) / n))
    picked = np.where(notes, np.nan_to_num(lane, nan=0.0), 0).astype(np.int64)
    plain = errors if weights is None else _errors(voice, target, ams, shift, depths, np.ones_like(w))
    after_err = plain[picked, np.arange(len(voice))][notes]
    after = float(np.sqrt(after_err.sum() / n))
    return LaneFit(ams, shift, lane, round(before, 3), round(after, 3))


def live_output_levels(voice_amp: np.ndarray, model_amp: np.ndarray, fit: LaneFit, output_levels) -> np.ndarray:
    """(T, 6) the output level (float 0-99) each operator needs, frame by frame, for the voice with
    ``fit`` and its lane to sound the model's amplitude -- what a receiver that follows output-level
    changes live (Dexed) can be sent on top of the lane.

    EG bias scales an operator's level in microsteps by (1 - share) (:func:`dx7tools.modulation.am_cut`),
    so the level before the cut must be the wanted one divided by that factor; where the lane
    silences the operator (factor under 5 %) no level helps and the frame is NaN, as between notes.

    Args:
        voice_amp, model_amp: (T, 6) as given to :func:`fit_lane`.
        output_levels: (6,) the output levels of the voice the lane was fitted on (before its shifts).
    """
    from dx7tools.levels import amplitude_to_output_level, output_level_to_amplitude

    voice = np.asarray(voice_amp, dtype=np.float64)
    m = _micro(voice) + LEVEL_STEP * fit.level_shift
    values = np.clip(np.rint(np.nan_to_num(fit.lane, nan=0.0)), 0, 127).astype(np.int64)
    keep = am_cut(np.ones_like(m), fit.ams, bias_depths()[values])  # (1 - share) per frame and operator
    target = _micro(np.asarray(model_amp, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        more = np.exp2((target / keep - m) / 256.0)  # amplitude ratio needed before the cut
    levels = np.clip(np.asarray(output_levels, dtype=np.int64) + fit.level_shift, 0, 99)
    ol = amplitude_to_output_level(np.clip(np.nan_to_num(more, nan=0.0) * output_level_to_amplitude(levels), 0, 1))
    return np.where(np.isfinite(voice) & (keep > 0.05), ol, np.nan)


def smooth_runs(lane: np.ndarray, width: int) -> np.ndarray:
    """Median filter over ``width`` frames within each run of finite values."""
    out = lane.copy()
    finite = np.isfinite(lane)
    edges = np.flatnonzero(np.diff(np.r_[0, finite.astype(np.int8), 0]))
    half = width // 2
    for a, b in zip(edges[::2], edges[1::2]):
        seg = np.pad(lane[a:b], half, mode="edge")
        out[a:b] = np.median(np.lib.stride_tricks.sliding_window_view(seg, width), axis=1)
    return out
