"""MIDI for the DX7: SysEx validation, parameter changes, wire-speed pacing, ports, sending.

Everything that leaves for an instrument goes through :func:`send_events`: a list of
:class:`Event` (time in seconds, raw MIDI bytes) is validated (every SysEx: framing, 7-bit data,
and for DX7 dumps the format byte, exact length and checksum), scheduled at MIDI wire speed
(:func:`schedule`) and sent to a mido output port, with note-offs and All Notes Off on the way
out whatever happens (end, error, Ctrl-C).

Pitfalls handled on purpose (users of DX7 librarians and Dexed report them):

* **Wire speed.** MIDI runs at 31,250 baud, 10 bits per byte: 3,125 bytes/s. A USB interface
  accepts data faster than that and buffers it, so a stream that outruns the wire builds a lag
  that only grows. :func:`schedule` never starts a message before the previous one has left
  the wire, and reports the lag that a too-dense stream accumulates.
* **Pauses after dumps.** A DX7 needs time to store a dump before it listens again; a bulk
  dump is followed by :attr:`Pacing.bank_pause`, a single voice by
  :attr:`Pacing.single_voice_pause`, and parameter changes are spaced by
  :attr:`Pacing.parameter_gap` on top of their wire time. (Chosen conservatively, as DX7
  librarians do; not measured on hardware here.)
* **Format byte and length.** A 32-voice dump has format 09 and 4,104 bytes, a single voice
  format 00 and exactly 163 bytes; anything else is refused before a byte leaves.
* **Memory protect and SYS INFO.** A DX7 ignores dumps while SYS INFO is UNAVAIL, and
  32-voice dumps while MEMORY PROTECT INTERNAL is ON. It sends no reply, so this cannot be
  detected; :func:`dump_advice` says what to set and the command line prints it.
* **Stuck notes.** Notes still held when sending stops (end of file, error, Ctrl-C) get their
  note-off, then All Notes Off (CC 123) and sustain off on every channel used. At equal times,
  note-offs are sent before SysEx, and whole-voice updates (``mode="voice"``) wait until no
  note sounds.
* **Receivers without parameter changes.** The TX7 family and the FS1R ignore single
  parameter changes; ``mode="voice"`` folds them into whole-voice dumps instead.

This module never imports torch; mido is imported where ports are used.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from . import params
from .errors import DX7Error
from .function import ASSIGN_AMPLITUDE, ASSIGN_EG_BIAS, ASSIGN_PITCH, FUNCTION_TABLE  # noqa: F401 (re-exported)
from .function import check as check_function
from .sysex import (VCED_MESSAGE_SIZE, VMEM_MESSAGE_SIZE, YAMAHA, checksum, parse_bytes, vced_message)
from .voice import Voice

WIRE_BYTES_PER_SECOND = 31250 / 10
"""MIDI wire speed: 31,250 baud, one start bit, 8 data bits, one stop bit per byte."""

FUNCTION_PARAMETERS = {p.key: p.number for p in FUNCTION_TABLE}
"""DX7 function parameters (parameter-change group 2) by key: their numbers (:mod:`dx7tools.function`)."""

OPERATOR_SWITCH = 155
"""Voice parameter-change number of the operator on/off switches (six bits, bit 5 = OP1; DX7 manual)."""

KIND_VOICE, KIND_BANK, KIND_PARAMETER, KIND_OTHER = "single voice", "32-voice bank", "parameter change", "other"


# -- SysEx -----------------------------------------------------------------------------------
def validate_sysex(data: bytes, source: str = "<sysex>") -> str:
    """Check one SysEx message before it may be sent; return its kind.

    Every message: starts with F0, ends with F7, all bytes between have bit 7 clear. Yamaha DX7
    voice dumps (``F0 43 0n ff ...``): format 00 = single voice, exactly 163 bytes, byte count
    01 1B; format 09 = 32 voices, exactly 4,104 bytes, byte count 20 00; the checksum must
    match. DX7 parameter changes (``F0 43 1n gg pp vv F7``): exactly 7 bytes, a voice
    parameter (group 0) within the table's range, or a function parameter (group 2).

    Returns:
        :data:`KIND_VOICE`, :data:`KIND_BANK`, :data:`KIND_PARAMETER` or :data:`KIND_OTHER`.

    Raises:
        DX7Error: naming ``source`` and what is wrong.
    """
    data = bytes(data)
    if len(data) < 3 or data[0] != 0xF0 or data[-1] != 0xF7:
        raise DX7Error("a SysEx message must start with F0 and end with F7", source)
    body = np.frombuffer(data[1:-1], dtype=np.uint8)
    high = np.flatnonzero(body & 0x80)
    if len(high):
        raise DX7Error(f"byte 0x{int(body[high[0]]):02X} with bit 7 set inside a SysEx message", source,
                       int(high[0]) + 1)
    if data[1] != YAMAHA:
        return KIND_OTHER
    sub = data[2] >> 4
    if sub == 0:  # bulk dump
        fmt = data[3] if len(data) > 3 else None
        expected = {0: (KIND_VOICE, VCED_MESSAGE_SIZE, (0x01, 0x1B)), 9: (KIND_BANK, VMEM_MESSAGE_SIZE, (0x20, 0x00))}
        if fmt not in expected:
            raise DX7Error(f"Yamaha bulk dump of format {fmt}: only 00 (single voice) and 09 (32 voices) "
                           "are DX7 voice data", source)
        kind, size, count = expected[fmt]
        if len(data) != size:
            raise DX7Error(f"a {kind} dump (format {fmt:02d}) is exactly {size} bytes, this one has {len(data)}",
                           source)
        if (data[4], data[5]) != count:
            raise DX7Error(f"{kind} dump: byte count {data[4]:02X} {data[5]:02X}, expected "
                           f"{count[0]:02X} {count[1]:02X}", source, 4)
        if checksum(data[6:-2]) != data[-2]:
            raise DX7Error(f"{kind} dump: bad checksum 0x{data[-2]:02X} (data sums to "
                           f"0x{checksum(data[6:-2]):02X})", source, len(data) - 2)
        return kind
    if sub == 1:  # parameter change
        if len(data) != 7:
            raise DX7Error(f"a DX7 parameter change is exactly 7 bytes, this one has {len(data)}", source)
        group, number, value = data[3] >> 2, ((data[3] & 3) << 7) | data[4], data[5]
        if group == 0 and number == OPERATOR_SWITCH:
            if value > 63:
                raise DX7Error(f"parameter change: operator on/off = {value} is above 63 (six bits)", source)
        elif group == 0:
            if number >= params.VCED_SIZE:
                raise DX7Error(f"parameter change: no voice parameter {number}", source)
            p = params.PARAMETERS[number]
            if value > p.max:
                raise DX7Error(f"parameter change: {p.key} = {value} is above {p.max}", source)
        elif group != 2:
            raise DX7Error(f"parameter change of group {group}: the DX7 knows 0 (voice) and 2 (function)", source)
        return KIND_PARAMETER
    return KIND_OTHER  # dump requests and other Yamaha messages: framing checked above


def split_sysex(data: bytes, source: str = "<sysex>") -> list[bytes]:
    """Every SysEx message of a .syx file, each validated (:func:`validate_sysex`).

    Raises:
        DX7Error: bytes outside a message, an unterminated message, or a bad message.
    """
    data = bytes(data)
    out, pos = [], 0
    if not data:
        raise DX7Error("empty file", source)
    while pos < len(data):
        if data[pos] != 0xF0:
            raise DX7Error(f"byte 0x{data[pos]:02X} outside a SysEx message", source, pos)
        end = data.find(b"\xF7", pos)
        if end < 0:
            raise DX7Error("SysEx message without its F7 at the end of the file", source, pos)
        msg = data[pos:end + 1]
        try:
            validate_sysex(msg, source)
        except DX7Error as exc:
            raise DX7Error(exc.problem, source, pos + (exc.offset or 0)) from None
        out.append(msg)
        pos = end + 1
    return out


def with_channel(message: bytes, channel: int) -> bytes:
    """A Yamaha SysEx message (dump or parameter change) re-addressed to MIDI ``channel`` 1-16.

    The channel nibble is in the header, outside the checksummed data. Other messages are
    returned unchanged.
    """
    if not 1 <= channel <= 16:
        raise DX7Error(f"MIDI channel must be 1-16, got {channel}")
    if len(message) > 3 and message[0] == 0xF0 and message[1] == YAMAHA and message[2] >> 4 in (0, 1):
        return message[:2] + bytes([(message[2] & 0xF0) | (channel - 1)]) + message[3:]
    return message


def parameter_change(key: str, value: int, channel: int = 1) -> bytes:
    """A voice parameter change (``F0 43 1n gg pp vv F7``) numbered from the one parameter table."""
    return params.parameter_change(key, value, channel)


def function_parameter_change(name: str, value: int, channel: int = 1) -> bytes:
    """A DX7 function parameter change (group 2), e.g. ``("pitch_bend_range", 2)``."""
    value = check_function(name, value)
    if not 1 <= channel <= 16:
        raise DX7Error(f"bad function parameter change {name} = {value} on channel {channel}")
    number = FUNCTION_PARAMETERS[name]
    return bytes([0xF0, YAMAHA, 0x10 | (channel - 1), (2 << 2) | (number >> 7), number & 0x7F, value, 0xF7])


def parse_function_change(message: bytes) -> tuple[str, int] | None:
    """``(key, value)`` of a function parameter change (group 2), or ``None`` for anything else."""
    from .function import BY_NUMBER

    m = bytes(message)
    if len(m) == 7 and m[0] == 0xF0 and m[1] == YAMAHA and m[2] >> 4 == 1 and m[3] >> 2 == 2:
        p = BY_NUMBER.get(((m[3] & 3) << 7) | m[4])
        if p is not None:
            return p.key, m[5]
    return None


def parse_parameter_change(message: bytes) -> tuple[str, int] | None:
    """``(key, value)`` of a voice parameter change (group 0), or ``None`` for anything else."""
    m = bytes(message)
    if len(m) == 7 and m[0] == 0xF0 and m[1] == YAMAHA and m[2] >> 4 == 1 and m[3] >> 2 == 0:
        number = ((m[3] & 3) << 7) | m[4]
        if number < params.VCED_SIZE:
            return params.PARAMETERS[number].key, m[5]
    return None


def voice_as_parameter_changes(voice: Voice, channel: int = 1) -> list[bytes]:
    """The 155 parameter changes that set a receiver's edit buffer to ``voice``."""
    return [params.parameter_change(p.key, v, channel) for p, v in voice.items()]


