"""A performance as MIDI: notes from f0/loudness, level automation thinned to the MIDI wire.

Pure numpy + mido (no torch). Frames are at ``frame_rate`` (250/s in the project).

* :func:`segment_notes` -- notes from voiced frames: a note starts where the voice starts, where
  the (median-smoothed) pitch settles more than ``split_semitones`` away from the note for
  ``settle_frames`` frames (legato), or where the loudness jumps ``reattack_db`` above its
  recent minimum (a re-attack); MIDI pitch = the rounded median, the rest goes to pitch bend.
* :func:`thin_lanes` -- the automation budget: each lane (one operator's output level as DX7
  parameter changes, a CC lane, ...) wants a value per frame; frames are visited in time order
  and a lane sends a new value when it is off by at least its step, biggest error first, only
  if every one-second window that would contain the message stays within ``budget`` bytes,
  notes and everything else included, and the wire time (pauses included) leaves the sender no
  reason to fall behind (:class:`WireBudget`).
* :func:`write_midi_file` -- Standard MIDI File (type 0, 1 tick = 0.5 ms), written atomically.
* :func:`replay` -- a stream as a DX7 Mark I plays it: each note with the voice in force at its
  note-on (dumps and parameter changes apply from the next note-on), and what a note-by-note
  player leaves out; :func:`level_trajectories` -- the parameter values it holds, per frame.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .errors import DX7Error
from .midi import Event
from .files import atomic_write_bytes

TICKS_PER_BEAT = 1000
TEMPO_US = 500_000  # 120 bpm: 1 tick = 0.5 ms
MIDI_FILE_TICK_SECONDS = TEMPO_US / 1e6 / TICKS_PER_BEAT


@dataclass(frozen=True)
class Note:
    start: int   # frame of the note-on
    end: int     # frame of the note-off (exclusive)
    pitch: int   # MIDI note


def midi_pitch(f0_hz: np.ndarray) -> np.ndarray:
    """Fractional MIDI pitch of f0 (Hz); NaN where f0 <= 0."""
    f0 = np.asarray(f0_hz, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(f0 > 0, 69.0 + 12.0 * np.log2(f0 / 440.0), np.nan)


def _median_filter(x: np.ndarray, width: int) -> np.ndarray:
    pad = width // 2
    xp = np.pad(x, pad, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(xp, width), axis=1)


def _voiced_runs(f0_hz, loudness_db, silence_db: float | None, min_frames: int):
    """``(f0, loudness, runs)``: the arrays checked, and the ``(start, end)`` frame runs at least
    ``min_frames`` long that are voiced and above the silence floor (50 dB below the peak by default)."""
    f0 = np.asarray(f0_hz, dtype=np.float64)
    loud = np.asarray(loudness_db, dtype=np.float64)
    if f0.shape != loud.shape or f0.ndim != 1:
        raise DX7Error(f"f0 and loudness must be (frames,) arrays of one length, got {f0.shape} and {loud.shape}")
    floor = loud.max() - 50.0 if silence_db is None else silence_db
    voiced = (f0 > 0) & (loud > floor)
    edges = np.flatnonzero(np.diff(np.r_[0, voiced.astype(np.int8), 0]))
    return f0, loud, [(a, b) for a, b in zip(edges[::2], edges[1::2]) if b - a >= min_frames]


def segment_notes(f0_hz, loudness_db, *, min_frames: int = 6, split_semitones: float = 0.7,
                  settle_frames: int = 6, reattack_db: float = 9.0, silence_db: float | None = None) -> list[Note]:
    """Notes (frame ranges and MIDI pitch) of a monophonic line; see the module notes.

    Args:
        f0_hz: (T,) f0, 0 where unvoiced.
        loudness_db: (T,) loudness.
        min_frames: shorter voiced runs are dropped.
        silence_db: frames quieter than this are unvoiced too (default: 50 dB below the peak).

    Returns:
        list of :class:`Note` in time order, non-overlapping.
    """
    f0, loud, runs = _voiced_runs(f0_hz, loudness_db, silence_db, min_frames)
    notes: list[Note] = []
    for a, b in runs:
        pitch = _median_filter(midi_pitch(f0[a:b]), 5)
        start = a
        center = np.median(pitch[: min(len(pitch), settle_frames)])
        away = 0
        for t in range(a + 1, b):
            i = t - a
            jump = abs(pitch[i] - center) > split_semitones
            away = away + 1 if jump else 0
            lo = loud[max(start, t - 12): t].min() if t > start else loud[t]
            reattack = t - start >= min_frames and loud[t] - lo > reattack_db and loud[t] - loud[t - 1] > 1.5
            if (away >= settle_frames or reattack) and t - start >= min_frames:
                cut = t - settle_frames + 1 if away >= settle_frames else t
                notes.append(Note(start, cut, int(round(np.median(pitch[start - a: cut - a])))))
                start, away = cut, 0
                center = np.median(pitch[cut - a: min(b - a, cut - a + settle_frames)])
        if b - start >= 2:
            notes.append(Note(start, b, int(round(np.median(pitch[start - a: b - a])))))
    return notes


DIP_DB = 3.0
"""A re-attack needs the loudness to have fallen this much first (a rising onset is not one)."""
SETTLE_FRAMES = 6
"""Frames the pitch must stay beyond the bend's reach before a new note takes over."""


