"""Hear a library voice: render a held note through the DX7 engine (``dx7``), the training synth
(``ddx7``) or Dexed.

With ``engine="dx7"`` (the default) the note goes through :class:`ddx7.synth.dx7.DX7`, the whole
voice as a DX7 plays it (LFO, pitch EG, every scaling), 64-sample control blocks at any rate.
With ``engine="ddx7"`` the voice's fixed configuration goes into :class:`ddx7.synth.fm.FMSynth`
and its output levels and envelopes -- :func:`dx7tools.envelope.operator_levels`, which includes
velocity, keyboard level and rate scaling -- become the per-frame indexes, scaled by the LFO's
amplitude modulation; the pitch EG and the LFO's pitch modulation move the ratio-mode operators'
frequencies (:mod:`dx7tools.modulation`). Not modelled: Dexed's output quantisation. With
``engine="dexed"`` dexed-py (optional GPL extra ``dexed``) renders the same voice.
"""

from __future__ import annotations

import numpy as np
import torch

from dx7tools.audio import FRAME_RATE, SAMPLE_RATE
from dx7tools.envelope import operator_levels
from dx7tools.errors import DX7Error, MissingExtra
from dx7tools.fixed_config import FixedConfig
from dx7tools.modulation import amp_mod_gain, pitch_cents

from ddx7.synth.fm import FMSynth

ENGINES = ("dx7", "ddx7", "dexed")


def midi_to_hz(note: float) -> float:
    """Equal temperament, A4 (MIDI 69) = 440 Hz."""
    return 440.0 * 2.0 ** ((note - 69) / 12.0)


def voice_pitch(voice, note: int) -> float:
    """The fundamental a voice plays for a MIDI note: its TRANSPOSE applies (24 = none)."""
    return midi_to_hz(note + voice["transpose"] - 24)


def unmodelled_features(voice) -> list[str]:
    """Voice features the ddx7 engine leaves out of a held note (none since the LFO and the pitch
    EG are modelled; kept so callers can still ask)."""
    return []


def _check(note, velocity, seconds, tail, sample_rate):
    if not 0 <= int(note) <= 127 or int(note) != note:
        raise DX7Error(f"note must be a MIDI note 0-127, got {note!r}")
    if not 1 <= int(velocity) <= 127 or int(velocity) != velocity:
        raise DX7Error(f"velocity must be 1-127, got {velocity!r}")
    for name, value in (("seconds", seconds), ("tail", tail)):
        if not np.isfinite(value) or value < 0:
            raise DX7Error(f"{name} must be >= 0, got {value!r}")
    if seconds + tail <= 0:
        raise DX7Error("nothing to render: seconds + tail is 0")
    if not np.isfinite(sample_rate) or sample_rate <= 0:
        raise DX7Error(f"sample rate must be > 0 Hz, got {sample_rate!r}")


