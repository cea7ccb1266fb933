"""A DX7 as a MIDI receiver: sixteen voices, controllers, the LFO and the EGs, block by block.

:class:`Instrument` takes MIDI messages (:meth:`Instrument.receive`) and, for any run of
64-sample blocks between them (:meth:`Instrument.controls`), gives every sounding voice slot's
six operator frequencies (Hz) and amplitudes (1.0 = output level 99 at EG level 99). It is the
numpy half of the engine; :class:`ddx7.synth.dx7.DX7` turns its controls into audio through the
one FM core. Like Dexed, everything here is updated once per 64-sample block at the engine's
sample rate, and a message takes effect at the first block boundary at or after its time.

What it follows, with the source of each rule (see also ``docs/dexed-engine.md``):

* **Voices** (Dexed ``PluginProcessor::keydown``): 16 slots. A note-on takes the slot with the
  highest score -- +4 if it is not playing (no carrier still sounding), +2 if its key is up, +1
  if it last played the same note -- scanning from the slot after the last one taken; equal
  scores go to the oldest note. A note-on with velocity 0 is a note-off. Sustain (CC 64 >= 64)
  holds released keys until the pedal goes up. CC 123 releases every key, CC 120 silences
  everything. Mono (function parameter ``mono_poly``): one voice, the highest held key sounds;
  a new higher key moves it without a new attack (legato), releasing it falls back to the
  highest key still held.
* **A note** (Dexed ``Dx7Note``): the voice's TRANSPOSE shifts the key first; per operator the
  output level with keyboard level scaling and velocity, the EG with keyboard rate scaling
  (:class:`dx7tools.envelope.OperatorEG`), the frequency (ratio or fixed, detune:
  :func:`dx7tools.frequency.operator_frequency`); the pitch EG (:class:`dx7tools.modulation.PitchEG`).
  OSC KEY SYNC resets the slot's phases at a note-on unless the slot was still playing
  (stealing does not reset, to avoid a click).
* **The LFO** (:class:`dx7tools.modulation.LFO`) is the instrument's, shared by all notes; its
  delay restarts, and with LFO KEY SYNC its phase, at a note-on while no key is held.
* **Pitch** of ratio-mode operators: pitch EG + LFO pitch modulation (voice depth or controller,
  :func:`dx7tools.modulation.pitch_mod_cents`) + portamento + pitch bend; fixed-frequency
  operators follow the bend only.
* **Amplitude**: EG, then amplitude modulation by the LFO, the controllers and EG bias
  (:func:`dx7tools.modulation.amp_mod_depth`, :func:`dx7tools.modulation.am_cut`) through each
  operator's AMP MOD SENSITIVITY. Operators switched off (parameter 155) are silent.
* **Controllers**: CC 1 mod wheel, CC 2 breath, CC 4 foot, channel aftertouch; each scaled by
  its function range (``trunc(value * range / 100)``) and added to pitch, amplitude and/or EG
  bias by its assign bits, the largest source winning (Dexed ``Controllers::refresh``). Pitch
  bend: ``pitch_bend_range`` semitones at full bend (8191 up is 8191/8192 of it, 0 down exactly
  all of it), or with ``pitch_bend_step`` s > 0 in steps over +-1 octave: 12 // s steps each way,
  s semitones when s divides 12 (s = 5: steps of 600 cents), as Dexed's ``Dx7Note::compute``.
* **Portamento** (``portamento_time`` > 0, CC 65 not off): ratio-mode operators glide from the
  last note's pitch at 2100 * 2^(-0.062 i) semitones/s (glissando: 1300 and whole semitones),
  i = time * 127 / 99 (Dexed ``Porta``); PORTAMENTO MODE is not modelled.
* **Voice data**: single-voice dumps, 32-voice dumps (kept as the bank that program changes
  0-31 pick from), voice parameter changes (group 0, 155 = operator on/off), function
  parameter changes (group 2). Receivers differ:

  - ``mk1`` (default): the edit buffer changes, but a note keeps the voice it started with:
    changes are heard from the next note-on (a Mark I computes a note's levels at key-down:
    Dexed issue 106, tested by Dexed's author on his Mark I). A voice change received while a
    note sounds can make a Mark I stutter (MiniDexed issue 80); each one is counted in
    :attr:`Instrument.stats` (``stutter_prone``).
  - ``dexed``: changes reach sounding notes at once, as Dexed applies them
    (``Dx7Note::update``: new frequencies, sensitivities and algorithm; a held key's EGs head
    from where they are to the new LEVEL 3 at RATE 3; released notes keep their release),
    and the LFO takes its new settings.

Messages the engine does not act on (other SysEx, CCs other than 1, 2, 4, 5, 64, 65, 120, 123,
program changes without a bank, bad dumps) are counted in :attr:`Instrument.stats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import function as fn
from .algorithms import ALGORITHMS
from .envelope import BLOCK, OperatorEG, level_at, operator_egs
from .errors import DX7Error
from .frequency import operator_frequency
from .levels import FLOOR, microsteps_to_amplitude
from .modulation import (LFO, PITCH_EG_UNIT_CENTS, PitchEG, am_cut, amp_mod_depth, eg_bias, pitch_mod_cents,
                         pmd_share)
from .params import PARAMETERS, VCED_SIZE
from .voice import Voice

VOICES = 16
"""Polyphony (Dexed ``MAX_ACTIVE_NOTES``; a DX7 plays 16 notes)."""
RECEIVERS = ("mk1", "dexed")
ALL_OPERATORS = 0b111111
"""Parameter 155's value with every operator on (bit 0 = OP6 ... bit 5 = OP1, Dexed ``packOpSwitch``)."""
PORTA_SEMITONES_PER_SECOND = (2100.0, 1300.0)
"""Portamento speed at time 0, without and with glissando (Dexed ``Porta::init_sr``)."""
_Q24 = 1 << 16   # Q24 units per microstep