OCTAVE_WINDOW_FRAMES = 51
"""Frames (about 0.2 s) around a frame whose median pitch an octave error stands out from."""


def octave_errors_fixed(f0_hz) -> np.ndarray:
    """``f0_hz`` (T,) with short octave errors of the pitch tracker undone.

    A voiced frame whose pitch lies one or two octaves (within a semitone) from the median pitch of
    the voiced frames within :data:`OCTAVE_WINDOW_FRAMES` of it is moved back by those octaves: a
    tracker's octave slips are brief, so the median around them keeps the true octave, while a
    player's octave leap lasts long enough to become the median itself. The price: a real note an
    octave away shorter than about half the window (about 100 ms, e.g. a fast octave ornament)
    inside a phrase is taken for a slip.
    """
    f0 = np.asarray(f0_hz, dtype=np.float64)
    pitch = midi_pitch(f0)
    voiced = np.isfinite(pitch)
    if voiced.sum() < 3:
        return f0.copy()
    half = OCTAVE_WINDOW_FRAMES // 2
    padded = np.pad(np.where(voiced, pitch, np.nan), half, constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, OCTAVE_WINDOW_FRAMES)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # windows with no voiced frame
        around = np.nanmedian(windows, axis=1)
    octaves = np.round((pitch - around) / 12)
    slip = voiced & (octaves != 0) & (np.abs(pitch - around - 12 * octaves) < 1) & (np.abs(octaves) <= 2)
    return np.where(slip, f0 * 2.0 ** -octaves, f0)


def segment_attacks(f0_hz, loudness_db, *, bend_range: float = 12.0, min_frames: int = 10,
                    reattack_db: float = 9.0, silence_db: float | None = None) -> list[Note]:
    """Notes as a player would write a legato line: a new note only where the sound re-attacks.

    A voiced run (frames with f0 above the silence floor) is one note, split only where the
    loudness, having dipped by :data:`DIP_DB`, jumps by ``reattack_db`` within 48 ms (a bow change,
    a tongued attack) or where the pitch stays more than ``bend_range`` - 0.5 semitones from the
    note's for :data:`SETTLE_FRAMES` frames (the pitch bend carries everything in between). Runs and pieces shorter than ``min_frames`` (40 ms) are not notes:
    a short run is dropped, a split that would leave one is not made. Each note's pitch is the
    median of its frames, rounded.

    Args:
        f0_hz, loudness_db: (T,) each; f0 0 where unvoiced.
        silence_db: frames quieter than this are unvoiced too (default: 50 dB below the peak).

    Returns:
        list of :class:`Note` in time order, non-overlapping.
    """
    f0, loud, runs = _voiced_runs(f0_hz, loudness_db, silence_db, min_frames)
    notes: list[Note] = []
    for a, b in runs:
        pitch = _median_filter(midi_pitch(f0[a:b]), 5)
        cuts, away = [a], 0
        for t in range(a + min_frames, b - min_frames + 1):
            start = cuts[-1]
            away = away + 1 if abs(pitch[t - a] - np.median(pitch[start - a: t - a])) > bend_range - 0.5 else 0
            if t - start < min_frames:
                continue
            window = loud[max(start, t - 12): t]
            lo = window.min()
            dipped = loud[start: max(start, t - 12) + int(np.argmin(window)) + 1].max() - lo > DIP_DB
            reattack = dipped and loud[t] - lo > reattack_db and loud[t] - loud[t - 1] > 1.5
            cut = t if reattack else t - away + 1
            if (reattack or away >= SETTLE_FRAMES) and cut - start >= min_frames:
                cuts.append(cut)
                away = 0
        cuts.append(b)
        notes += [Note(s, e, int(round(np.median(pitch[s - a: e - a])))) for s, e in zip(cuts[:-1], cuts[1:])]
    return notes