def dump_advice(kind: str) -> str:
    """What to set on a DX7 so that it accepts a dump of ``kind`` (it sends no error back)."""
    if kind == KIND_BANK:
        return ("on the DX7: FUNCTION, button 8 until SYS INFO AVAIL (set YES), and MEMORY PROTECT INTERNAL "
                "OFF; it replaces all 32 internal voices")
    return "on the DX7: FUNCTION, button 8 until SYS INFO AVAIL (set YES); the voice goes to the edit buffer"


# -- events and pacing -------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    """One MIDI message at a time (seconds from the start); ``data`` is its raw bytes."""

    time: float
    data: bytes


@dataclass(frozen=True)
class Pacing:
    """How fast messages may go (see the module notes).

    Attributes:
        bytes_per_second: wire speed (3,125 for MIDI DIN).
        single_voice_pause: silence after a single-voice dump (s).
        bank_pause: silence after a 32-voice dump (s).
        parameter_gap: extra silence after each parameter change (s).
    """

    bytes_per_second: float = WIRE_BYTES_PER_SECOND
    single_voice_pause: float = 0.1
    bank_pause: float = 0.3
    parameter_gap: float = 0.002

    def busy_seconds(self, data: bytes, kind: str | None = None) -> float:
        """Time the wire (and the receiver) is busy after a message starts."""
        kind = kind or message_kind(data)
        pause = {KIND_VOICE: self.single_voice_pause, KIND_BANK: self.bank_pause,
                 KIND_PARAMETER: self.parameter_gap}.get(kind, 0.0)
        return len(data) / self.bytes_per_second + pause