def midi_to_hz(key: float) -> float:
    """Equal temperament, A4 (MIDI 69) = 440 Hz."""
    return 440.0 * 2.0 ** ((key - 69) / 12.0)


def operators_on(mask: int) -> np.ndarray:
    """(6,) bool, OP1 first, from parameter 155's bits (bit 5 = OP1)."""
    return np.array([bool(mask >> (6 - n) & 1) for n in range(1, 7)])


@dataclass
class Note:
    """What one voice slot plays: fixed at its note-on (and, for the ``dexed`` receiver, by later edits)."""

    voice: Voice
    key: int                      # MIDI key after TRANSPOSE
    midi_note: int                # the key as received (note-offs match it)
    velocity: int
    on_block: int
    seq: int
    ops_on: np.ndarray
    egs: list = field(default_factory=list)
    paths: list = field(default_factory=list)     # per operator: (blocks, q24) corners
    peg: PitchEG | None = None
    peg_path: tuple = ()
    base_hz: np.ndarray = field(default_factory=lambda: np.zeros(6))
    fixed: np.ndarray = field(default_factory=lambda: np.zeros(6, bool))
    ams: np.ndarray = field(default_factory=lambda: np.zeros(6, np.int64))   # AMP MOD SENSITIVITY, OP1 first
    pmd: float = 0.0              # the voice's pitch and amp mod depths (modulation.pmd_share) and PMS
    amd: float = 0.0
    pms: int = 0
    porta_cents: float = 0.0      # glide offset left at porta_block
    porta_block: int = 0
    keydown: bool = True
    sustained: bool = False

    @property
    def algorithm(self) -> int:
        return self.voice.algorithm

    @property
    def feedback(self) -> int:
        return self.voice.feedback

    def level(self, op: int, block: int) -> int:
        """Operator ``op`` (0-based)'s EG level (Q24) after ``block - on_block`` steps."""
        return int(round(float(level_at(self.paths[op], [block])[0])))

    def pitch_level(self, block: int) -> float:
        return float(np.interp(block, *self.peg_path))


@dataclass
class SlotControls:
    """One slot's controls for a run of blocks: ``freq`` and ``amp`` (blocks, 6), OP1 first."""

    slot: int
    freq: np.ndarray
    amp: np.ndarray