def pitch_bend_values(pitch: np.ndarray, note: int, bend_range: float = 2.0) -> np.ndarray:
    """14-bit pitch-bend values (-8192..8191, 0 = centre) for fractional ``pitch`` around ``note``."""
    x = np.clip((np.asarray(pitch, dtype=np.float64) - note) / bend_range, -1.0, 1.0)
    return np.clip(np.rint(x * 8192), -8192, 8191).astype(np.int64)


def pitch_bend_message(value: int, channel: int = 1) -> bytes:
    v = int(value) + 8192
    return bytes([0xE0 | (channel - 1), v & 0x7F, v >> 7])


# -- the wire budget ---------------------------------------------------------------------------
class WireBudget:
    """What the stream may still carry: bytes and wire time per frame bin, checked per window.

    A message fits at time ``t`` if, with it, every one-second window holds at most ``budget``
    bytes (the figure the MIDI wire is rated in: 3,125 bytes/s) *and* the time the wire and the
    receiver are busy (bytes at wire speed plus the pauses of :class:`dx7tools.midi.Pacing`, e.g.
    2 ms after each parameter change) stays within the same fraction of every one-second and
    every ``burst_seconds`` window -- so that :func:`dx7tools.midi.send_events` can keep to the
    file's times instead of falling behind.
    """

    def __init__(self, frames: int, frame_rate: float, budget: float, *, offset_seconds: float = 0.0,
                 burst_seconds: float = 0.04, pacing=None):
        from .midi import Pacing

        self.frame_rate, self.budget = frame_rate, float(budget)
        self.pacing = pacing or Pacing()
        self.offset = offset_seconds
        self.share = self.budget / self.pacing.bytes_per_second  # busy seconds allowed per second
        second = max(1, int(round(frame_rate)))
        burst = max(1, int(round(burst_seconds * frame_rate)))
        n = frames + second + 1
        # (width in bins, what is counted, limit per window)
        self.windows = [(second, "bytes", self.budget), (second, "busy", self.share),
                        (burst, "busy", self.share * burst / frame_rate + 0.0045)]
        self.sums = [np.zeros(n) for _ in self.windows]

    def _bin(self, t: float) -> int:
        return int(np.clip(np.floor((t - self.offset) * self.frame_rate + 1e-9), 0, len(self.sums[0]) - 1))

    def _costs(self, data: bytes) -> dict:
        return {"bytes": float(len(data)), "busy": self.pacing.busy_seconds(data)}

    def fits(self, t: float, data: bytes) -> bool:
        b, cost = self._bin(t), self._costs(data)
        for (width, what, limit), sums in zip(self.windows, self.sums):
            if sums[max(0, b - width + 1): b + 1].max() + cost[what] > limit + 1e-12:
                return False
        return True

    def add(self, t: float, data: bytes) -> None:
        b, cost = self._bin(t), self._costs(data)
        for (width, what, _), sums in zip(self.windows, self.sums):
            sums[max(0, b - width + 1): b + 1] += cost[what]

    def worst(self) -> dict:
        """Fullest window of each kind, as a fraction of its limit (> 1: over budget)."""
        return {f"{what} per {width / self.frame_rate:g} s": float(sums.max() / limit)
                for (width, what, limit), sums in zip(self.windows, self.sums)}