def message_kind(data: bytes) -> str:
    """Kind of a raw message: a SysEx kind (validated) or ``"channel"`` for everything else."""
    return validate_sysex(data) if data[:1] == b"\xF0" else "channel"


def _priority(data: bytes) -> int:
    """Order at equal times: note-offs first, then other channel messages, then SysEx."""
    status = data[0] & 0xF0
    if status == 0x80 or (status == 0x90 and len(data) > 2 and data[2] == 0):
        return 0
    return 2 if data[0] == 0xF0 else 1


def sort_events(events: Iterable[Event]) -> list[Event]:
    """Events by time, note-offs before other messages at equal times (stable otherwise)."""
    return sorted(events, key=lambda e: (e.time, _priority(e.data)))


@dataclass
class Schedule:
    """When each message leaves (:func:`schedule`): ``times[i]`` for ``events[i]``."""

    events: list[Event]
    times: np.ndarray
    lag: np.ndarray  # how late each message goes out compared with its event time (s)

    @property
    def max_lag(self) -> float:
        return float(self.lag.max()) if len(self.lag) else 0.0


def schedule(events: Sequence[Event], pacing: Pacing = Pacing()) -> Schedule:
    """Send times: each message at its time, but never before the wire (and receiver) are free.

    Pure function of the events; the sender then waits for each time on a clock.
    """
    times, lag, free = [], [], 0.0
    for e in events:
        t = max(e.time, free)
        times.append(t)
        lag.append(t - e.time)
        free = t + pacing.busy_seconds(e.data)
    return Schedule(list(events), np.array(times), np.array(lag))


