"""The DX7's function parameters: the performance settings that are not stored in a voice.

One table (:data:`FUNCTION_TABLE`) gives each parameter's key, its number in the
function-parameter-change message (group 2, numbers 64-77), its range and its default, and
drives parsing of ``KEY=VALUE`` strings, validation, the SysEx messages
(:func:`dx7tools.midi.function_parameter_change`) and the docs.

Sources: the numbers and ranges are the DX7 Operation Manual's MIDI data format (function
parameters, group 2). A Mark I keeps its function settings in battery memory: there is no
documented "INIT" for them (INIT VOICE resets the voice only), so the defaults here are what
Dexed starts with (Dexed ``PluginProcessor.cpp``: pitch-bend range 3, step 0, poly, no
portamento, every controller at range 0 with nothing assigned). A performance that relies on a
setting should send it; :mod:`ddx7.export` does.

Controller ASSIGN values are bit sets: 1 pitch (LFO pitch-mod depth), 2 amplitude (LFO amp-mod
depth), 4 EG bias (:data:`ASSIGN_PITCH`, :data:`ASSIGN_AMPLITUDE`, :data:`ASSIGN_EG_BIAS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from .errors import DX7Error

ASSIGN_PITCH, ASSIGN_AMPLITUDE, ASSIGN_EG_BIAS = 1, 2, 4
"""Bits of a controller's ASSIGN function parameter."""


@dataclass(frozen=True)
class FunctionParam:
    """One function parameter: ``key``, message ``number`` (64-77), range 0..``max``, ``default``."""

    key: str
    number: int
    max: int
    default: int
    doc: str


FUNCTION_TABLE = (
    FunctionParam("mono_poly", 64, 1, 0, "0 poly (16 voices), 1 mono"),
    FunctionParam("pitch_bend_range", 65, 12, 3, "semitones at full bend"),
    FunctionParam("pitch_bend_step", 66, 12, 0, "0 smooth, else 12 // step steps each way over an octave"),
    FunctionParam("portamento_mode", 67, 1, 0, "0 retain (poly) / fingered (mono), 1 follow / full time"),
    FunctionParam("portamento_gliss", 68, 1, 0, "1 glides in semitone steps (glissando)"),
    FunctionParam("portamento_time", 69, 99, 0, "0 off, 99 slowest"),
    FunctionParam("mod_wheel_range", 70, 99, 0, "depth of CC 1"),
    FunctionParam("mod_wheel_assign", 71, 7, 0, "bits: 1 pitch, 2 amplitude, 4 EG bias"),
    FunctionParam("foot_control_range", 72, 99, 0, "depth of CC 4"),
    FunctionParam("foot_control_assign", 73, 7, 0, "bits: 1 pitch, 2 amplitude, 4 EG bias"),
    FunctionParam("breath_control_range", 74, 99, 0, "depth of CC 2"),
    FunctionParam("breath_control_assign", 75, 7, 0, "bits: 1 pitch, 2 amplitude, 4 EG bias"),
    FunctionParam("aftertouch_range", 76, 99, 0, "depth of channel aftertouch"),
    FunctionParam("aftertouch_assign", 77, 7, 0, "bits: 1 pitch, 2 amplitude, 4 EG bias"),
)
BY_KEY = {p.key: p for p in FUNCTION_TABLE}
BY_NUMBER = {p.number: p for p in FUNCTION_TABLE}
DEFAULTS = {p.key: p.default for p in FUNCTION_TABLE}

CONTROLLERS = ("mod_wheel", "foot_control", "breath_control", "aftertouch")
"""The four performance controllers, each with a ``_range`` and an ``_assign`` parameter."""


def check(key: str, value) -> int:
    """``value`` as an int if ``key`` is a function parameter and ``value`` is in its range."""
    p = BY_KEY.get(key)
    if p is None:
        raise DX7Error(f"unknown function parameter {key!r}; known: {', '.join(BY_KEY)}")
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise DX7Error(f"function parameter {key} must be a whole number 0-{p.max}, got {value!r}") from None
    if v != value and not isinstance(value, str) or not 0 <= v <= p.max:
        raise DX7Error(f"function parameter {key} must be 0-{p.max}, got {value!r}")
    return v


def settings(values: Mapping[str, int] | None = None, **changes: int) -> dict[str, int]:
    """A complete, validated set of function parameters: the defaults, then ``values``, then ``changes``."""
    out = dict(DEFAULTS)
    for key, value in {**(values or {}), **changes}.items():
        out[key] = check(key, value)
    return out


def parse_assignments(items: Iterable[str]) -> dict[str, int]:
    """``["pitch_bend_range=12", "breath_control_assign=4"]`` -> a validated dict (for ``--function``)."""
    out: dict[str, int] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep:
            raise DX7Error(f"--function wants KEY=VALUE, got {item!r}")
        out[key.strip()] = check(key.strip(), value.strip())
    return out


def markdown_table() -> str:
    """The table as Markdown, for the docs."""
    rows = ["| key | number | range | default | meaning |", "|---|---|---|---|---|"]
    rows += [f"| `{p.key}` | {p.number} | 0-{p.max} | {p.default} | {p.doc} |" for p in FUNCTION_TABLE]
    return "\n".join(rows)