@dataclass
class Lane:
    """One automated value.

    Attributes:
        name: e.g. ``"op3_output_level"`` or ``"cc2"``.
        wanted: (T,) float target per frame (NaN = don't care, e.g. between notes).
        message: value (int) -> raw MIDI bytes.
        low, high: range of the sent integer.
        step: smallest error (in value units) worth a message.
        weight: error units per value unit (priority between lanes; dB per step for levels).
    """

    name: str
    wanted: np.ndarray
    message: Callable[[int], bytes]
    low: int = 0
    high: int = 99
    step: float = 1.0
    weight: float = 1.0
    sent: np.ndarray = field(default=None, repr=False)  # (T,) value in force per frame, after thinning
    count: int = 0


def thin_lanes(lanes: Sequence[Lane], budget: WireBudget, times: np.ndarray, initial: dict | None = None) -> list[Event]:
    """Choose which lane values to send, frame by frame, within the wire budget (module notes).

    Args:
        lanes: the lanes; each gets ``sent`` (the value in force per frame) and ``count``.
        budget: a :class:`WireBudget` already holding the mandatory messages (notes, bends...).
        times: (T,) seconds of each frame.
        initial: value in force before the first frame per lane name (default: not set).

    Returns:
        the lane messages as :class:`Event`s in time order.
    """
    initial = initial or {}
    current = {ln.name: initial.get(ln.name) for ln in lanes}
    for ln in lanes:
        ln.sent = np.full(len(times), np.nan)
        ln.count = 0
    events: list[Event] = []
    for t_index, t in enumerate(times):
        wants = []
        for ln in lanes:
            w = ln.wanted[t_index]
            if not np.isfinite(w):
                continue
            value = int(np.clip(np.rint(w), ln.low, ln.high))
            cur = current[ln.name]
            err = abs(w - cur) if cur is not None else np.inf
            if cur is None or (value != cur and err >= ln.step):
                wants.append((err * ln.weight, ln, value))
        for _, ln, value in sorted(wants, key=lambda x: -x[0]):
            data = ln.message(value)
            if budget.fits(t, data):
                budget.add(t, data)
                events.append(Event(float(t), data))
                current[ln.name] = value
                ln.count += 1
        for ln in lanes:
            if current[ln.name] is not None:
                ln.sent[t_index] = current[ln.name]
    return events


# -- files -------------------------------------------------------------------------------------
def midi_file_bytes(events: Sequence[Event]) -> bytes:
    """A type-0 Standard MIDI File of ``events`` (1 tick = 0.5 ms, tempo 120 bpm)."""
    import mido

    from .midi import sort_events

    mid = mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=TEMPO_US, time=0))
    last = 0
    ticks_per_second = TICKS_PER_BEAT * 1e6 / TEMPO_US
    for e in sort_events(events):
        tick = int(round(e.time * ticks_per_second))
        msg = mido.Message.from_bytes(list(e.data))
        track.append(msg.copy(time=max(0, tick - last)))
        last = max(last, tick)
    track.append(mido.MetaMessage("end_of_track", time=0))
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def write_midi_file(path, events: Sequence[Event]) -> None:
    """Write ``events`` as a Standard MIDI File, atomically (every SysEx validated first)."""
    from .midi import message_kind

    for e in events:
        message_kind(e.data)
    atomic_write_bytes(path, midi_file_bytes(events))


# -- replaying a stream -------------------------------------------------------------------------
@dataclass(frozen=True)
class PlayedNote:
    """One note of a replayed stream.

    Attributes:
        start, end: seconds of its note-on and its note-off (or of the stream's last message).
        channel: 0-15; note: MIDI note; velocity: 1-127 (of the note-on).
        voice: the voice in force at its note-on (``None`` when the stream set none).
    """

    start: float
    end: float
    channel: int
    note: int
    velocity: int
    voice: object


