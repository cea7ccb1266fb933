"""Live timbre controls: change the DX7 parameters a DDX7 model renders through while it plays.

A trained DDX7 model predicts, per 4 ms frame, the output level (modulation index) of each of
the six operators of a fixed DX7 configuration. The controls here act between the model and the
synth, as a DX7 player acts on a voice:

* ``level_db[op]``: an offset added to operator ``op``'s output level, in dB (a DX7 output-level
  step above level 20 is :data:`dx7tools.levels.STEP_DB` = 0.753 dB). On a carrier it moves
  that operator's band up or down by that many dB; on a modulator it changes how much it
  modulates (brightness of the partials it feeds). Levels are capped at output level 99.
* ``on[op]``: False mutes the operator (its output level 0): a carrier's band disappears, a
  modulator stops modulating.
* ``coarse[op]``, ``fine[op]``: FREQ COARSE 0-31 / FINE 0-99 replacing the voice's (``None``
  keeps it): a carrier's partials move to the new ratio, a modulator's sidebands move.
* ``feedback``: FEEDBACK 0-7 replacing the voice's.
* ``transpose``: semitones; f0 is multiplied by ``2 ** (transpose / 12)`` before the model and
  the synth, as if the player played that much higher (the model predicts the levels it would
  at that pitch).
* ``brightness_db``: a dB offset added to every modulator (every non-carrier of the
  algorithm): all modulation indexes scale together, so the spectrum gets brighter or darker.

A :class:`Timeline` holds controls that change over time (frame by frame), from the command line
(fixed), from a Standard MIDI File of controller changes (:data:`CC_MAP`) or from
:meth:`Timeline.add` between streaming blocks. Frames are :data:`dx7tools.audio.FRAME_RATE`
per second; a change at time ``t`` takes effect from frame ``ceil(t * FRAME_RATE)``, ramped in
over that frame by the synth's causal interpolation.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

import numpy as np
import torch

from dx7tools.audio import FRAME_RATE
from dx7tools.errors import DX7Error
from dx7tools.fixed_config import FixedConfig
from dx7tools.levels import STEP_DB, output_level_to_amplitude

OPS = range(1, 7)
MAX_INDEX = 2.0 * float(output_level_to_amplitude(99))
"""The highest output level a control can reach: level 99 (DDX7 index 2)."""
TRANSPOSE_LIMIT = 48
"""Semitones either way."""
LEVEL_LIMIT_DB = 96.0
"""Level and brightness offsets are limited to +-this many dB."""


@dataclass(frozen=True)
class Controls:
    """The live settings in force at one frame (see the module notes; operators are OP1..OP6)."""

    level_db: tuple[float, ...] = (0.0,) * 6
    on: tuple[bool, ...] = (True,) * 6
    coarse: tuple[int | None, ...] = (None,) * 6
    fine: tuple[int | None, ...] = (None,) * 6
    feedback: int | None = None
    transpose: int = 0
    brightness_db: float = 0.0

    def apply(self, name: str, op: int | None, value) -> "Controls":
        """These controls with one change: ``name`` is a field, ``op`` 1-6 for the per-operator
        fields (``None`` otherwise), ``value`` checked against the field's range."""
        check = _CHECKS.get(name)
        if check is None:
            raise DX7Error(f"unknown live control {name!r}; choose one of {', '.join(_CHECKS)}")
        value = check(value)
        if name in PER_OPERATOR:
            if op not in OPS:
                raise DX7Error(f"{name} needs an operator 1-6, got {op!r}")
            values = list(getattr(self, name))
            values[op - 1] = value
            return replace(self, **{name: tuple(values)})
        return replace(self, **{name: value})

    @property
    def f0_factor(self) -> float:
        return 2.0 ** (self.transpose / 12.0)

    def gains(self, carrier_mask) -> np.ndarray:
        """(6,) linear gain on each operator's index: level offset, brightness on the
        modulators (``carrier_mask`` 0), 0 where muted."""
        carrier = np.asarray(carrier_mask, dtype=bool)
        db = np.asarray(self.level_db, dtype=np.float64) + np.where(carrier, 0.0, self.brightness_db)
        return np.where(np.asarray(self.on), 10.0 ** (db / 20.0), 0.0)

    def config(self, base: FixedConfig) -> FixedConfig:
        """``base`` with these controls' frequencies and feedback."""
        coarse = tuple(b if c is None else c for b, c in zip(base.coarse, self.coarse))
        fine = tuple(b if f is None else f for b, f in zip(base.fine, self.fine))
        feedback = base.feedback if self.feedback is None else self.feedback
        return FixedConfig(base.algorithm, base.mode, coarse, fine, base.detune, feedback, base.name)

    def describe(self) -> dict:
        """JSON-ready: only what differs from the voice as trained."""
        out: dict = {}
        for name in ("level_db", "on", "coarse", "fine"):
            default = getattr(Controls(), name)
            changed = {str(op): v for op, v, d in zip(OPS, getattr(self, name), default) if v != d}
            if changed:
                out[name] = changed
        for name in ("feedback", "transpose", "brightness_db"):
            if getattr(self, name) != getattr(Controls(), name):
                out[name] = getattr(self, name)
        return out


