"""Hear a performance without a DX7: a .mid played note by note through dexed-py (optional extra)."""

from __future__ import annotations

import numpy as np

from dx7tools.audio import FRAME_RATE
from dx7tools.errors import DX7Error
from dx7tools.voice import Voice

RELEASE_MARGIN_SECONDS = 0.05   # rendered past the end of a note's release curve


def render_midi(voice: Voice, song, *, sample_rate: int = 44100, max_tail: float = 4.0,
                progress=None) -> tuple[np.ndarray, dict]:
    """Play a .mid with ``voice`` through dexed-py (optional GPL extra), note by note.

    dexed-py renders one held note at a time, so each note is rendered on its own -- with the
    voice as it stands at its note-on (:func:`dx7tools.performance.replay`: voice dumps and
    parameter changes in the file apply from the next note-on) -- until its release has died
    away (at most ``max_tail`` s), and mixed at its onset. Not heard: pitch bend, controllers
    (breath, mod wheel, the CC lanes), parameter changes within a note; these are counted in
    the returned ``ignored``.

    Args:
        progress: called with ``(notes rendered, notes)`` after each note.

    Returns:
        ``(audio, info)``: float32 (samples,) at ``sample_rate``, and a dict (notes, seconds,
        sample_rate, ignored counts).

    Raises:
        DX7Error: not a MIDI file, or one without notes.
        MissingExtra: dexed-py is not installed.
    """
    from dx7tools.envelope import operator_levels
    from dx7tools.midi import read_midi_events
    from dx7tools.performance import replay

    from ddx7.synth.preview import render_dexed

    played = replay(read_midi_events(song), voice, str(song))
    if not played.notes:
        raise DX7Error("the MIDI file has no notes to play", str(song))
    rendered, cache = [], {}
    for i, n in enumerate(played.notes):
        held_s = max(n.end - n.start, 1.0 / sample_rate)
        levels = operator_levels(n.voice, n.note, n.velocity, held_s, frame_rate=FRAME_RATE)
        tail = min(max_tail, max(0.0, len(levels) / FRAME_RATE - held_s) + RELEASE_MARGIN_SECONDS)
        key = (n.voice.content_hash, n.note, n.velocity, round(held_s, 3), round(tail, 3))
        if key not in cache:
            cache[key] = render_dexed(n.voice, n.note, n.velocity, round(held_s, 3), tail=round(tail, 3),
                                      sample_rate=sample_rate)
        rendered.append((int(round(n.start * sample_rate)), cache[key]))
        if progress:
            progress(i + 1, len(played.notes))
    length = max(start + len(a) for start, a in rendered)
    out = np.zeros(length, np.float32)
    for start, a in rendered:
        out[start: start + len(a)] += a
    return out, {"notes": len(played.notes), "seconds": round(length / sample_rate, 3), "sample_rate": sample_rate,
                 "ignored": played.ignored}
