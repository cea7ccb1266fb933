"""Hear a performance without a DX7: a .mid played with a voice through the DX7 engine (or dexed-py).

``engine="dx7"`` (default) plays the whole stream through :class:`ddx7.synth.dx7.DX7` as a
Mark I (``receiver="mk1"``) or Dexed (``receiver="dexed"``) takes it: notes, velocities,
sustain, pitch bend, the controllers through the function parameters, voice dumps, parameter
and function changes, program changes. It streams: a long .mid renders in constant memory.

``engine="dexed"`` renders with dexed-py (optional GPL extra ``dexed``), which plays one held
note at a time: each note with the voice in force at its note-on, mixed at its onset; bends,
controllers and changes within a note are not heard (counted in ``ignored``).
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from dx7tools.audio import FRAME_RATE, write_wav_stream
from dx7tools.errors import DX7Error
from dx7tools.voice import Voice

ENGINES = ("dx7", "dexed")
RELEASE_MARGIN_SECONDS = 0.05   # dexed engine: rendered past the end of a note's release curve


def _events(song, warnings: list[str]):
    from dx7tools.midi import read_midi_events

    events = read_midi_events(song, on_bad_sysex=warnings.append)
    if not any(e.data[0] & 0xF0 == 0x90 and len(e.data) > 2 and e.data[2] > 0 for e in events):
        raise DX7Error("the MIDI file has no notes to play", str(song))
    return events


def stream_midi(voice: Voice, song, *, receiver: str = "mk1", sample_rate: int = 44100, functions=None,
                bank=None, tail: float | None = None, progress: Callable[[float, float], None] | None = None,
                ) -> tuple[Iterator[np.ndarray], dict]:
    """Play a .mid through the DX7 engine, chunk by chunk.

    Returns:
        ``(chunks, info)``: an iterator of float32 chunks and a dict that is filled in when the
        iterator is exhausted (see :func:`render_midi`).
    """
    from ddx7.synth.dx7 import DEFAULT_TAIL, DX7

    warnings: list[str] = []
    events = _events(song, warnings)
    engine = DX7(voice, sample_rate=sample_rate, receiver=receiver, functions=functions, bank=bank)
    length = events[-1].time
    info: dict = {}

    def chunks():
        for chunk in engine.stream(events, tail=DEFAULT_TAIL if tail is None else tail):
            if progress:
                progress(min(engine.seconds, length), length)
            yield chunk
        info.update(engine="dx7", **engine.summary, skipped_sysex=len(warnings), warnings=warnings)

    return chunks(), info


def render_midi(voice: Voice, song, *, engine: str = "dx7", receiver: str = "mk1", sample_rate: int = 44100,
                functions=None, bank=None, max_tail: float | None = None, progress=None) -> tuple[np.ndarray, dict]:
    """Play a .mid with ``voice`` (see the module notes) into one array.

    Args:
        engine: ``"dx7"`` or ``"dexed"``.
        receiver: ``"mk1"`` or ``"dexed"`` (dx7 engine).
        functions: function parameters by key (dx7 engine; defaults: :mod:`dx7tools.function`).
        bank: voices for program changes (dx7 engine).
        max_tail: seconds rendered after the last message at most (dx7: default 10 s), or after
            each note's key-up (dexed: default 4 s).
        progress: called with ``(done, total)`` (seconds for dx7, notes for dexed).

    Returns:
        ``(audio, info)``: float32 (samples,) and a dict: ``engine``, ``notes``, ``seconds``,
        ``sample_rate``; for dx7 also ``receiver``, ``stolen``, ``voice_changes``,
        ``stutter_prone``, ``function_changes``, ``ignored`` (what the engine did not act on),
        ``skipped_sysex``, ``capped`` and ``held_at_end``; for dexed ``ignored`` counts what it
        cannot play.

    Raises:
        DX7Error: not a MIDI file, or one without notes; unknown engine or receiver.
        MissingExtra: engine dexed without dexed-py.
    """
    if engine == "dexed":
        return _render_dexed(voice, song, sample_rate=sample_rate, max_tail=4.0 if max_tail is None else max_tail,
                             progress=progress)
    if engine != "dx7":
        raise DX7Error(f"unknown engine {engine!r}; choose {', '.join(ENGINES)}")
    chunks, info = stream_midi(voice, song, receiver=receiver, sample_rate=sample_rate, functions=functions,
                               bank=bank, tail=max_tail, progress=progress)
    audio = np.concatenate(list(chunks))
    return audio, info


def render_midi_to_wav(voice: Voice, song, output, *, engine: str = "dx7", sample_rate: int = 44100,
                       max_tail: float | None = None, **options) -> dict:
    """:func:`render_midi` written to ``output`` (32-bit float WAV), with the ``peak`` sample in
    the returned dict. The dx7 engine streams, so a long .mid needs no more memory than a short
    one; nothing is left at ``output`` on error."""
    from dx7tools.audio import write_wav

    if engine != "dx7":
        audio, info = render_midi(voice, song, engine=engine, sample_rate=sample_rate, max_tail=max_tail, **options)
        write_wav(output, audio, sample_rate)
        return {**info, "peak": round(float(np.max(np.abs(audio), initial=0.0)), 6)}
    chunks, info = stream_midi(voice, song, sample_rate=sample_rate, tail=max_tail, **options)
    peak = 0.0

    def measured():
        nonlocal peak
        for chunk in chunks:
            peak = max(peak, float(np.max(np.abs(chunk), initial=0.0)))
            yield chunk

    write_wav_stream(output, measured(), sample_rate)
    return {**info, "peak": round(peak, 6)}


def _render_dexed(voice: Voice, song, *, sample_rate: int, max_tail: float, progress) -> tuple[np.ndarray, dict]:
    """The dexed-py path: one held note at a time (see the module notes)."""
    from dx7tools.envelope import operator_levels
    from dx7tools.performance import replay

    from ddx7.synth.preview import render_dexed

    warnings: list[str] = []
    played = replay(_events(song, warnings), voice, str(song))
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
    return out, {"engine": "dexed", "notes": len(played.notes), "seconds": round(length / sample_rate, 3),
                 "sample_rate": sample_rate, "ignored": played.ignored, "skipped_sysex": len(warnings),
                 "warnings": warnings}