def _number(low: float, high: float, what: str, whole: bool = False) -> Callable:
    def check(value):
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise DX7Error(f"{what} must be a number, got {value!r}") from None
        if not (math.isfinite(x) and low <= x <= high) or (whole and x != int(x)):
            kind = "a whole number" if whole else "a number"
            raise DX7Error(f"{what} must be {kind} from {low:g} to {high:g}, got {value!r}")
        return int(x) if whole else x
    return check


def _switch(value) -> bool:
    if isinstance(value, (bool, np.bool_)) or value in (0, 1):
        return bool(value)
    raise DX7Error(f"an operator is on (True) or off (False), got {value!r}")


PER_OPERATOR = ("level_db", "on", "coarse", "fine")
_CHECKS: dict[str, Callable] = {
    "level_db": _number(-LEVEL_LIMIT_DB, LEVEL_LIMIT_DB, "a level offset (dB)"),
    "on": _switch,
    "coarse": _number(0, 31, "FREQ COARSE", whole=True),
    "fine": _number(0, 99, "FREQ FINE", whole=True),
    "feedback": _number(0, 7, "FEEDBACK", whole=True),
    "transpose": _number(-TRANSPOSE_LIMIT, TRANSPOSE_LIMIT, "transpose (semitones)", whole=True),
    "brightness_db": _number(-LEVEL_LIMIT_DB, LEVEL_LIMIT_DB, "brightness (dB)"),
}


# -- command-line settings ------------------------------------------------------------------------
_OP_SPEC = re.compile(r"^\s*([1-6])\s*=\s*(.+?)\s*$")


def parse_level(text: str, what: str = "a level") -> float:
    """``-6dB`` (decibels) or ``-6`` (DX7 output-level steps of 0.753 dB) -> dB."""
    t = text.strip()
    unit_db = t.lower().endswith("db")
    number = t[:-2] if unit_db else t
    try:
        x = float(number)
    except ValueError:
        raise DX7Error(f"{what} must be like -6dB (decibels) or -6 (DX7 output-level steps), got {text!r}") from None
    return x if unit_db else x * STEP_DB


def parse_op(spec: str) -> list[tuple[str, int, object]]:
    """``--op`` value -> changes: ``5=-6dB``, ``5=-6`` (output-level steps), ``2=off``, ``2=on``."""
    m = _OP_SPEC.match(spec)
    if not m:
        raise DX7Error(f"--op wants OP=LEVEL (OP 1-6; LEVEL like -6dB, -6 or off), got {spec!r}")
    op, value = int(m.group(1)), m.group(2).lower()
    if value in ("off", "on"):
        return [("on", op, value == "on")]
    return [("level_db", op, parse_level(value, f"--op {op}"))]