def max_bytes_per_window(times: Sequence[float], sizes: Sequence[int], window: float = 1.0) -> float:
    """Most bytes whose messages start within any ``window``-second span (two-pointer sweep)."""
    t = np.asarray(times, dtype=np.float64)
    s = np.asarray(sizes, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t, s = t[order], s[order]
    csum = np.concatenate([[0.0], np.cumsum(s)])
    ends = np.searchsorted(t, t + window - 1e-12, side="right")
    return float((csum[ends] - csum[np.arange(len(t))]).max()) if len(t) else 0.0


# -- whole-voice mode --------------------------------------------------------------------------
def fold_into_voice_dumps(events: Sequence[Event], voice: Voice | None, channel: int = 1) -> list[Event]:
    """Replace voice parameter changes by whole single-voice dumps (``--mode voice``).

    Parameter changes update a copy of the voice (the first single-voice dump in ``events``,
    else ``voice``); the updated voice is sent as one dump at the first moment no note sounds
    (a dump while notes sound risks stuck notes), several changes coalescing into one dump.

    Raises:
        DX7Error: parameter changes but no voice to apply them to.
    """
    out: list[Event] = []
    current = voice
    held: set[tuple[int, int]] = set()
    pending = False
    for e in sort_events(events):
        d = e.data
        if d[:1] == b"\xF0" and message_kind(d) == KIND_VOICE:
            current = parse_bytes(d, "<dump>").voices[0].voice
            pending = False
            out.append(e)
            continue
        change = parse_parameter_change(d)
        if change is not None:
            if current is None:
                raise DX7Error("--mode voice needs a voice to apply parameter changes to: the file has no "
                               "single-voice dump (send one first or use --mode params)")
            current = current.replace(**{change[0]: change[1]})
            pending = True
            if not held:
                out.append(Event(e.time, vced_message(current, channel)))
                pending = False
            continue
        status = d[0] & 0xF0
        if status == 0x90 and d[2] > 0:
            if pending and not held:
                out.append(Event(e.time, vced_message(current, channel)))
                pending = False
            held.add((d[0] & 0x0F, d[1]))
        elif status == 0x80 or status == 0x90:
            held.discard((d[0] & 0x0F, d[1]))
        out.append(e)
        if pending and not held:
            out.append(Event(e.time, vced_message(current, channel)))
            pending = False
    if pending and current is not None:
        out.append(Event(out[-1].time if out else 0.0, vced_message(current, channel)))
    return out


# -- reading .mid files ------------------------------------------------------------------------
def read_midi_events(path, channel: int | None = None, on_bad_sysex: Callable[[str], None] | None = None) -> list[Event]:
    """Every message of a Standard MIDI File with its time in seconds (tempo map applied).

    Meta messages are dropped; SysEx is validated; ``channel`` (1-16) moves every channel
    message and every Yamaha SysEx to that channel.

    Args:
        on_bad_sysex: called with a one-line description of each SysEx message that is not
            valid (a bad checksum, a wrong length), which is then skipped; ``None``: raise.

    Raises:
        DX7Error: not a MIDI file, or (without ``on_bad_sysex``) a bad SysEx inside.
    """
    import mido

    source = str(path)
    try:
        mid = mido.MidiFile(source)
        messages = list(mid)  # merged tracks, delta times in seconds
    except FileNotFoundError:
        raise DX7Error("no such file", source) from None
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise DX7Error(f"not a Standard MIDI File ({exc})", source) from None
    events, now = [], 0.0
    for msg in messages:
        now += float(msg.time)
        if msg.is_meta:
            continue
        data = bytes(msg.bytes())
        if msg.type == "sysex":
            try:
                validate_sysex(data, source)
            except DX7Error as exc:
                if on_bad_sysex is None:
                    raise DX7Error(f"SysEx at {now:.3f} s: {exc.problem}", source) from None
                on_bad_sysex(f"{source}: SysEx at {now:.3f} s skipped: {exc.problem}")
                continue
            if channel is not None:
                data = with_channel(data, channel)
        elif channel is not None and 0x80 <= data[0] < 0xF0:
            data = bytes([(data[0] & 0xF0) | (channel - 1)]) + data[1:]
        events.append(Event(now, data))
    return events


# -- ports -------------------------------------------------------------------------------------
def output_port_names() -> list[str]:
    """Names of the MIDI outputs (mido with the python-rtmidi backend).

    Raises:
        DX7Error: "no MIDI system available" where the machine has none (no ALSA sequencer,
            no CoreMIDI...), instead of the backend's own exception. Only rtmidi's
            ``SystemError`` (the MIDI system cannot be opened) means that; any other exception
            (a broken install, a bug) propagates as itself.
    """
    import mido
    import rtmidi

    try:
        with _quiet_stderr():  # ALSA's C library prints its own complaint before rtmidi raises
            return list(mido.get_output_names())
    except rtmidi.SystemError as exc:  # no ALSA sequencer / CoreMIDI client could be created
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DX7Error(f"no MIDI system available ({first})") from None


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (C libraries' messages) for the duration."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def match_port(wanted: str, names: Sequence[str]) -> str:
    """The one port name equal to ``wanted`` or containing it (case-insensitive substring).

    Raises:
        DX7Error: no port or several ports match (the message lists them).
    """
    if wanted in names:
        return wanted
    hits = [n for n in names if wanted.lower() in n.lower()]
    if len(hits) == 1:
        return hits[0]
    available = ", ".join(repr(n) for n in names) or "none"
    if not hits:
        raise DX7Error(f"no MIDI output port matching {wanted!r} (available: {available})")
    raise DX7Error(f"{wanted!r} matches several MIDI output ports: {', '.join(repr(h) for h in hits)}; "
                   "give more of the name")


def open_output(wanted: str):
    """Open the output port matched by :func:`match_port` (a mido port).

    Raises:
        DX7Error: no port matches, or the backend cannot open it (rtmidi's errors, and mido's
            ``OSError`` for a port that went away since it was listed).
    """
    import mido
    import rtmidi

    name = match_port(wanted, output_port_names())
    try:
        with _quiet_stderr():
            return mido.open_output(name)
    except (rtmidi.RtMidiError, OSError) as exc:
        raise DX7Error(f"cannot open MIDI output {name!r}: {exc}") from None


class RealClock:
    """Wall-clock time (monotonic), sleeping until each send time."""

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, t: float) -> None:
        while True:
            left = t - time.monotonic()
            if left <= 0:
                return
            time.sleep(left if left > 0.002 else 0.0)  # the last 2 ms: yield instead of oversleeping


class VirtualClock:
    """A clock that jumps instead of sleeping (tests: exact schedules, no waiting)."""

    def __init__(self, start: float = 0.0):
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float) -> None:
        self.t = max(self.t, t)