@dataclass
class Replay:
    """What a receiver does with a stream (:func:`replay`).

    Attributes:
        notes: every note, by note-on time.
        changes: ``(seconds, key, value)`` per voice parameter set, in stream order: a parameter
            change sets one key, a single-voice dump all 155.
        ignored: counts of what a note-by-note player leaves out: ``pitch_bend``,
            ``control_change``, ``changes_within_notes`` (dumps and parameter changes while a
            note sounds, which only the next note-on hears) and ``other`` (anything else).
    """

    notes: list[PlayedNote]
    changes: list[tuple[float, str, int]]
    ignored: dict


def replay(events: Sequence[Event], voice=None, source: str = "<midi>") -> Replay:
    """Replay ``events`` (in time order) as a DX7 Mark I holds its voice.

    Single-voice dumps replace the voice and parameter changes change one of its parameters;
    a note plays the voice as it stood at its note-on, so a change applies from the next note-on.
    A note-on of a key already held ends the held note (retrigger); a note-off, or a note-on
    with velocity 0, ends it; notes still held at the end last until the last message.

    Args:
        events: :class:`Event` list, seconds from the start, in time order.
        voice: the :class:`dx7tools.voice.Voice` in force before the first dump (or ``None``).
        source: names the stream in errors (e.g. its file).

    Raises:
        DX7Error: a SysEx message that is not valid.
    """
    from .midi import KIND_VOICE, message_kind, parse_parameter_change
    from .sysex import parse_bytes

    current = voice
    held: dict[tuple[int, int], tuple[float, int, object]] = {}
    notes: list[PlayedNote] = []
    changes: list[tuple[float, str, int]] = []
    ignored = {"pitch_bend": 0, "control_change": 0, "changes_within_notes": 0, "other": 0}

    def release(key, t):
        t0, velocity, v = held.pop(key)
        notes.append(PlayedNote(t0, t, key[0], key[1], velocity, v))

    for e in events:
        d, status = e.data, e.data[0] & 0xF0
        if d[0] == 0xF0:
            change = parse_parameter_change(d)
            if message_kind(d) == KIND_VOICE:
                current = parse_bytes(d, source).voices[0].voice
                changes += [(e.time, p.key, value) for p, value in current.items()]
            elif change is not None:
                current = current.replace(**{change[0]: change[1]}) if current is not None else None
                changes.append((e.time, *change))
            else:
                ignored["other"] += 1
                continue
            ignored["changes_within_notes"] += 1 if held else 0
        elif status in (0x80, 0x90):
            key = (d[0] & 0x0F, d[1])
            if key in held:
                release(key, e.time)
            if status == 0x90 and d[2] > 0:
                held[key] = (e.time, d[2], current)
        elif status == 0xE0:
            ignored["pitch_bend"] += 1
        elif status == 0xB0:
            ignored["control_change"] += 1
        else:
            ignored["other"] += 1
    end_time = events[-1].time if len(events) else 0.0
    for key in list(held):
        release(key, end_time)
    return Replay(sorted(notes, key=lambda n: n.start), changes, ignored)


def level_trajectories(events: Sequence[Event], frames: int, frame_rate: float, offset: float = 0.0) -> dict:
    """Each voice parameter's value per frame as the receiver's edit buffer holds it
    (:func:`replay`'s changes, each in force from its own time).

    Args:
        events: the stream in time order (seconds).
        frames: how many frames; frame ``i`` is at ``offset + i / frame_rate`` seconds.

    Returns:
        ``{key: (frames,) float array}`` (NaN before the first dump or change of that key),
        sample and hold.
    """
    times = offset + np.arange(frames) / frame_rate
    by_key: dict[str, list[tuple[float, int]]] = {}
    for t, key, value in replay(events).changes:
        by_key.setdefault(key, []).append((t, value))
    out: dict[str, np.ndarray] = {}
    for key, rows in by_key.items():
        t = np.array([r[0] for r in rows])
        v = np.array([r[1] for r in rows], dtype=np.float64)
        idx = np.searchsorted(t, times + MIDI_FILE_TICK_SECONDS * 2, side="right") - 1  # the file rounds times
        out[key] = np.where(idx >= 0, v[np.maximum(idx, 0)], np.nan)
    return out