def parse_ratio(spec: str) -> list[tuple[str, int, object]]:
    """``--ratio`` value -> changes: ``6=7`` (FREQ COARSE 7, FINE 0) or ``6=7/50``."""
    m = _OP_SPEC.match(spec)
    parts = m.group(2).split("/") if m else []
    if not m or len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise DX7Error(f"--ratio wants OP=COARSE or OP=COARSE/FINE (OP 1-6), got {spec!r}")
    op = int(m.group(1))
    fine = int(parts[1]) if len(parts) == 2 else 0
    return [("coarse", op, int(parts[0])), ("fine", op, fine)]


def settings_controls(*, op: Iterable[str] = (), ratio: Iterable[str] = (), feedback: int | None = None,
                      transpose: int = 0, brightness: str | None = None) -> Controls:
    """The command line's fixed settings as :class:`Controls` (repeated ``--op``/``--ratio``:
    later ones win for the same operator and setting)."""
    c = Controls()
    changes = [ch for s in op for ch in parse_op(s)] + [ch for s in ratio for ch in parse_ratio(s)]
    if feedback is not None:
        changes.append(("feedback", None, feedback))
    if transpose:
        changes.append(("transpose", None, transpose))
    if brightness is not None:
        changes.append(("brightness_db", None, parse_level(brightness, "--brightness")))
    for name, o, value in changes:
        c = c.apply(name, o, value)
    return c


# -- controller changes over time -----------------------------------------------------------------
@dataclass(frozen=True)
class CCRow:
    """One controller of :data:`CC_MAP`: ``convert`` turns the 0-127 value into ``name``'s value."""

    cc: int
    name: str
    op: int | None
    convert: Callable[[int], object]
    meaning: str


def _level_steps(v: int) -> float:
    return (v - 64) * STEP_DB


def _semitones(v: int) -> int:
    return max(-TRANSPOSE_LIMIT, min(TRANSPOSE_LIMIT, v - 64))