class FakePort:
    """A mido-compatible output that records ``(time, bytes)`` of every message it is sent.

    ``fail_after=n`` makes the port vanish after ``n`` messages (``send`` raises ``OSError``),
    as an unplugged USB interface does.
    """

    def __init__(self, name: str = "fake DX7", clock=None, fail_after: int | None = None):
        self.name = name
        self.clock = clock or RealClock()
        self.fail_after = fail_after
        self.sent: list[tuple[float, bytes]] = []
        self.closed = False

    def send(self, message) -> None:
        if self.closed:
            raise OSError(f"port {self.name!r} is closed")
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise OSError(f"port {self.name!r} has gone away")
        self.sent.append((self.clock.now(), bytes(message.bytes())))

    def close(self) -> None:
        self.closed = True


@dataclass
class SendReport:
    """What :func:`send_events` did."""

    port: str
    messages: int = 0
    bytes: int = 0
    seconds: float = 0.0
    max_lag: float = 0.0            # scheduled lag caused by a stream denser than the wire (s)
    max_timing_error: float = 0.0   # actual send time minus scheduled time, worst case (s)
    notes_released: int = 0         # note-offs sent on the way out for notes still held
    interrupted: bool = False
    kinds: dict = field(default_factory=dict)
    started: float = 0.0            # clock time of the start (the plan's time 0)

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _to_mido(data: bytes):
    import mido

    return mido.Message.from_bytes(list(data))


