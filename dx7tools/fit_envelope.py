"""Fit DX7 operator settings to target level trajectories (numpy, integer search).

Given, for one operator, its wanted linear amplitude frame by frame for a few held notes
(:class:`NoteTarget`: MIDI note, velocity, how long the key is held, amplitude at 250 frames/s
from note-on, 1.0 = output level 99 at EG level 99), find the operator's

* OUTPUT LEVEL and EG RATE 1-4 / LEVEL 1-4, on the reference note (the first target);
* KEY VELOCITY SENSITIVITY 0-7, from the targets at other velocities;
* KEYBOARD LEVEL SCALING (breakpoint at the reference key, left/right curve and depth), from
  the targets at other pitches;

so that the DX7's own curves (:func:`dx7tools.envelope.eg_levels`, the engine's arithmetic)
reproduce the targets as closely as possible in dB. The error of a candidate is the RMS
difference in dB over every frame, both curves floored at ``floor_db`` below the loudest
target frame of the operator (below that nothing is audible next to it).

The search is over the DX7's integers directly: a coarse start read off the target (peak,
sustain, attack and release times), then coordinate descent with steps of 16, 8, 4, 2, 1 on
each parameter until no step helps (it cannot diverge; it only stops improving). Keyboard
rate scaling and the LFO are left at 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import FRAME_RATE
from .envelope import eg_levels
from .errors import DX7Error
from .levels import STEP_DB, keyboard_level_scaling, round_output_level

EG_KEYS = ("eg_rate_1", "eg_rate_2", "eg_rate_3", "eg_rate_4", "eg_level_1", "eg_level_2", "eg_level_3", "eg_level_4")


@dataclass(frozen=True)
class NoteTarget:
    """One held note's wanted amplitude for one operator.

    Attributes:
        note: MIDI note 0-127.
        velocity: MIDI velocity 1-127.
        note_seconds: how long the key is held (s); the release follows.
        amplitude: float array (frames,), linear amplitude at ``i / 250`` s after note-on;
            NaN marks frames that do not matter (left out of the error).
    """

    note: int
    velocity: int
    note_seconds: float
    amplitude: np.ndarray


@dataclass
class OperatorFit:
    """Fitted settings of one operator (raw DX7 values, keys as in :mod:`dx7tools.params`
    without the ``opN_`` prefix) and the RMS dB error over all targets."""

    values: dict
    rms_db: float
    silent: bool = False


def _defaults() -> dict:
    return {"output_level": 0, "eg_rate_1": 99, "eg_rate_2": 99, "eg_rate_3": 99, "eg_rate_4": 99,
            "eg_level_1": 99, "eg_level_2": 99, "eg_level_3": 99, "eg_level_4": 0,
            "velocity_sensitivity": 0, "breakpoint": 39, "left_depth": 0, "right_depth": 0,
            "left_curve": 0, "right_curve": 0, "rate_scaling": 0}


RESTART_DB = 3.0
"""A refit whose RMS error (dB) stays above this is tried again from a flat EG (measured: on a
violin phrase one operator stalled 30 dB off from the held-note start; the flat start reached 4 dB)."""

FITTED_KEYS = tuple(_defaults())
"""The operator settings a fit sets (keys without the ``opN_`` prefix)."""

_RANGES = {k: (0, 99) for k in ("output_level", "breakpoint", "left_depth", "right_depth", *EG_KEYS)}
_RANGES.update({"velocity_sensitivity": (0, 7), "left_curve": (0, 3), "right_curve": (0, 3)})


def render_target(values: dict, target: NoteTarget) -> np.ndarray:
    """The DX7's amplitude (frames,) for ``target``'s note with operator settings ``values``."""
    kls = keyboard_level_scaling(target.note, values["breakpoint"], values["left_depth"], values["right_depth"],
                                 values["left_curve"], values["right_curve"])
    return eg_levels([values[f"eg_rate_{i}"] for i in range(1, 5)], [values[f"eg_level_{i}"] for i in range(1, 5)],
                     target.note_seconds, total_seconds=len(target.amplitude) / FRAME_RATE, note=target.note,
                     output_level=values["output_level"], velocity=target.velocity,
                     velocity_sensitivity=values["velocity_sensitivity"], level_scaling=kls)


def _db(x: np.ndarray, floor: float) -> np.ndarray:
    return 20.0 * np.log10(np.maximum(x, floor))


class _Cost:
    def __init__(self, targets: list[NoteTarget], floor: float):
        self.targets, self.floor = targets, floor
        self.care = [np.isfinite(t.amplitude) for t in targets]
        self.wanted = [_db(np.nan_to_num(t.amplitude)[c], floor) for t, c in zip(targets, self.care)]
        self.seen: dict = {}

    def __call__(self, values: dict, which: list[int] | None = None) -> float:
        # Coordinate descent keeps coming back to the same neighbours: remember what they cost.
        key = (tuple(sorted(values.items())), None if which is None else tuple(which))
        if key not in self.seen:
            self.seen[key] = self._cost(values, which)
        return self.seen[key]

    def _cost(self, values: dict, which: list[int] | None) -> float:
        sq, n = 0.0, 0
        for i in which if which is not None else range(len(self.targets)):
            got = _db(render_target(values, self.targets[i])[self.care[i]], self.floor)
            sq += float(np.sum((got - self.wanted[i]) ** 2))
            n += len(got)
        return float(np.sqrt(sq / max(n, 1)))


def _descend(values: dict, keys: tuple, cost: _Cost, which=None, max_sweeps: int = 12) -> float:
    """Coordinate descent over integer parameters ``keys`` (steps 16..1); returns the final cost."""
    best = cost(values, which)
    for _ in range(max_sweeps):
        improved = False
        for key in keys:
            lo, hi = _RANGES[key]
            for step in (16, 8, 4, 2, 1):
                for sign in (1, -1):
                    while True:
                        v = values[key] + sign * step
                        if not lo <= v <= hi:
                            break
                        trial = {**values, key: v}
                        c = cost(trial, which)
                        if c < best - 1e-9:
                            values[key], best, improved = v, c, True
                        else:
                            break
        if not improved:
            break
    return best


def _cost(targets: list[NoteTarget], floor_db: float, silent_below: float) -> "_Cost | None":
    """The error of ``targets`` (checked) with both curves floored ``floor_db`` below their loudest
    frame, or None when that frame is under ``silent_below`` (the operator is silent)."""
    _check_targets(targets)
    peak = max(float(np.nanmax(t.amplitude)) for t in targets)
    if peak < silent_below:
        return None
    return _Cost(list(targets), peak * 10 ** (-floor_db / 20))


def _velocity_sensitivity(values: dict, cost: "_Cost", which=None) -> dict:
    """``values`` with the KEY VELOCITY SENSITIVITY 0-7 (the output level re-descended for each)
    that fits the targets ``which`` best."""
    best = None
    for sens in range(8):
        trial = {**values, "velocity_sensitivity": sens}
        c = _descend(trial, ("output_level",), cost, which, max_sweeps=3)
        if best is None or c < best[0] - 1e-9:
            best = (c, trial)
    return best[1]


def _check_targets(targets: list[NoteTarget]) -> None:
    if not targets:
        raise DX7Error("nothing to fit: no target notes")
    for t in targets:
        a = np.asarray(t.amplitude, dtype=np.float64)
        if a.ndim != 1 or len(a) < 2 or np.any(np.isinf(a)) or np.any(a < 0) or not np.any(np.isfinite(a)):
            raise DX7Error("target levels must be finite (NaN: don't care), >= 0, one value per frame "
                           "(at least 2 frames)")


def _level_for_db(db: float) -> int:
    """EG level whose step below 99 is ``db`` (about 0.75 dB per level above 20)."""
    return int(np.clip(round(99 + db / round(STEP_DB, 3)), 0, 99))  # STEP_DB rounded to 0.753 as before


def _initial(target: NoteTarget, floor: float) -> dict:
    """A start read off the reference note: peak -> output level, sustain -> EG level 3, times -> rates."""
    a = np.nan_to_num(np.asarray(target.amplitude, dtype=np.float64))
    v = _defaults()
    peak = float(a.max())
    v["output_level"] = int(round_output_level(peak))
    held = min(len(a), int(round(target.note_seconds * FRAME_RATE)))
    sustain = float(np.median(a[held // 2: max(held // 2 + 1, held)])) if held > 2 else peak
    v["eg_level_3"] = v["eg_level_2"] = _level_for_db(20 * np.log10(max(sustain, floor) / peak))
    # Attack: frames to 90 % of the peak; a fast attack is rate ~90, a 0.5 s one ~40.
    t_attack = np.argmax(a >= 0.9 * peak) / FRAME_RATE
    v["eg_rate_1"] = int(np.clip(round(95 - 60 * np.sqrt(t_attack / 0.5)), 0, 99))
    v["eg_rate_2"] = v["eg_rate_3"] = 60
    # Release: time from key-up to -40 dB below the level there.
    after = a[held:]
    v["eg_rate_4"] = 60
    if len(after) > 1 and after[0] > 0:
        below = np.flatnonzero(after < after[0] * 0.01)
        t_rel = below[0] / FRAME_RATE if len(below) else len(after) / FRAME_RATE
        v["eg_rate_4"] = int(np.clip(round(95 - 45 * np.sqrt(t_rel / 0.5)), 0, 99))
    end = float(a[-1])
    v["eg_level_4"] = _level_for_db(20 * np.log10(max(end, floor) / peak)) if end > 0.1 * peak else 0
    return v


def fit_operator(targets: list[NoteTarget], *, floor_db: float = 60.0, silent_below: float = 1e-3,
                 fit_velocity: bool = True, fit_scaling: bool = True) -> OperatorFit:
    """Fit one operator's level settings to ``targets`` (the first is the reference note).

    Args:
        targets: held notes; targets at the reference note's pitch but other velocities fit the
            velocity sensitivity, targets at other pitches (and the reference velocity) fit the
            keyboard level scaling.
        floor_db: dB below the loudest target frame where both curves are floored.
        silent_below: an operator whose targets never exceed this amplitude (-60 dB re full
            scale) gets output level 0.
        fit_velocity, fit_scaling: whether to fit those (else left at 0).

    Returns:
        :class:`OperatorFit`.

    Raises:
        DX7Error: no targets, or non-finite / negative amplitudes.
    """
    cost = _cost(targets, floor_db, silent_below)
    if cost is None:
        return OperatorFit(_defaults(), 0.0, silent=True)
    floor = cost.floor
    ref = targets[0]
    values = _initial(ref, floor)
    # Keys b + 16 .. b + 18 are the unscaled ones (dx7tools.levels: offset note - b - 17): put the
    # reference note there, so scaling fits only what changes away from it.
    values["breakpoint"] = int(np.clip(ref.note - 17, 0, 99))
    _descend(values, ("output_level", *EG_KEYS), cost, [0])
    same_pitch = [i for i, t in enumerate(targets) if t.note == ref.note]
    if fit_velocity and len({targets[i].velocity for i in same_pitch}) > 1:
        values = _velocity_sensitivity(values, cost, same_pitch)
    same_vel = [i for i, t in enumerate(targets) if t.velocity == ref.velocity]
    if fit_scaling:
        for side, pick in (("left", lambda t: t.note < ref.note), ("right", lambda t: t.note > ref.note)):
            which = [i for i in same_vel if pick(targets[i])]
            if not which:
                continue
            best = (cost(values, which), values)
            for curve in range(4):
                trial = {**values, f"{side}_curve": curve, f"{side}_depth": 20}
                c = _descend(trial, (f"{side}_depth",), cost, which, max_sweeps=4)
                if c < best[0] - 1e-9:
                    best = (c, trial)
            values = best[1]
    # A last pass over everything on every note.
    final = _descend(values, ("output_level", *EG_KEYS, "left_depth", "right_depth"), cost, None, max_sweeps=3)
    return OperatorFit(values, final)


def refit_operator(targets: list[NoteTarget], values: dict, *, floor_db: float = 60.0,
                   silent_below: float = 1e-3) -> OperatorFit:
    """Refine one operator's settings ``values`` (e.g. :func:`fit_operator`'s on held notes) against
    many notes at once, each at its own pitch, velocity and length (a phrase's notes).

    Unlike :func:`fit_operator`, no note is the reference: the output level and EG are descended on
    every note together, then each velocity sensitivity 0-7 is tried (with the output level
    re-descended), then a last pass also moves the keyboard level scaling depths. The result is
    never worse on ``targets`` than ``values`` (descent only keeps improvements).

    Args:
        targets: the notes (:class:`NoteTarget`; NaN frames do not count).
        values: the starting settings (keys as :func:`fit_operator` returns them).
        floor_db, silent_below: as :func:`fit_operator`.

    Raises:
        DX7Error: no targets, or non-finite / negative amplitudes.
    """
    cost = _cost(targets, floor_db, silent_below)
    if cost is None:
        return OperatorFit(_defaults(), 0.0, silent=True)
    start = {**_defaults(), **values}
    held = np.concatenate([np.asarray(t.amplitude)[:max(2, int(t.note_seconds * FRAME_RATE))] for t in targets])
    level = int(round_output_level(float(np.nanmedian(held)))) if np.isfinite(held).any() else start["output_level"]
    flat = {**start, **{f"eg_level_{i}": 99 for i in (1, 2, 3)}, **{f"eg_rate_{i}": 99 for i in (1, 2, 3)},
            "eg_level_4": 0, "output_level": level}
    fit = _refine(dict(start), cost)
    if fit.rms_db > RESTART_DB:  # descent stalls in local minima: start again from a flat EG
        fit = min(fit, _refine(dict(flat), cost), key=lambda f: f.rms_db)
    return fit


def _refine(values: dict, cost: _Cost) -> OperatorFit:
    """:func:`refit_operator`'s descent from ``values``."""
    _descend(values, ("output_level",), cost)
    _descend(values, ("output_level", *EG_KEYS), cost, max_sweeps=6)
    values = _velocity_sensitivity(values, cost)
    final = _descend(values, ("output_level", *EG_KEYS, "left_depth", "right_depth"), cost, max_sweeps=3)
    return OperatorFit(values, final)


def fit_voice_levels(targets_per_operator: list[list[NoteTarget]], **kwargs) -> list[OperatorFit]:
    """:func:`fit_operator` for OP1..OP6 (``targets_per_operator[k]`` is OP k+1's list)."""
    if len(targets_per_operator) != 6:
        raise DX7Error(f"need targets for 6 operators, got {len(targets_per_operator)}")
    return [fit_operator(t, **kwargs) for t in targets_per_operator]


def apply_fits(voice, fits: list[OperatorFit]):
    """``voice`` with each operator's fitted level settings (a new :class:`~dx7tools.voice.Voice`)."""
    changes = {}
    for n, f in enumerate(fits, start=1):
        for key, value in f.values.items():
            changes[f"op{n}_{key}"] = int(value)
        if f.silent:
            changes[f"op{n}_output_level"] = 0
    return voice.replace(**changes)