def _cc_rows() -> tuple[CCRow, ...]:
    rows = [CCRow(9, "transpose", None, _semitones,
                  f"transpose, value - 64 semitones (64 = none), clamped to -{TRANSPOSE_LIMIT}..{TRANSPOSE_LIMIT}"),
            CCRow(14, "brightness_db", None, _level_steps,
                  "brightness: every modulator's level, value - 64 output-level steps (64 = none)"),
            CCRow(15, "feedback", None, lambda v: v // 16, "FEEDBACK = value // 16 (0-7)")]
    for op in OPS:
        rows.append(CCRow(15 + op, "level_db", op, _level_steps,
                          f"OP{op} level offset, value - 64 output-level steps (64 = none)"))
    for op in OPS:
        rows.append(CCRow(21 + op, "on", op, lambda v: v >= 64, f"OP{op} on (value >= 64) or off"))
    for op in OPS:
        rows.append(CCRow(101 + op, "coarse", op, lambda v: v // 4, f"OP{op} FREQ COARSE = value // 4 (0-31)"))
    for op in OPS:
        rows.append(CCRow(107 + op, "fine", op, lambda v: min(v, 99), f"OP{op} FREQ FINE = value (99 at most)"))
    return tuple(rows)


CC_MAP: dict[int, CCRow] = {row.cc: row for row in _cc_rows()}
"""Controller number -> what it changes. The one table behind ``--controls`` parsing, the CC
table in docs/live.md (:func:`cc_map_markdown`) and the messages about ignored controllers."""


def cc_map_markdown() -> str:
    """:data:`CC_MAP` as a Markdown table (docs/live.md holds this text; a test checks it)."""
    lines = ["| CC | control | value |", "|---:|---|---|"]
    for row in CC_MAP.values():
        target = f"OP{row.op} {row.name}" if row.op else row.name
        lines.append(f"| {row.cc} | `{target}` | {row.meaning} |")
    return "\n".join(lines)


def mapped_ccs() -> str:
    """The mapped controller numbers as ranges, for messages: ``9, 14-27, 102-113``."""
    nums, out, i = sorted(CC_MAP), [], 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ", ".join(out)


@dataclass
class Timeline:
    """Controls over time: ``base`` from frame 0, then ``events`` (frame, name, op, value)
    applied in order (stable for equal frames).

    The controls in force are kept as snapshots (one per frame where something changes). A
    change at or after the last snapshot's frame (the live case: changes arrive in time order)
    extends them in O(1); an earlier one re-sorts and rebuilds them (counted in :attr:`rebuilds`).
    :meth:`fold` forgets the changes before a frame, so a live session's timeline stays small.
    """

    base: Controls = field(default_factory=Controls)
    events: list[tuple[int, str, int | None, object]] = field(default_factory=list)
    _snapshots: list[tuple[int, Controls]] | None = field(default=None, init=False, repr=False, compare=False)
    rebuilds: int = field(default=0, init=False, repr=False, compare=False)
    """How many times the snapshots were rebuilt from all the events."""

    def add(self, frame: int, name: str, op: int | None, value) -> None:
        """A change from ``frame`` on (checked now)."""
        frame = int(frame)
        snaps = self._snaps()
        if frame >= snaps[-1][0]:  # after every stored change: extend, keep the snapshots
            controls = snaps[-1][1].apply(name, op, value)
            self.events.append((frame, name, op, value))
            if snaps[-1][0] == frame:
                snaps[-1] = (frame, controls)
            else:
                snaps.append((frame, controls))
            return
        self.at(frame).apply(name, op, value)
        bisect.insort_right(self.events, (frame, name, op, value), key=lambda e: e[0])
        self._snapshots = None

    def fold(self, frame: int) -> None:
        """Make the controls in force just before ``frame`` the base and drop the changes before
        it: from ``frame`` on nothing changes; earlier frames answer as ``frame - 1`` did."""
        cut = bisect.bisect_left(self.events, frame, key=lambda e: e[0])
        if frame <= 0 or cut == 0:  # (changes before frame 0 act from frame 0)
            return
        snaps = self._snaps()
        self.base = self.at(frame - 1)
        keep = bisect.bisect_left(snaps, frame, key=lambda snap: snap[0])
        snaps[:keep] = [(0, self.base)]
        del self.events[:cut]

    def copy(self) -> "Timeline":
        """A timeline of the same controls that changes apart from this one."""
        return Timeline(self.base, list(self.events))

    def _snaps(self) -> list[tuple[int, Controls]]:
        if self._snapshots is None:
            snaps, c = [(0, self.base)], self.base
            for frame, name, op, value in self.events:
                c = c.apply(name, op, value)
                if snaps[-1][0] == max(frame, 0):
                    snaps[-1] = (snaps[-1][0], c)
                else:
                    snaps.append((max(frame, 0), c))
            self._snapshots = snaps
            self.rebuilds += 1
        return self._snapshots

    def at(self, frame: int) -> Controls:
        snaps = self._snaps()
        i = bisect.bisect_right(snaps, frame, key=lambda snap: snap[0])
        return snaps[i - 1][1] if i else self.base

    def spans(self, k0: int, k1: int) -> list[tuple[int, int, Controls]]:
        """Frames [k0, k1) cut where the controls change: ``(a, b, controls)`` with a, b relative to k0."""
        snaps = self._snaps()
        first = bisect.bisect_right(snaps, k0, key=lambda snap: snap[0])
        cuts = [s for s, _ in snaps[first: bisect.bisect_left(snaps, k1, key=lambda snap: snap[0])]]
        edges = [k0, *cuts, k1]
        return [(a - k0, b - k0, self.at(a)) for a, b in zip(edges[:-1], edges[1:]) if b > a]

    def f0_factors(self, k0: int, n: int) -> torch.Tensor:
        """(n,) transposition factor per frame."""
        out = torch.ones(n, dtype=torch.float32)
        for a, b, c in self.spans(k0, k0 + n):
            out[a:b] = c.f0_factor
        return out


@dataclass
class ControlsTake:
    """What :func:`read_controls_mid` found: the changes and what it ignored."""

    events: list[tuple[int, str, int | None, object]]
    applied: int
    ignored_cc: Counter
    other_messages: int

    def report(self) -> dict:
        return {"applied": self.applied, "ignored_cc": sum(self.ignored_cc.values()),
                "ignored_cc_numbers": sorted(self.ignored_cc), "other_messages": self.other_messages}


def read_controls_mid(path) -> ControlsTake:
    """The controller changes of a Standard MIDI File (any channel) as timeline events.

    Controllers in :data:`CC_MAP` become changes at frame ``ceil(t * FRAME_RATE)``; controllers
    outside it and every other message (notes, bends, SysEx) are ignored and counted.

    Raises:
        DX7Error: not a Standard MIDI File, or a controller value whose control is out of range
            (naming the file, the controller and the time).
    """
    from dx7tools.midi import read_midi_events

    events, ignored, other = [], Counter(), 0
    for ev in read_midi_events(path, on_bad_sysex=lambda line: None):
        if len(ev.data) != 3 or ev.data[0] & 0xF0 != 0xB0:
            other += 1
            continue
        row = CC_MAP.get(ev.data[1])
        if row is None:
            ignored[ev.data[1]] += 1
            continue
        frame = math.ceil(ev.time * FRAME_RATE - 1e-9)
        events.append((frame, row.name, row.op, _converted(row, ev.data[2], ev.time, path)))
    return ControlsTake(events, len(events), ignored, other)


def _converted(row: CCRow, value: int, t: float, path) -> object:
    """``row``'s control value for controller value ``value`` at ``t`` seconds, checked."""
    try:
        return _CHECKS[row.name](row.convert(value))
    except DX7Error as exc:
        raise DX7Error(f"CC {row.cc} value {value}: {exc.problem} at {t:.3f} s", str(path)) from None


def timeline_from(controls: Controls | None = None, take: ControlsTake | None = None) -> Timeline:
    """Fixed settings (from frame 0), then a controls take's changes over them."""
    t = Timeline(controls or Controls())
    for event in (take.events if take else ()):
        t.add(*event)
    return t


# -- rendering ------------------------------------------------------------------------------------
class LiveSynth:
    """Renders a DDX7 model's frames through its synth with a :class:`Timeline` applied.

    One synth per configuration that the controls reach (frequencies, feedback), built on first
    use; the synth state (phases, last frame, feedback memory) carries across configurations,
    so a change is glitch-free in phase.
    """

    def __init__(self, model, timeline: Timeline):
        if getattr(model, "kind", None) != "ddx7":
            raise DX7Error("live controls need a DDX7 run (an HpN model has no DX7 operators)")
        self.model, self.timeline = model, timeline
        self._synths: dict[tuple, torch.nn.Module] = {}

    def synth(self, controls: Controls):
        from ddx7.synth.fm import FMSynth

        base = self.model.synth
        config = controls.config(base.config)
        if config.key == base.config.key:
            return base
        if config.key not in self._synths:
            self._synths[config.key] = FMSynth(config, base.sample_rate, base.hop_length, antialias=base.antialias)
        return self._synths[config.key]

    def render(self, f0: torch.Tensor, index: torch.Tensor, k0: int, state):
        """f0 (1, n) Hz already transposed (:meth:`Timeline.f0_factors`), index (1, n, 6) as the
        model predicted, frames k0..k0+n -> ``(dry audio (1, n * hop), state)``."""
        mask = self.model.synth.carrier_mask.numpy()
        pieces = []
        for a, b, c in self.timeline.spans(k0, k0 + f0.shape[1]):
            gains = torch.from_numpy(c.gains(mask)).to(index.dtype)
            level = index[:, a:b]
            level = torch.minimum(level * gains, level.clamp(min=MAX_INDEX))  # raised: at most level 99
            audio, state = self.synth(c).render(f0[:, a:b], level, state)
            pieces.append(audio)
        return torch.cat(pieces, 1), state


def render_frames(model, f0: torch.Tensor, loudness: torch.Tensor, timeline: Timeline) -> torch.Tensor:
    """A whole input at once with controls: f0 (1, T) Hz, loudness (1, T) dB -> audio (1, T * hop)
    (decoder, synth and reverb of ``model``, the timeline from frame 0)."""
    live = LiveSynth(model, timeline)
    with torch.inference_mode():
        f0 = f0 * timeline.f0_factors(0, f0.shape[1]).to(f0.dtype)
        dry, _ = live.render(f0, model.controls(f0, loudness), 0, None)
        return model.reverb(dry)