def all_notes_off(channels: Iterable[int]) -> list[bytes]:
    """Sustain off (CC 64 = 0) and All Notes Off (CC 123) for each channel (0-15)."""
    out = []
    for ch in sorted(set(channels)):
        out += [bytes([0xB0 | ch, 64, 0]), bytes([0xB0 | ch, 123, 0])]
    return out


class _Sender:
    """One run of :func:`send_events`: the port, its pacing and clock, the report, the notes held."""

    def __init__(self, port, pacing: Pacing, clock, report: SendReport):
        self.port = port
        self.pacing = pacing
        self.clock = clock
        self.report = report
        self.held: dict[tuple[int, int], int] = {}
        self.channels = {0}
        self.failure: Exception | None = None   # the port's own error, when it failed

    def send_all(self, events: Sequence[Event], times, kinds: Sequence[str], messages: Sequence,
                 progress: Callable[[int, int], None] | None) -> None:
        """Every message at its scheduled time (from ``report.started``); DX7Error if the port fails."""
        report, clock = self.report, self.clock
        start = not_before = report.started
        for i, (e, when, kind, message) in enumerate(zip(events, times, kinds, messages)):
            # On schedule, and never sooner after the previous message than the wire allows
            # (should that one have left late).
            clock.sleep_until(max(start + when, not_before))
            sent_at = clock.now()
            report.max_timing_error = max(report.max_timing_error, sent_at - (start + when))
            not_before = sent_at + self.pacing.busy_seconds(e.data, None if kind == "channel" else kind)
            try:
                self.port.send(message)
            except Exception as exc:  # the port went away (rtmidi and OS errors differ by platform)
                self.failure = exc
                raise DX7Error(f"MIDI port {report.port!r} failed after {report.messages} of {len(events)} "
                               f"messages: {exc}") from None
            report.messages += 1
            report.bytes += len(e.data)
            self._follow(e.data)
            if progress:
                progress(i + 1, len(events))

    def _follow(self, d: bytes) -> None:
        """Note the channel a sent message used and the note it started or ended."""
        if 0x80 <= d[0] < 0xF0:
            self.channels.add(d[0] & 0x0F)
        status = d[0] & 0xF0
        if status == 0x90 and d[2] > 0:
            self.held[(d[0] & 0x0F, d[1])] = self.held.get((d[0] & 0x0F, d[1]), 0) + 1
        elif status in (0x80, 0x90):
            self.held.pop((d[0] & 0x0F, d[1]), None)

    def release(self) -> None:
        """Note-offs for the notes still held, then sustain off and All Notes Off on every channel used."""
        cleanup = [bytes([0x80 | ch, note, 0]) for (ch, note) in self.held] + all_notes_off(self.channels)
        self.report.notes_released = len(self.held)
        for data in cleanup:
            try:
                self.port.send(_to_mido(data))
                self.report.messages += 1
                self.report.bytes += len(data)
            except Exception:
                break


