"""The DX7 engine: a voice plus MIDI in, audio out, the way a DX7 Mark I (as Dexed emulates it) plays.

:class:`dx7tools.instrument.Instrument` is the receiving instrument (voices, controllers, LFO,
EGs, the ``mk1``/``dexed`` receivers); this module renders its controls through the one FM core
(:func:`ddx7.synth.core.accumulate_phase`, :func:`ddx7.synth.core.upsample_causal`,
:func:`ddx7.synth.core.fm_operators`), sixteen voice slots as one batch per algorithm::

    engine = DX7(voice, sample_rate=44100)
    audio = engine.render(read_midi_events("song.mid"))           # or, block by block:
    for chunk in DX7(voice).stream(events): ...

Behaviour worth knowing:

* Control rate: every 64 samples, as Dexed. A message acts at the first 64-sample boundary at
  or after its time (1.45 ms at 44.1 kHz). Operator gains ramp across a block in the log domain
  as Dexed's do (:func:`log_gain_ramp`); frequencies ramp linearly (Dexed holds them for the
  block), which amounts to a half-block delay of pitch movements.
* Streaming: :meth:`DX7.stream` yields chunks of at most ``chunk_blocks`` blocks and keeps only
  the current chunk and the 16 slots' state in memory; any chunking gives the same samples
  (phases are exact 40-bit accumulators, feedback and gain interpolation carry their state).
* Phases: a slot's phases are reset at a note-on with OSC KEY SYNC unless the slot was still
  playing (Dexed). Without it they continue from the slot's previous note (Dexed keeps idle
  slots running; here an idle slot's phases wait, so they start elsewhere in the cycle).
* No anti-aliasing by default, as the DX7 and Dexed (``antialias=True`` fades operators
  approaching Nyquist, as :class:`ddx7.synth.fm.FMSynth` does).
* The end: after the last message, rendering goes on until no slot sounds, at most ``tail``
  seconds; notes still held then, or voices whose LEVEL 4 keeps them sounding, are cut there
  and :attr:`DX7.summary` says so (``capped``).
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator

import numpy as np
import torch

from dx7tools.algorithms import ALGORITHMS
from dx7tools.envelope import BLOCK
from dx7tools.errors import DX7Error
from dx7tools.instrument import VOICES, Instrument
from dx7tools.levels import FLOOR, FULL_SCALE
from dx7tools.midi import Event

from ddx7.synth import core
from ddx7.synth.feedback import feedback_beta

DEFAULT_SAMPLE_RATE = 44100
CHUNK_BLOCKS = 2048
"""Blocks rendered per torch call at most (2048 x 64 samples = 3 s at 44.1 kHz) ..."""
CHUNK_SLOT_BLOCKS = 2048
"""... and at most this many blocks x sounding slots (one voice: 3 s; sixteen: 0.19 s), which
bounds the memory of a chunk (about 100 MB) whatever the polyphony."""
TAIL_STEP_BLOCKS = 4
"""After the last message, whether anything still sounds is checked every 4 blocks (6 ms at 44.1 kHz)."""
DEFAULT_TAIL = 10.0
"""Seconds rendered after the last message at most (releases normally end well before)."""


FLOOR_LOG2 = (FLOOR - FULL_SCALE) / 256
"""log2 of the amplitude at the engine's floor (16 microsteps, -90 dB): silence."""


