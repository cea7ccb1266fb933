"""A few notes written as text, as MIDI events: audition a voice without writing a .mid.

``"60:100:1.0 64:90:0.5 C5+E5+G5:110:2"`` is three steps played one after another: a step is
``NOTE[:VELOCITY[:SECONDS]]`` (velocity 100 and 0.5 s by default), a note is a MIDI number
(0-127) or a name (``C4`` = 60, ``F#3``, ``Bb5``), and ``+`` joins notes into a chord. A
controller sweep (:data:`SWEEPS`) moves one controller from its lowest to its highest value
over the phrase, in 64 steps.
"""

from __future__ import annotations

import re

from .errors import DX7Error
from .midi import Event

SWEEPS = {"mod_wheel": 1, "breath": 2, "foot": 4, "aftertouch": "aftertouch", "bend": "bend"}
"""Controllers a phrase can sweep: CC numbers, channel aftertouch, or pitch bend (down to up)."""
_NAMES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_NOTE = re.compile(r"^([A-Ga-g])([#b]?)(-?\d+)$")


def note_number(text: str) -> int:
    """``"60"`` or ``"C4"`` (C4 = 60, sharps ``#``, flats ``b``) -> a MIDI note 0-127."""
    text = text.strip()
    if re.fullmatch(r"-?[0-9]+", text):
        n = int(text)
    else:
        m = _NOTE.match(text)
        if not m:
            raise DX7Error(f"not a note: {text!r} (a MIDI number 0-127 or a name such as C4, F#3, Bb5)")
        n = 12 * (int(m.group(3)) + 1) + _NAMES[m.group(1).upper()] + {"#": 1, "b": -1, "": 0}[m.group(2)]
    if not 0 <= n <= 127:
        raise DX7Error(f"note {text!r} is outside MIDI's 0-127")
    return n


def parse_steps(spec: str) -> list[tuple[list[int], int, float]]:
    """``spec`` (see the module notes) -> ``[(notes, velocity, seconds), ...]``."""
    steps = []
    for item in spec.split():
        parts = item.split(":")
        if len(parts) > 3:
            raise DX7Error(f"bad step {item!r}: want NOTE[:VELOCITY[:SECONDS]]")
        notes = [note_number(n) for n in parts[0].split("+")]
        try:
            velocity = int(parts[1]) if len(parts) > 1 and parts[1] else 100
            seconds = float(parts[2]) if len(parts) > 2 else 0.5
        except ValueError:
            raise DX7Error(f"bad step {item!r}: velocity is a whole number, seconds a number") from None
        if not 1 <= velocity <= 127:
            raise DX7Error(f"bad step {item!r}: velocity must be 1-127")
        if not 0 < seconds <= 600:
            raise DX7Error(f"bad step {item!r}: seconds must be > 0 and at most 600")
        steps.append((notes, velocity, seconds))
    if not steps:
        raise DX7Error("no notes to play: give steps such as \"60:100:1.0 64:90:0.5\"")
    return steps


def phrase_events(spec: str, sweep: str | None = None, channel: int = 1) -> list[Event]:
    """The events of a phrase (time-ordered), with an optional controller sweep across it."""
    if sweep is not None and sweep not in SWEEPS:
        raise DX7Error(f"unknown sweep {sweep!r}; choose one of {', '.join(SWEEPS)}")
    ch = channel - 1
    events, t = [], 0.0
    for notes, velocity, seconds in parse_steps(spec):
        events += [Event(t, bytes([0x90 | ch, n, velocity])) for n in notes]
        t += seconds
        events += [Event(t, bytes([0x80 | ch, n, 0])) for n in notes]
    if sweep is not None:
        target = SWEEPS[sweep]
        for i in range(64):
            when, value = t * i / 64, round(127 * i / 63)
            if target == "bend":
                v = round(16383 * i / 63)
                data = bytes([0xE0 | ch, v & 0x7F, v >> 7])
            elif target == "aftertouch":
                data = bytes([0xD0 | ch, value])
            else:
                data = bytes([0xB0 | ch, target, value])
            events.append(Event(when, data))
    return sorted(events, key=lambda e: (e.time, e.data[0] & 0xF0 != 0x80))