def send_events(port, events: Sequence[Event], pacing: Pacing = Pacing(), clock=None,
                progress: Callable[[int, int], None] | None = None) -> SendReport:
    """Send ``events`` to ``port`` in real time at wire-safe pacing.

    Every message is validated before the first byte leaves (a bad one anywhere sends
    nothing). Notes still held when sending ends -- normally, on an error, or on Ctrl-C
    (``KeyboardInterrupt`` is re-raised after the clean-up) -- get note-offs, then sustain off
    and All Notes Off on every channel used (always on channel 1 at least).

    Args:
        port: a mido output port (or :class:`FakePort`).
        events: time-ordered :class:`Event` list (:func:`sort_events`).
        pacing: :class:`Pacing`.
        clock: :class:`RealClock` (default) or :class:`VirtualClock`.

    Raises:
        DX7Error: a bad message, or the port failed (e.g. unplugged) mid-send.
    """
    clock = clock or RealClock()
    events = sort_events(events)
    kinds = [message_kind(e.data) for e in events]  # validation first: nothing leaves on a bad message
    messages = [_to_mido(e.data) for e in events]  # converted up front: nothing slow between sends
    plan = schedule(events, pacing)
    report = SendReport(port=getattr(port, "name", str(port)), max_lag=plan.max_lag)
    for k in kinds:
        report.kinds[k] = report.kinds.get(k, 0) + 1
    sender = _Sender(port, pacing, clock, report)
    start = report.started = clock.now()
    try:
        sender.send_all(events, plan.times, kinds, messages, progress)
    except KeyboardInterrupt:
        report.interrupted = True
        raise
    finally:
        if sender.failure is None:
            sender.release()
        report.seconds = clock.now() - start
    return report


def events_bytes(events: Sequence[Event]) -> bytes:
    """The raw byte stream of ``events`` in send order (what ``--dry-run`` writes), validated."""
    ordered = sort_events(events)
    for e in ordered:
        message_kind(e.data)
    return b"".join(e.data for e in ordered)


# -- what `dx7tools send` sends ------------------------------------------------------------------
MODES = ("voice", "params")


def send_plan(*, voice: Voice | None = None, syx_path=None, mid_path=None, channel: int = 1,
              mode: str | None = None) -> tuple[list[Event], list[str]]:
    """The events to send for a voice, a .syx file or a .mid file, and advice for the user.

    Args:
        voice / syx_path / mid_path: exactly one.
        channel: MIDI channel 1-16 (SysEx device number and channel messages).
        mode: ``"voice"`` (whole-voice dumps: the default for voices and .syx files; folds a
            .mid's parameter changes into dumps), ``"params"`` (155 parameter changes for a
            voice; a .mid's parameter changes as they are -- its default), or ``None``.

    Returns:
        ``(events, advice)``; advice lines say what to set on a DX7 for the dumps to load.
    """
    if mode is not None and mode not in MODES:
        raise DX7Error(f"unknown --mode {mode!r}; choose voice or params")
    if not 1 <= channel <= 16:
        raise DX7Error(f"--channel must be 1-16, got {channel}")
    if sum(x is not None for x in (voice, syx_path, mid_path)) != 1:
        raise DX7Error("send needs exactly one of a voice, a .syx file or a .mid file")
    if voice is not None:
        if mode == "params":
            return [Event(0.0, m) for m in voice_as_parameter_changes(voice, channel)], [dump_advice(KIND_VOICE)]
        return [Event(0.0, vced_message(voice, channel))], [dump_advice(KIND_VOICE)]
    if syx_path is not None:
        from pathlib import Path

        path = Path(syx_path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DX7Error("no such file", str(path)) from None
        except OSError as exc:
            raise DX7Error(f"cannot read: {exc.strerror or exc}", str(path)) from None
        messages = [with_channel(m, channel) for m in split_sysex(data, str(path))]
        kinds = [validate_sysex(m, str(path)) for m in messages]
        if mode == "params":
            if any(k == KIND_BANK for k in kinds):
                raise DX7Error("--mode params sends one voice as parameter changes; this file holds a 32-voice "
                               "bank (send it as a dump, or pick one voice)", str(path))
            out = []
            for m, k in zip(messages, kinds):
                if k == KIND_VOICE:
                    out += voice_as_parameter_changes(parse_bytes(m, str(path)).voices[0].voice, channel)
                else:
                    out.append(m)
            messages = out
        advice = sorted({dump_advice(k) for k in kinds if k in (KIND_VOICE, KIND_BANK)})
        return [Event(0.0, m) for m in messages], advice
    events = read_midi_events(mid_path, channel)
    if mode == "voice":
        events = fold_into_voice_dumps(events, None, channel)
    kinds = {message_kind(e.data) for e in events}
    return events, sorted({dump_advice(k) for k in kinds if k in (KIND_VOICE, KIND_BANK)})