def log_gain_ramp(amp: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """Per-block operator amplitudes (B, 6, T) -> per-sample gains (B, 6, T * 64), each block ramping
    from the previous block's level to its own *in the log domain* (dB-linear), as Dexed's Mark I
    engine does (measured on dexed-py: an attack from silence to full level reaches half amplitude
    20-35 samples later than a linear ramp would). Levels at or below the floor are 0."""
    floor = 2.0 ** FLOOR_LOG2
    b, c, t = amp.shape
    active = [k for k in range(c) if bool((amp[:, k] > floor).any() or (previous[:, k] > floor).any())]
    if not active:
        return torch.zeros(b, c, t * BLOCK, dtype=amp.dtype)
    every = len(active) == c
    log_amp = torch.log2((amp if every else amp[:, active]).clamp_min(floor))
    log_prev = torch.log2((previous if every else previous[:, active]).clamp_min(floor))
    # From the floor, not from 0 (as Dexed); the floor itself is subtracted, so silence stays 0
    # (everything else is lowered by 2^-14.9, -90 dB below full scale).
    ramp = torch.exp2(core.upsample_causal(log_amp, log_prev, BLOCK)).sub_(floor).clamp_min_(0.0)
    if every:
        return ramp
    gains = torch.zeros(b, c, t * BLOCK, dtype=amp.dtype)
    gains[:, active] = ramp
    return gains


def _needs_flush(data: bytes) -> bool:
    """Messages that can change a slot's note, algorithm or feedback: render what came before first."""
    status = data[0] & 0xF0
    return data[0] == 0xF0 or status == 0xC0 or (status == 0x90 and len(data) > 2 and data[2] > 0) or (
        status == 0xB0 and len(data) > 2 and data[1] == 120)


class DX7:
    """A playable DX7 (see the module notes).

    Args:
        voice: the :class:`dx7tools.voice.Voice` in the edit buffer at the start (INIT VOICE if None).
        sample_rate: Hz (44,100 by default; any rate 8-192 kHz).
        receiver: ``"mk1"`` (default) or ``"dexed"``: how voice changes reach sounding notes.
        functions: function parameters by key (:mod:`dx7tools.function`); defaults fill the rest.
        bank: voices that program changes pick from (a 32-voice dump in the stream replaces it).
        channel: listen to one MIDI channel (1-16); ``None``: all.
        antialias: fade operators approaching Nyquist (off, as on a DX7).
        chunk_blocks: most 64-sample blocks per rendered chunk.
        dtype: torch.float32 (default) or torch.float64 for the per-sample arithmetic.
    """

    def __init__(self, voice=None, *, sample_rate: float = DEFAULT_SAMPLE_RATE, receiver: str = "mk1",
                 functions=None, bank=None, channel: int | None = None, antialias: bool = False,
                 chunk_blocks: int = CHUNK_BLOCKS, dtype: torch.dtype = torch.float32):
        if int(chunk_blocks) < 1:
            raise DX7Error(f"chunk_blocks must be >= 1, got {chunk_blocks!r}")
        self.instrument = Instrument(voice, sample_rate=sample_rate, receiver=receiver, functions=functions,
                                     bank=bank, channel=channel)
        self.sample_rate = self.instrument.sample_rate
        self.antialias = antialias
        self.chunk_blocks = int(chunk_blocks)
        self.dtype = dtype
        self.block = 0
        self.phase = torch.zeros(VOICES, 6, dtype=torch.int64)
        self.memory = torch.zeros(VOICES, 2, dtype=torch.float64)
        self.prev_amp = np.zeros((VOICES, 6))
        self.prev_freq = np.zeros((VOICES, 6))
        self._fresh: set[int] = set()
        self._pending: list[tuple[int, list]] = []    # (blocks, SlotControls) per span since the last render
        self._pending_blocks = self._pending_work = 0
        self.summary: dict = {}

    @property
    def seconds(self) -> float:
        """Time rendered so far."""
        return self.block * BLOCK / self.sample_rate

    def block_of(self, seconds: float) -> int:
        """The block boundary at which a message at ``seconds`` acts (the first at or after it)."""
        return max(0, math.ceil(seconds * self.sample_rate / BLOCK - 1e-9))

    # -- live use ------------------------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Act on a MIDI message now (at the current block boundary)."""
        data = bytes(data)
        if not data:
            return
        if _needs_flush(data) and self._pending:
            raise DX7Error("internal: pending controls before a note-on")  # pragma: no cover
        kind = self.instrument.receive(data, self.block)
        if data[0] & 0xF0 == 0xB0 and len(data) > 2 and data[1] == 120:   # all sound off: nothing carries over
            self.prev_amp[:] = 0.0
            self.memory.zero_()
        if kind == "note" and self.instrument.last_slot is not None:
            self._fresh.add(self.instrument.last_slot)
        for slot in self.instrument.take_resets():
            self.phase[slot] = 0
            self.prev_amp[slot] = 0.0

    def advance(self, blocks: int) -> np.ndarray:
        """Render ``blocks`` 64-sample blocks from now: float32 (blocks * 64,)."""
        out = list(self._run(self.block + int(blocks), flush_at_end=True))
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    # -- whole songs -----------------------------------------------------------------------------
    def stream(self, events: Iterable[Event], *, tail: float = DEFAULT_TAIL) -> Iterator[np.ndarray]:
        """Play ``events`` (time-ordered, seconds from now) and yield audio chunks (float32).

        After the last message it renders until nothing sounds, at most ``tail`` seconds;
        :attr:`summary` then holds the instrument's statistics, ``seconds`` and ``capped``.
        """
        start = self.block
        last = start
        for e in events:
            g = max(self.block, start + self.block_of(e.time))
            if _needs_flush(e.data):
                yield from self._run(g, flush_at_end=True)
            else:
                yield from self._run(g, flush_at_end=False)
            self.receive(e.data)
            last = g
        cap = last + self.block_of(tail)
        capped = False
        while self.instrument.any_sounding(self.block):
            if self.block >= cap:
                capped = True
                break
            yield from self._run(min(cap, self.block + TAIL_STEP_BLOCKS), flush_at_end=False)
        yield from self._flush()
        held = sum(1 for n in self.instrument.slots if n is not None and (n.keydown or n.sustained))
        self.summary = {**self.instrument.stats, "seconds": round(self.seconds, 3), "capped": capped,
                        "held_at_end": held, "sample_rate": int(self.sample_rate) if self.sample_rate.is_integer() else self.sample_rate,
                        "receiver": self.instrument.receiver}

    def render(self, events: Iterable[Event], *, tail: float = DEFAULT_TAIL) -> np.ndarray:
        """:meth:`stream` gathered into one float32 array."""
        chunks = list(self.stream(events, tail=tail))
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    # -- rendering -----------------------------------------------------------------------------
    def _run(self, until: int, flush_at_end: bool) -> Iterator[np.ndarray]:
        """Compute controls up to block ``until``, rendering whenever the pending work reaches a
        chunk: ``chunk_blocks`` blocks, or :data:`CHUNK_SLOT_BLOCKS` blocks x sounding slots."""
        while self.block < until:
            sounding = max(1, sum(self.instrument.playing(i, self.block) for i in range(VOICES)))
            room = max(1, (CHUNK_SLOT_BLOCKS - self._pending_work) // sounding)
            n = min(until - self.block, self.chunk_blocks - self._pending_blocks, room)
            ctrls = self.instrument.controls(self.block, n)
            self._pending.append((n, ctrls))
            self._pending_blocks += n
            self._pending_work += n * max(1, len(ctrls))
            self.block += n
            if self._pending_blocks >= self.chunk_blocks or self._pending_work >= CHUNK_SLOT_BLOCKS:
                yield from self._flush()
        if flush_at_end:
            yield from self._flush()

    def _gather(self) -> tuple[int, dict[int, tuple[np.ndarray, np.ndarray]]]:
        """The pending spans as whole-chunk (blocks, 6) frequency and amplitude arrays per slot."""
        total = sum(n for n, _ in self._pending)
        slots = sorted({c.slot for _, ctrls in self._pending for c in ctrls})
        out = {}
        for s in slots:
            freq = np.empty((total, 6))
            amp = np.zeros((total, 6))
            pos, last = 0, self.prev_freq[s]
            for n, ctrls in self._pending:
                c = next((c for c in ctrls if c.slot == s), None)
                if c is None:
                    freq[pos: pos + n] = last
                else:
                    freq[pos: pos + n], amp[pos: pos + n] = c.freq, c.amp
                    last = c.freq[-1]
                pos += n
            out[s] = (freq, amp)
        return total, out

    def _flush(self) -> Iterator[np.ndarray]:
        if not self._pending:
            return
        total, per_slot = self._gather()
        self._pending, self._pending_blocks, self._pending_work = [], 0, 0
        audio = torch.zeros(total * BLOCK, dtype=torch.float64)
        groups: dict[int, list[int]] = {}
        for s in per_slot:
            groups.setdefault(self.instrument.slots[s].algorithm if self.instrument.slots[s] else 1, []).append(s)
        for algorithm, slots in groups.items():
            audio += self._render_group(algorithm, slots, per_slot)
        self._fresh.clear()
        yield audio.to(torch.float32).numpy()

    def _render_group(self, algorithm: int, slots: list[int], per_slot: dict) -> torch.Tensor:
        """Render the slots that share ``algorithm`` as one batch; update their state."""
        spec = ALGORITHMS[algorithm - 1]
        freq = np.stack([per_slot[s][0] for s in slots])                     # (B, T, 6)
        amp = np.stack([per_slot[s][1] for s in slots])
        prev_freq = np.stack([freq[i, 0] if s in self._fresh else self.prev_freq[s] for i, s in enumerate(slots)])
        freq_t = torch.from_numpy(freq).transpose(1, 2)                       # (B, 6, T)
        amp_t = torch.from_numpy(amp).transpose(1, 2)
        prev_amp = torch.from_numpy(self.prev_amp[slots])
        if self.antialias:
            amp_t = amp_t * core.antialias_gain(freq_t, self.sample_rate)
            prev_amp = prev_amp * core.antialias_gain(torch.from_numpy(prev_freq), self.sample_rate)
        idx = torch.tensor(slots)
        phase, end = core.accumulate_phase(freq_t, torch.from_numpy(prev_freq), self.sample_rate, BLOCK,
                                           self.phase[idx], self.dtype)
        gains = log_gain_ramp(amp_t.to(self.dtype), prev_amp.to(self.dtype))
        silent = [k + 1 for k in range(6) if not amp[:, :, k].any() and not self.prev_amp[slots, k].any()]
        notes = [self.instrument.slots[s] for s in slots]
        beta = torch.tensor([feedback_beta(n.feedback if n else 0, algorithm) for n in notes], dtype=self.dtype)
        with torch.no_grad():
            outs, memory = core.fm_operators(phase, gains, spec, beta, self.memory[idx], silent)
        self.phase[idx] = end
        self.memory[idx] = memory.to(torch.float64)
        self.prev_freq[slots] = freq[:, -1]
        self.prev_amp[slots] = amp_t[..., -1].numpy()
        mask = torch.tensor(spec.carrier_mask, dtype=outs.dtype)[None, :, None]
        return (outs * mask).sum((0, 1)).double()
