"""From a trained DDX7 run back to the DX7: an approximated voice (SysEx) and a performance (.mid).

**Voice** (:func:`export_voice`). Representative held notes are built from the run's corpus
(its training split's voiced frames): the reference note at the median pitch and median
loudness, two more loudnesses (15th / 85th percentile) at that pitch and two more pitches
(15th / 85th percentile) at that loudness. Each is a synthetic feature trajectory -- silence,
a 40 ms attack, a 1 s sustain, a 0.25 s release falling 60 dB -- run through the model's TCN
(:meth:`ddx7.fit.models.DDX7.controls`), whose per-operator index ``I`` is an amplitude ``I / 2``
(``I = 2`` is output level 99, :mod:`dx7tools.levels`). :mod:`dx7tools.fit_envelope` then fits
each operator's output level, EG rates and levels, velocity sensitivity and keyboard level
scaling to those amplitudes with the DX7's own curves. Loudness maps to velocity linearly
between the corpus's 5th and 95th loudness percentiles (1..127), the same mapping the
performance export uses. The voice is the run's fixed configuration on an INIT VOICE (no LFO,
no pitch EG: the model has neither), named after the run.

**Fidelity** (:func:`fidelity`): the exported voice rendered by dexed-py and the model's own
dry resynthesis (synth without its reverb, which a DX7 does not have) of the same held notes,
compared by the multi-resolution spectral loss the model was trained with
(:func:`ddx7.fit.loss.multiscale_spectral_loss`) and by the frame-wise log-spectral distance in dB
(:func:`ddx7.synth.fidelity.spectral_distance_db`); next to the same figures for the nearest unfitted
library voice with the same fixed configuration.

The performance (.mid) is :mod:`ddx7.export.performance`'s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dx7tools import params
from dx7tools.errors import DX7Error
from dx7tools.fit_envelope import NoteTarget, apply_fits, fit_voice_levels
from dx7tools.fixed_config import FixedConfig
from dx7tools.voice import Voice

from dx7tools.audio import FRAME_RATE, HOP, SAMPLE_RATE

from ddx7.data.examples import load_examples
from ddx7.run import Run

PRE_SECONDS = 0.5       # silence before note-on: the TCN's context (124 frames) sees silence
ATTACK_SECONDS = 0.04
NOTE_SECONDS = 1.0
RELEASE_SECONDS = 0.25
TAIL_SECONDS = 0.5      # rendered after key-up
RELEASE_DROP_DB = 60.0


# -- the run and its corpus ---------------------------------------------------------------------
def ddx7_run(run: Run | str | Path) -> Run:
    """``run`` (a :class:`ddx7.run.Run`, or a run folder opened once with :meth:`Run.at`), checked
    to be a DDX7 run with a trained model: HpN runs and runs without a model are refused."""
    return (run if isinstance(run, Run) else Run.at(run)).require_ddx7()


@dataclass
class CorpusStats:
    """What the run's training split sounds like (voiced frames only).

    ``pitches``: MIDI notes (low, typical, high) = 15th, 50th, 85th percentile, rounded;
    ``loudness``: dB (soft, typical, loud) likewise; ``loudness_range``: the 5th and 95th
    percentiles, mapped to velocity 1 and 127; ``silence_db``: the quietest frame.
    """

    pitches: tuple
    loudness: tuple
    loudness_range: tuple
    silence_db: float

    def velocity(self, loudness_db):
        """MIDI velocity 1-127 for loudness (dB), linear between the corpus's 5th/95th percentiles."""
        lo, hi = self.loudness_range
        x = np.clip((np.asarray(loudness_db, dtype=np.float64) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
        v = np.rint(1 + 126 * x).astype(np.int64)
        return int(v) if v.ndim == 0 else v

    def to_dict(self) -> dict:
        return {"pitches": list(self.pitches), "loudness_db": [round(x, 2) for x in self.loudness],
                "velocity_loudness_range_db": [round(x, 2) for x in self.loudness_range],
                "silence_db": round(self.silence_db, 2)}


def corpus_stats(home, run: Run) -> CorpusStats:
    """:class:`CorpusStats` of the run's training split (features from the corpus's cache)."""
    cfg = run.fit_config
    try:
        data = load_examples(home, cfg.corpus, cfg)
    except DX7Error as exc:
        raise DX7Error(f"the run's representative notes come from its corpus {cfg.corpus!r}: {exc}") from None
    f0 = np.concatenate([e.f0_hz for e in data["train"]])
    loud = np.concatenate([e.loudness_db for e in data["train"]])
    voiced = f0 > 0
    pitch = 69 + 12 * np.log2(f0[voiced] / 440.0)
    p = np.rint(np.percentile(pitch, [15, 50, 85])).astype(int)
    low, mid, high = int(p[0]), int(p[1]), int(p[2])
    low, high = min(low, mid - 5), max(high, mid + 5)  # keep the scaling notes apart from the reference
    lv = loud[voiced]
    soft, typical, loud_ = (float(x) for x in np.percentile(lv, [15, 50, 85]))
    if loud_ - soft < 6.0:
        soft, loud_ = typical - 6.0, typical + 6.0
    lo, hi = (float(x) for x in np.percentile(lv, [5, 95]))
    if hi - lo < 12.0:
        lo, hi = typical - 12.0, typical + 12.0
    return CorpusStats((int(np.clip(low, 0, 127)), mid, int(np.clip(high, 0, 127))), (soft, typical, loud_),
                       (lo, hi), float(loud.min()))


# -- representative notes -----------------------------------------------------------------------
@dataclass(frozen=True)
class HeldNote:
    note: int
    loudness_db: float
    velocity: int


def representative_notes(stats: CorpusStats) -> list[HeldNote]:
    """Reference note first, then the soft and loud ones, then the low and high ones."""
    low, mid, high = stats.pitches
    soft, typical, loud = stats.loudness
    notes = [(mid, typical), (mid, soft), (mid, loud), (low, typical), (high, typical)]
    return [HeldNote(int(n), float(db), stats.velocity(db)) for n, db in notes]


def held_note_features(note: int, loudness_db: float, silence_db: float):
    """Feature trajectory of a held note: silence, attack, sustain, release (falling 60 dB), silence.

    Returns:
        ``(f0_hz, loudness_db, onset_frame)``: float32 arrays (frames,) at 250 frames/s.
    """
    pre, att = int(PRE_SECONDS * FRAME_RATE), int(ATTACK_SECONDS * FRAME_RATE)
    held, rel = int(NOTE_SECONDS * FRAME_RATE), int(RELEASE_SECONDS * FRAME_RATE)
    tail = int(TAIL_SECONDS * FRAME_RATE) - rel
    hz = 440.0 * 2.0 ** ((note - 69) / 12.0)
    floor = min(silence_db, loudness_db - RELEASE_DROP_DB)
    attack = np.linspace(floor, loudness_db, att + 1)[1:]
    release = np.linspace(loudness_db, loudness_db - RELEASE_DROP_DB, rel + 1)[1:]
    loud = np.concatenate([np.full(pre, floor), attack, np.full(held - att, loudness_db), release,
                           np.full(tail, floor)])
    f0 = np.concatenate([np.zeros(pre), np.full(held + rel, hz), np.zeros(tail)])
    return f0.astype(np.float32), loud.astype(np.float32), pre


def model_note_levels(model, notes: list[HeldNote], silence_db: float):
    """Per-operator amplitude (index / 2) of each held note from note-on, and its dry render.

    Returns:
        ``(levels, audio)``: lists, (frames, 6) float64 amplitudes and (samples,) float32 audio
        from note-on (``NOTE_SECONDS + TAIL_SECONDS`` long).
    """
    feats = [held_note_features(n.note, n.loudness_db, silence_db) for n in notes]
    f0 = torch.from_numpy(np.stack([f[0] for f in feats]))
    loud = torch.from_numpy(np.stack([f[1] for f in feats]))
    onset = feats[0][2]
    with torch.no_grad():
        index = model.controls(f0, loud)
        audio = model.synth(f0, index)
    index = index.double().numpy()
    if not np.all(np.isfinite(index)):
        raise DX7Error("the model produced non-finite levels for the representative notes")
    # Where f0 is 0 the synth silences ratio-mode operators whatever the index: a carrier's level
    # is 0 there; a modulator's does not matter (nothing it modulates sounds).
    config = model.synth.config
    ratio_ops = ~np.array(config.is_fixed)
    carriers = np.isin(np.arange(1, 7), config.algorithm_spec.carriers)
    unvoiced = (f0.numpy()[..., None] <= 0) & ratio_ops
    index = np.where(unvoiced & carriers, 0.0, np.where(unvoiced, np.nan, index))
    levels = [index[i, onset:] / 2.0 for i in range(len(notes))]
    audio = audio.numpy()[:, onset * HOP:]
    return levels, [a for a in audio]


def voice_name(run_name: str) -> str:
    """The run's name in 10 DX7 display characters (upper case)."""
    text = "".join(c if 32 <= ord(c) < 127 else " " for c in run_name.upper())
    return text[: params.NAME_LENGTH]


@dataclass
class VoiceExport:
    voice: Voice
    notes: list
    fits: list
    stats: CorpusStats
    levels: list = field(repr=False, default_factory=list)   # model's (frames, 6) per note
    audio: list = field(repr=False, default_factory=list)    # model's dry render per note
    seconds: float = 0.0

    def to_dict(self) -> dict:
        ops = []
        for n, f in enumerate(self.fits, start=1):
            ops.append({"op": n, "rms_db": round(f.rms_db, 3), "silent": f.silent,
                        **{k: int(v) for k, v in f.values.items()}})
        return {"voice": self.voice.name, "notes": [n.__dict__ for n in self.notes], "corpus": self.stats.to_dict(),
                "operators": ops, "fit_seconds": round(self.seconds, 3),
                "poor_fit_operators": [o["op"] for o in ops if o["rms_db"] > POOR_FIT_DB]}


POOR_FIT_DB = 6.0
"""An operator whose fit stays above this RMS error (dB) is reported as a poor fit."""


def export_voice(run: Run | str | Path, home=None) -> VoiceExport:
    """Fit a DX7 voice to a trained DDX7 run (see the module notes).

    Args:
        run: the run (its model is loaded once, by :meth:`Run.model`), or its folder.
        home: data home holding the run's corpus (default: the run folder's ``../..``).
    """
    started = time.perf_counter()
    run = ddx7_run(run)
    model = run.model()
    home = home if home is not None else run.path.parent.parent
    stats = corpus_stats(home, run)
    notes = representative_notes(stats)
    levels, audio = model_note_levels(model, notes, stats.silence_db)
    # The model's frame i is the level reached at the end of that frame, (i + 1) / 250 s after
    # note-on (the synth interpolates up to it); the DX7 curve's frame j is the level at j / 250 s.
    targets = [[NoteTarget(n.note, n.velocity, NOTE_SECONDS, np.r_[np.nan, lv[:-1, k]]) for n, lv in zip(notes, levels)]
               for k in range(6)]
    fits = fit_voice_levels(targets)
    base = run.fixed_config.apply_to(Voice.init()).replace(transpose=24)
    voice = apply_fits(base, fits).with_name(voice_name(run.record.get("name") or run.name))
    return VoiceExport(voice, notes, fits, stats, levels, audio, time.perf_counter() - started)


def write_voice(path, voice: Voice, *, bank: bool = False) -> None:
    """Write a single voice (163-byte VCED dump) or a 32-voice cartridge (voice in slot 1), atomically."""
    from dx7tools.midi import validate_sysex
    from dx7tools.files import atomic_write_bytes
    from dx7tools.sysex import vced_message, vmem_message

    data = vmem_message([voice]) if bank else vced_message(voice)
    validate_sysex(data, str(path))
    atomic_write_bytes(path, data)


# -- fidelity -----------------------------------------------------------------------------------
def baseline_voice(home, config: FixedConfig) -> tuple[Voice, str]:
    """The nearest unfitted voice with the same fixed configuration, and where it came from.

    The library voice of that configuration named like the configuration's source, else any
    library voice with the same configuration, else the project's own cartridge's, else the
    configuration on an INIT VOICE.
    """
    candidates: list[tuple[Voice, str]] = []
    try:
        from dx7tools.library import Library

        for v in Library(home).voices(algorithm=config.algorithm):
            candidates.append((v.voice, f"library #{v.id}"))
    except DX7Error:  # no library yet: the project's patches still count
        candidates = []
    try:
        from dx7tools.sysex import parse_bytes

        from ddx7.rank.choose import PROJECT_CARTRIDGE, patch_file

        cart = parse_bytes(patch_file(PROJECT_CARTRIDGE), PROJECT_CARTRIDGE)
        candidates += [(r.voice, "dx7tools-starters.syx") for r in cart.voices]
    except DX7Error:
        pass
    same = [(v, src) for v, src in candidates if FixedConfig.from_voice(v).key == config.key]
    named = [(v, src) for v, src in same if v.name.strip() == config.name.strip()]
    for v, src in named + same:
        return v, f"{v.name} ({src})"
    return config.apply_to(Voice.init()), "INIT VOICE with the run's configuration"


def _distances(render: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    from ddx7.synth.fidelity import spectral_distance_db
    from ddx7.fit.loss import multiscale_spectral_loss

    n = min(len(render), len(reference))
    a = torch.from_numpy(np.ascontiguousarray(render[:n], dtype=np.float32))[None]
    b = torch.from_numpy(np.ascontiguousarray(reference[:n], dtype=np.float32))[None]
    return float(multiscale_spectral_loss(a, b)), float(np.mean(spectral_distance_db(render[:n], reference[:n])))


def fidelity(export: VoiceExport, baseline: Voice) -> dict:
    """Distances of the exported and the baseline voice (dexed-py renders) to the model's notes.

    Returns:
        dict with ``exported`` / ``baseline``: ``{"spectral_loss", "spectral_db"}`` means over
        the representative notes, and ``per_note`` rows.

    Raises:
        MissingExtra: dexed-py (optional extra ``dexed``) is not installed.
    """
    from ddx7.synth.preview import render_dexed

    rows = []
    for note, reference in zip(export.notes, export.audio):
        row = {"note": note.note, "velocity": note.velocity}
        for tag, voice in (("exported", export.voice), ("baseline", baseline)):
            audio = render_dexed(voice, note.note, note.velocity, NOTE_SECONDS, tail=TAIL_SECONDS,
                                 sample_rate=SAMPLE_RATE)
            loss, db = _distances(audio, reference)
            row[tag] = {"spectral_loss": round(loss, 4), "spectral_db": round(db, 3)}
        rows.append(row)
    summary = {tag: {k: round(float(np.mean([r[tag][k] for r in rows])), 4) for k in ("spectral_loss", "spectral_db")}
               for tag in ("exported", "baseline")}
    return {**summary, "per_note": rows}