class Instrument:
    """The receiving DX7 (see the module notes).

    Args:
        voice: the voice in the edit buffer at the start (default: INIT VOICE).
        sample_rate: the engine's rate (Hz); blocks are 64 samples of it.
        receiver: ``"mk1"`` or ``"dexed"`` (how voice changes reach sounding notes).
        functions: function parameters (:func:`dx7tools.function.settings` fills in defaults).
        bank: up to 32 voices for program changes (a 32-voice dump in the stream replaces it).
        channel: 1-16 to listen on one channel only; ``None`` (default) listens to all.
    """

    def __init__(self, voice: Voice | None = None, *, sample_rate: float = 44100.0, receiver: str = "mk1",
                 functions=None, bank=None, channel: int | None = None):
        if receiver not in RECEIVERS:
            raise DX7Error(f"unknown receiver {receiver!r}; choose one of {', '.join(RECEIVERS)}")
        if not np.isfinite(sample_rate) or not 8000 <= sample_rate <= 192000:
            raise DX7Error(f"sample rate must be 8000-192000 Hz, got {sample_rate!r}")
        if channel is not None and not 1 <= int(channel) <= 16:
            raise DX7Error(f"channel must be 1-16, got {channel!r}")
        self.sample_rate = float(sample_rate)
        self.blocks_per_second = self.sample_rate / BLOCK
        self.receiver = receiver
        self.channel = channel
        self.functions = fn.settings(functions)
        self.edit = voice if voice is not None else Voice.init()
        self.edit_ops = ALL_OPERATORS
        self.bank = list(bank or [])[:32]
        self.slots: list[Note | None] = [None] * VOICES
        self.cursor = 0
        self.seq = 0
        self.last_slot: int | None = None
        self.sustain = False
        self.porta_switch = True
        self.cc = {"mod_wheel": 0, "breath_control": 0, "foot_control": 0, "aftertouch": 0}
        self.bend = 8192
        self.held_mono: list[int] = []            # mono: keys held, in order
        self._resets: set[int] = set()
        self.lfo = LFO(self.blocks_per_second)
        self.lfo.set_voice(self.edit, 0)
        self.stats = {"notes": 0, "stolen": 0, "voice_changes": 0, "stutter_prone": 0, "function_changes": 0,
                      "ignored": {}}

    # -- helpers -----------------------------------------------------------------------------
    def _ignore(self, what: str) -> None:
        self.stats["ignored"][what] = self.stats["ignored"].get(what, 0) + 1

    def playing(self, slot: int, block: int) -> bool:
        """Whether a slot still sounds at ``block``: its key is down (or sustained), or one of its
        carriers' EGs is still moving or rests above the floor (a LEVEL 4 above 0 sounds forever)."""
        note = self.slots[slot]
        if note is None:
            return False
        if note.keydown or note.sustained:
            return True
        for op in ALGORITHMS[note.algorithm - 1].carriers:
            blocks, values = note.paths[op - 1]
            if block < blocks[-1] or values[-1] > FLOOR * _Q24:   # block ramps from level(block)
                return True
        return False

    def any_sounding(self, block: int) -> bool:
        return any(self.playing(i, block) for i in range(VOICES))

    def keys_held(self) -> bool:
        return any(n is not None and n.keydown for n in self.slots)

    # -- MIDI ----------------------------------------------------------------------------------
    def receive(self, data: bytes, block: int) -> str | None:
        """Act on one MIDI message (raw bytes) at the boundary before ``block``.

        Returns:
            ``"note"`` when a slot started a note (the renderer resets that slot's phases if
            :meth:`take_resets` says so), ``"voice"`` for a change that may alter sounding notes'
            algorithm or feedback (``dexed`` receiver), else ``None``.
        """
        data = bytes(data)
        if not data:
            return None
        if data[0] == 0xF0:
            return self._sysex(data, block)
        status, ch = data[0] & 0xF0, (data[0] & 0x0F) + 1
        if self.channel is not None and ch != self.channel and status >= 0x80:
            self._ignore("other_channels")
            return None
        if status == 0x90 and len(data) > 2 and data[2] > 0:
            return self.note_on(data[1], data[2], block)
        if status in (0x80, 0x90):
            self.note_off(data[1], block)
        elif status == 0xB0 and len(data) > 2:
            self._control(data[1], data[2], block)
        elif status == 0xE0 and len(data) > 2:
            self.bend = data[1] | (data[2] << 7)
        elif status == 0xD0 and len(data) > 1:
            self.cc["aftertouch"] = data[1]
        elif status == 0xC0 and len(data) > 1:
            return self._program(data[1], block)
        else:
            self._ignore("other_messages")
        return None

    def _control(self, number: int, value: int, block: int) -> None:
        names = {1: "mod_wheel", 2: "breath_control", 4: "foot_control"}
        if number in names:
            self.cc[names[number]] = value
        elif number == 5:                                   # portamento time (as Dexed reads CC 5)
            self.functions["portamento_time"] = min(99, value * 99 // 127)
        elif number == 64:
            self.sustain = value >= 64
            if not self.sustain:
                for i, n in enumerate(self.slots):
                    if n is not None and n.sustained and not n.keydown:
                        n.sustained = False
                        self._release(i, block)
        elif number == 65:
            self.porta_switch = value >= 64
        elif number == 123:
            self.held_mono = []                             # every key goes up: mono falls back to none
            for n in list(self.slots):
                if n is not None and n.keydown:
                    self.note_off(n.midi_note, block)
        elif number == 120:
            self.slots = [None] * VOICES
            self.held_mono = []
        else:
            self._ignore(f"cc{number}")

    def _program(self, number: int, block: int) -> str | None:
        if number >= len(self.bank):
            self._ignore("program_change_without_voice")
            return None
        return self._set_voice(self.bank[number], block)

    def _sysex(self, data: bytes, block: int) -> str | None:
        from .midi import KIND_BANK, KIND_VOICE, OPERATOR_SWITCH, parse_function_change, validate_sysex
        from .sysex import parse_bytes

        try:
            kind = validate_sysex(data)
        except DX7Error:
            self._ignore("bad_sysex")
            return None
        if kind == KIND_VOICE:
            return self._set_voice(parse_bytes(data, "<dump>").voices[0].voice, block)
        if kind == KIND_BANK:
            self.bank = [v.voice for v in parse_bytes(data, "<dump>").voices]
            return None
        change = parse_function_change(data)
        if change is not None:
            key, value = change
            if value > fn.BY_KEY[key].max:
                self._ignore("function_out_of_range")
            else:
                self.functions[key] = value
                self.stats["function_changes"] += 1
            return None
        if len(data) == 7 and data[1] == 0x43 and data[2] >> 4 == 1 and data[3] >> 2 == 0:
            number = ((data[3] & 3) << 7) | data[4]
            if number == OPERATOR_SWITCH:
                self.edit_ops = data[5] & ALL_OPERATORS
                return self._voice_changed(block)
            if number < VCED_SIZE:
                p = PARAMETERS[number]
                return self._set_voice(self.edit.replace(**{p.key: min(int(data[5]), p.max)}), block)
        self._ignore("other_sysex")
        return None

    def _set_voice(self, voice: Voice, block: int) -> str | None:
        self.edit = voice
        return self._voice_changed(block)

    def _voice_changed(self, block: int) -> str | None:
        self.stats["voice_changes"] += 1
        if self.any_sounding(block):
            self.stats["stutter_prone"] += self.receiver == "mk1"
        if self.receiver == "mk1":
            return None
        self.lfo.set_voice(self.edit, block)
        for n in self.slots:
            if n is not None:
                self._update_note(n, block)
        return "voice"

    # -- notes ---------------------------------------------------------------------------------
    def _choose_slot(self, key: int, block: int) -> int:
        best, best_score, best_seq = 0, -1, None
        for k in range(VOICES):
            i = (self.cursor + k) % VOICES
            n = self.slots[i]
            score = 4 * (not self.playing(i, block)) + 2 * (n is None or not n.keydown) + (n is not None and n.key == key)
            seq = -1 if n is None else n.seq
            if score > best_score or (score == best_score and seq < best_seq):
                best, best_score, best_seq = i, score, seq
        self.cursor = (best + 1) % VOICES
        return best

    def note_on(self, midi_note: int, velocity: int, block: int) -> str:
        key = int(np.clip(midi_note + self.edit["transpose"] - 24, 0, 127))
        if self.receiver == "mk1":
            self.lfo.set_voice(self.edit, block)   # the new note's voice, key sync included
        if not self.keys_held():
            self.lfo.key_down(block)
        self.stats["notes"] += 1
        if self.functions["mono_poly"]:
            return self._mono_on(midi_note, key, velocity, block)
        slot = self._choose_slot(key, block)
        self._start(slot, midi_note, key, velocity, block)
        return "note"

    def _start(self, slot: int, midi_note: int, key: int, velocity: int, block: int) -> None:
        stolen = self.playing(slot, block)
        self.stats["stolen"] += stolen
        previous = self.slots[self.last_slot] if self.last_slot is not None else None
        note = Note(self.edit, key, midi_note, velocity, block, self.seq, operators_on(self.edit_ops))
        self.seq += 1
        self._update_note(note, block, fresh=True)
        note.sustained = False
        glide = self._porta_rate()
        if glide and previous is not None:
            note.porta_cents = self._current_pitch(previous, block) - 100.0 * key
            note.porta_block = block
        self.slots[slot] = note
        self.last_slot = slot
        if note.voice["osc_key_sync"] and not stolen:
            self._resets.add(slot)

    def take_resets(self) -> set[int]:
        """Slots whose phases a note-on since the last call reset (OSC KEY SYNC on a free slot)."""
        out, self._resets = self._resets, set()
        return out

    def _update_note(self, note: Note, block: int, fresh: bool = False) -> None:
        """(Re)compute a note from its voice: at its note-on, or after a live edit (``dexed``)."""
        if not fresh:
            note.voice, note.ops_on = self.edit, operators_on(self.edit_ops)
        v = note.voice
        self._retune(note)
        note.ams = np.array([v[f"op{k}_amp_mod_sensitivity"] for k in range(1, 7)])
        note.pmd, note.amd = pmd_share(v["lfo_pitch_mod_depth"]), pmd_share(v["lfo_amp_mod_depth"])
        note.pms = int(v["pitch_mod_sensitivity"])
        egs = operator_egs(v, note.key, note.velocity, self.sample_rate)
        if fresh:
            note.egs = egs
            note.paths = [eg.key_down(block) for eg in egs]
            note.peg = PitchEG(v, self.blocks_per_second)
            note.peg_path = note.peg.key_down(block)
            return
        if note.keydown or note.sustained:
            note.paths = [eg.retarget(note.level(k, block), block) for k, eg in enumerate(egs)]
        note.egs = egs

    def note_off(self, midi_note: int, block: int) -> None:
        if self.functions["mono_poly"]:
            self._mono_off(midi_note, block)
            return
        for i, n in enumerate(self.slots):
            if n is not None and n.keydown and n.midi_note == midi_note:
                n.keydown = False
                if self.sustain:
                    n.sustained = True
                else:
                    self._release(i, block)
                return

    def _release(self, slot: int, block: int) -> None:
        n = self.slots[slot]
        n.paths = [eg.key_up(n.level(k, block), block) for k, eg in enumerate(n.egs)]
        n.peg_path = n.peg.key_up(n.pitch_level(block), block)

    # -- mono ----------------------------------------------------------------------------------
    def _mono_slot(self) -> int | None:
        return next((i for i, n in enumerate(self.slots) if n is not None and (n.keydown or n.sustained)), None)

    def _mono_on(self, midi_note: int, key: int, velocity: int, block: int) -> str | None:
        self.held_mono = [k for k in self.held_mono if k != midi_note] + [midi_note]
        slot = self._mono_slot()
        current = self.slots[slot] if slot is not None else None
        if current is not None and current.keydown and current.midi_note > midi_note:
            return None                                           # a higher key keeps sounding
        if current is not None and current.keydown:
            self._legato(current, midi_note, key, block)
            return None
        self.slots = [None] * VOICES if slot is None else self.slots
        self._start(0 if slot is None else slot, midi_note, key, velocity, block)
        return "note"

    def _legato(self, note: Note, midi_note: int, key: int, block: int) -> None:
        """Move a held mono note to another key without a new attack (Dexed ``transferState``)."""
        glide = self._porta_rate()
        old = self._current_pitch(note, block)
        note.midi_note, note.key = midi_note, key
        self._retune(note)
        if glide:
            note.porta_cents, note.porta_block = old - 100.0 * key, block

    def _retune(self, note: Note) -> None:
        """A note's operator frequencies (Hz, without modulation) for its key and voice."""
        v = note.voice
        modes = np.array([v[f"op{n}_mode"] for n in range(1, 7)])
        note.fixed = modes == 1
        note.base_hz = np.asarray(operator_frequency(
            modes, [v[f"op{n}_coarse"] for n in range(1, 7)], [v[f"op{n}_fine"] for n in range(1, 7)],
            [v[f"op{n}_detune"] for n in range(1, 7)], midi_to_hz(note.key)), dtype=np.float64)

    def _mono_off(self, midi_note: int, block: int) -> None:
        self.held_mono = [k for k in self.held_mono if k != midi_note]
        slot = self._mono_slot()
        if slot is None or self.slots[slot].midi_note != midi_note or not self.slots[slot].keydown:
            return
        note = self.slots[slot]
        if self.held_mono:
            top = max(self.held_mono)
            self._legato(note, top, int(np.clip(top + note.voice["transpose"] - 24, 0, 127)), block)
            return
        note.keydown = False
        if self.sustain:
            note.sustained = True
        else:
            self._release(slot, block)

    # -- pitch -----------------------------------------------------------------------------------
    def _porta_rate(self) -> float:
        """Portamento speed in cents per block (0: off)."""
        time = self.functions["portamento_time"]
        if time == 0 or not self.porta_switch:
            return 0.0
        gliss = self.functions["portamento_gliss"]
        i = round(time * 127 / 99)
        return 100.0 * PORTA_SEMITONES_PER_SECOND[gliss] * 2.0 ** (-0.062 * i) / self.blocks_per_second

    def _porta_offset(self, note: Note, blocks: np.ndarray) -> np.ndarray:
        if note.porta_cents == 0.0:
            return np.zeros(len(blocks))
        rate = self._porta_rate() or math.inf
        moved = (blocks - note.porta_block + 1) * rate
        left = np.sign(note.porta_cents) * np.maximum(abs(note.porta_cents) - moved, 0.0)
        if self.functions["portamento_gliss"]:
            left = np.round(left / 100.0) * 100.0
        return left

    def _current_pitch(self, note: Note, block: int) -> float:
        """A note's pitch (cents, key * 100 + portamento) at ``block``, where a glide starts from."""
        return 100.0 * note.key + float(self._porta_offset(note, np.array([block]))[0])

    def bend_cents(self) -> float:
        """Pitch bend in cents (see the module notes)."""
        b = self.bend - 8192
        step = self.functions["pitch_bend_step"]
        if step == 0:
            return b / 8192 * 100.0 * self.functions["pitch_bend_range"]
        stp = 12 // step
        k = int(b * stp / 8191)
        return 1200.0 * k * (8191 // stp) / 8192

    def _controller_totals(self) -> tuple[float, float, float | None]:
        """(pitch 0..1, amplitude 0..1, EG bias total 0-127 or None) from the four controllers."""
        pitch = amp = 0
        eg = None
        for name in fn.CONTROLLERS:
            total = int(self.cc[name] * self.functions[f"{name}_range"] / 100)
            assign = self.functions[f"{name}_assign"]
            pitch = max(pitch, total) if assign & fn.ASSIGN_PITCH else pitch
            amp = max(amp, total) if assign & fn.ASSIGN_AMPLITUDE else amp
            if assign & fn.ASSIGN_EG_BIAS:
                eg = max(eg or 0, total)
        return pitch / 128, amp / 128, eg

    # -- controls --------------------------------------------------------------------------------
    def controls(self, start: int, n: int) -> list[SlotControls]:
        """Controls of every sounding slot for blocks ``start .. start + n - 1`` (no message
        arrives in between)."""
        value, delay = self.lfo.values(start, n)
        pitch_ctl, amp_ctl, eg_total = self._controller_totals()
        bias = eg_bias(eg_total)
        bend = self.bend_cents()
        blocks = np.arange(start, start + n)
        out = []
        for i, note in enumerate(self.slots):
            if note is None or not self.playing(i, start):
                continue
            micro = np.stack([level_at(p, blocks + 1) for p in note.paths], axis=1) / _Q24
            if note.ams.any():
                micro = am_cut(micro, note.ams, amp_mod_depth(note.amd, value, delay, amp_ctl, bias))
            amp = microsteps_to_amplitude(micro) * note.ops_on
            cents = np.interp(blocks + 1, *note.peg_path) * PITCH_EG_UNIT_CENTS + self._porta_offset(note, blocks)
            if note.pms:
                cents = cents + pitch_mod_cents(note.pmd, note.pms, value, delay, pitch_ctl)
            ratio = np.exp2((cents + bend) / 1200)[:, None]
            freq = note.base_hz * np.where(note.fixed, 2.0 ** (bend / 1200), ratio)
            out.append(SlotControls(i, freq, np.asarray(amp, dtype=np.float64)))
        return out