def render_ddx7(voice, note: int = 60, velocity: int = 100, seconds: float = 2.0, *, tail: float = 0.5,
                sample_rate: float = SAMPLE_RATE, antialias: bool = True,
                dtype: torch.dtype = torch.float32) -> np.ndarray:
    """A held note of ``voice`` through :class:`ddx7.synth.fm.FMSynth`.

    Args:
        voice: a :class:`dx7tools.voice.Voice`.
        note: MIDI note; velocity: 1-127.
        seconds: how long the key is held; tail: seconds rendered after key-up.
        sample_rate: Hz; frames are 64 samples at 16 kHz, else ``sample_rate / 250`` rounded.
        antialias: see :class:`ddx7.synth.fm.FMSynth`.
        dtype: torch.float32 (default) or torch.float64 for the per-sample arithmetic.

    Returns:
        float array (samples,), 1.0 = one carrier at full level (may exceed 1 with several).
    """
    _check(note, velocity, seconds, tail, sample_rate)
    hop = max(1, int(round(sample_rate / FRAME_RATE)))
    synth = FMSynth(FixedConfig.from_voice(voice), sample_rate, hop, antialias=antialias).to(dtype)
    n_frames = int(np.ceil((seconds + tail) * sample_rate / hop))
    # Frame k is the level at the end of frame k (the synth's interpolation reaches a frame's
    # value on its last sample); frame "-1", the level at note-on, starts the interpolation.
    levels = operator_levels(voice, note, velocity, seconds, total_seconds=(n_frames + 1) * hop / sample_rate,
                             frame_rate=sample_rate / hop, sample_rate=sample_rate)
    levels = levels[: n_frames + 1]
    frame_rate = sample_rate / hop
    gain = amp_mod_gain(voice, levels[1:], frame_rate)
    index = torch.from_numpy(2.0 * levels * np.vstack([gain[:1], gain])).to(dtype)[None]
    cents = pitch_cents(voice, n_frames, seconds, frame_rate)
    f0 = torch.from_numpy(voice_pitch(voice, note) * 2.0 ** (cents / 1200)).float()[None]
    state = synth.initial_state(f0, index[:, 1:])
    state.index = index[:, 0]
    with torch.no_grad():
        audio, _ = synth.render(f0, index[:, 1:], state)
    return audio[0, : int(round((seconds + tail) * sample_rate))].numpy()


def render_dx7(voice, note: int = 60, velocity: int = 100, seconds: float = 2.0, *, tail: float = 0.5,
               sample_rate: float = 44100, **engine_options) -> np.ndarray:
    """A held note of ``voice`` through the DX7 engine (:class:`ddx7.synth.dx7.DX7`): key-up at
    the first 64-sample block at or after ``seconds``; exactly ``(seconds + tail) * sample_rate``
    samples. ``engine_options`` go to :class:`~ddx7.synth.dx7.DX7` (``functions``, ``dtype`` ...)."""
    from ddx7.synth.dx7 import DX7

    _check(note, velocity, seconds, tail, sample_rate)
    engine = DX7(voice, sample_rate=sample_rate, **engine_options)
    total = int(round((seconds + tail) * sample_rate))
    key_up = engine.block_of(seconds)
    engine.receive(bytes([0x90, int(note), int(velocity)]))
    held = engine.advance(key_up)
    engine.receive(bytes([0x80, int(note), 0]))
    rest = engine.advance(max(0, -(-total // 64) - key_up))
    return np.concatenate([held, rest])[:total]


def render_dexed(voice, note: int = 60, velocity: int = 100, seconds: float = 2.0, *, tail: float = 0.5,
                 sample_rate: float = SAMPLE_RATE) -> np.ndarray:
    """The same note rendered by Dexed's engine (needs the optional ``dexed`` extra)."""
    _check(note, velocity, seconds, tail, sample_rate)
    try:
        import dexed
    except ImportError:
        raise MissingExtra("the dexed engine needs dexed-py: pip install 'dx7tools[dexed]' (GPL-3)", "dexed") from None
    synth = dexed.DexedSynth(sample_rate=int(sample_rate))
    synth.load_patch(dexed.Patch.from_raw(voice.values))
    audio = synth.render(int(note), int(velocity), float(seconds), float(seconds + tail))
    return np.asarray(audio, dtype=np.float32)[: int(round((seconds + tail) * sample_rate))]


def preview(voice, note: int = 60, velocity: int = 100, seconds: float = 2.0, *, engine: str = "dx7",
            tail: float = 0.5, sample_rate: float = SAMPLE_RATE) -> np.ndarray:
    """Render a held note of ``voice`` with ``engine`` ("dx7", "ddx7" or "dexed"); see the module notes."""
    if engine == "dx7":
        return render_dx7(voice, note, velocity, seconds, tail=tail, sample_rate=sample_rate)
    if engine == "ddx7":
        return render_ddx7(voice, note, velocity, seconds, tail=tail, sample_rate=sample_rate)
    if engine == "dexed":
        return render_dexed(voice, note, velocity, seconds, tail=tail, sample_rate=sample_rate)
    raise DX7Error(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
