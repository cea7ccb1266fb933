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

**Performance** (:func:`export_performance`): see that function.
"""

from __future__ import annotations

import json
import time
import warnings
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

from ddx7.fit.train import load_examples
from ddx7.run import FitConfig, load_model

PRE_SECONDS = 0.5       # silence before note-on: the TCN's context (124 frames) sees silence
ATTACK_SECONDS = 0.04
NOTE_SECONDS = 1.0
RELEASE_SECONDS = 0.25
TAIL_SECONDS = 0.5      # rendered after key-up
RELEASE_DROP_DB = 60.0


# -- the run and its corpus ---------------------------------------------------------------------
def resolve_run(home, run: str) -> Path:
    """A run name (in ``<home>/runs``) or a run folder."""
    from ddx7.run import check_name, runs_dir

    if Path(run).is_dir():
        return Path(run)
    path = runs_dir(home) / check_name(run)
    if not path.exists():
        raise DX7Error(f"no run named {run!r} (see `dx7tools runs`)")
    return path


def load_ddx7(run_dir: Path):
    """The run's best DDX7 model and run.json; HpN runs and runs without a model are refused."""
    model, run = load_model(run_dir)
    if run.get("model") != "ddx7" or not run.get("fixed_config"):
        raise DX7Error(f"run is a {run.get('model')!r} model; only DDX7 runs map onto DX7 parameters", str(run_dir))
    return model, run


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


def corpus_stats(home, run: dict) -> CorpusStats:
    """:class:`CorpusStats` of the run's training split (features from the corpus's cache)."""
    cfg = FitConfig.from_saved(run["config"])
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


def export_voice(run_dir, home=None) -> VoiceExport:
    """Fit a DX7 voice to a trained DDX7 run (see the module notes).

    Args:
        run_dir: the run's folder.
        home: data home holding the run's corpus (default: the run folder's ``../..``).
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    model, run = load_ddx7(run_dir)
    home = home if home is not None else run_dir.parent.parent
    stats = corpus_stats(home, run)
    notes = representative_notes(stats)
    levels, audio = model_note_levels(model, notes, stats.silence_db)
    # The model's frame i is the level reached at the end of that frame, (i + 1) / 250 s after
    # note-on (the synth interpolates up to it); the DX7 curve's frame j is the level at j / 250 s.
    targets = [[NoteTarget(n.note, n.velocity, NOTE_SECONDS, np.r_[np.nan, lv[:-1, k]]) for n, lv in zip(notes, levels)]
               for k in range(6)]
    fits = fit_voice_levels(targets)
    config = FixedConfig.from_dict(run["fixed_config"])
    base = config.apply_to(Voice.init()).replace(transpose=24)
    voice = apply_fits(base, fits).with_name(voice_name(run.get("name") or run_dir.name))
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

        from ddx7.rank.choose import _patch_file

        cart = parse_bytes(_patch_file("dx7tools-starters.syx"), "dx7tools-starters.syx")
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
        DX7Error: dexed-py (optional extra) is not installed.
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


def run_info(run_dir) -> dict:
    return json.loads((Path(run_dir) / "run.json").read_text())


# -- performance --------------------------------------------------------------------------------
LEAD_IN_SECONDS = 0.5     # the voice dump (52 ms on the wire + the DX7's pause) and setup before the music
BEND_RANGE = 2            # semitones; set on the DX7 by a function parameter change at the start
BREATH_RANGE_DB = 48.0    # CC 2 = 0 means the modulators 48 dB below the voice's own levels
OPERATOR_CC = (102, 103, 104, 105, 106, 107)
"""Per-operator CC lanes (OP1..OP6 output level, value = level * 127 / 99): CCs 102-107 are
undefined in the MIDI spec, so a soft synth (Dexed: MIDI learn) can map them freely."""
WIRE_BUDGET = 3000.0      # bytes in any one-second window: 96 % of the 3,125 bytes/s wire


def performance_features(run: dict, wav) -> tuple[np.ndarray, np.ndarray]:
    """f0 (0 where unvoiced) and loudness of a recording, as the run's training computed them."""
    from dx7tools.audio import read_audio

    from ddx7.data.features import compute_features
    from ddx7.fit.train import confidence_threshold, voiced_f0

    audio, sr = read_audio(wav)
    if len(audio) == 0:
        raise DX7Error("the audio file is empty", str(wav))
    if sr != SAMPLE_RATE:
        import soxr

        audio = soxr.resample(audio, sr, SAMPLE_RATE).astype(np.float32)
    if not np.all(np.isfinite(audio)):
        raise DX7Error("audio has NaN or infinite samples", str(wav))
    cfg = run["config"]
    feats = compute_features(audio, SAMPLE_RATE, hop=HOP, model=cfg["crepe"], crepe_hop=cfg.get("crepe_hop"))
    f0 = voiced_f0(np.asarray(feats["f0_hz"]), np.asarray(feats["confidence"]), confidence_threshold(cfg))
    return f0, np.asarray(feats["loudness_db"], dtype=np.float32)[: len(f0)]


def export_performance(run_dir, wav, out_mid, *, home=None, voice_export: VoiceExport | None = None,
                       channel: int = 1, budget: float = WIRE_BUDGET, breath: bool = False,
                       cc_lanes: bool = False, features=None) -> dict:
    """A recording as a Standard MIDI File played by the run's exported voice.

    The file holds, after a lead-in: the exported voice as a single-voice dump and the function
    parameter changes it relies on (pitch-bend range; with ``breath``, breath control range 99
    assigned to EG bias) at time 0; notes from f0 and loudness (:func:`dx7tools.performance.segment_notes`;
    velocity from the loudness of the note's first 40 ms, with the voice's loudness mapping);
    pitch bend for the pitch between semitones; and the model's per-frame operator levels as
    DX7 OUTPUT LEVEL parameter changes, thinned so that no one-second window of the whole
    stream exceeds ``budget`` bytes. With ``breath`` the modulators get AMP MOD SENSITIVITY 3 and
    follow a breath-controller (CC 2) brightness lane instead of parameter changes; with
    ``cc_lanes`` every operator's level also goes out on CC 102-107 (:data:`OPERATOR_CC`).
    The output level wanted at frame t is the model's amplitude divided by the voice's own EG
    gain for that note (``amplitude_to_output_level(m(t) / g(t))``), since the DX7 multiplies
    the two. A JSON sidecar (``OUT.json``) names the voice, the CC map and the controllers.

    Returns:
        dict: the sidecar's content plus ``stream`` figures (bytes/s, level errors).
    """
    from dx7tools import performance as perf
    from dx7tools.algorithms import get_algorithm
    from dx7tools.envelope import eg_levels
    from dx7tools.levels import amplitude_to_output_level, keyboard_level_scaling, output_level_to_amplitude
    from dx7tools.midi import Event, function_parameter_change, sort_events
    from dx7tools.files import atomic_write_bytes
    from dx7tools.sysex import vced_message

    started = time.perf_counter()
    run_dir, out_mid = Path(run_dir), Path(out_mid)
    if not out_mid.parent.is_dir():
        raise DX7Error("cannot write: the folder does not exist", str(out_mid))
    model, run = load_ddx7(run_dir)
    if voice_export is None:
        voice_export = export_voice(run_dir, home)
    f0, loud = features if features is not None else performance_features(run, wav)
    if not np.any(f0 > 0):
        raise DX7Error("no voiced frames: nothing to play (is it silence, noise or unpitched?)", str(wav))
    notes = perf.segment_notes(f0, loud)
    if not notes:
        raise DX7Error("no notes found: the voiced parts are all shorter than 24 ms", str(wav))
    with torch.no_grad():
        index = model.controls(torch.from_numpy(np.asarray(f0))[None], torch.from_numpy(np.asarray(loud))[None])
    amp = index[0].double().numpy() / 2.0  # (T, 6); frame i is reached at the end of frame i ...
    wanted_amp = np.vstack([amp[:1], amp[:-1]])  # ... so the level at frame i's start is frame i - 1's
    stats = voice_export.stats
    voice = voice_export.voice
    carriers = set(get_algorithm(voice.algorithm).carriers)
    modulators = [k for k in range(1, 7) if k not in carriers and voice[f"op{k}_output_level"] > 0]
    if breath:
        voice = voice.replace(**{f"op{k}_amp_mod_sensitivity": 3 for k in modulators}, lfo_amp_mod_depth=0)
    T = len(f0)
    times = LEAD_IN_SECONDS + np.arange(T) / FRAME_RATE
    pitch = perf.midi_pitch(f0)

    # Mandatory messages: set-up, notes, pitch bend.
    ch = channel - 1
    setup = [Event(0.0, vced_message(voice, channel)),
             Event(0.2, function_parameter_change("pitch_bend_range", BEND_RANGE, channel))]
    if breath:
        setup += [Event(0.21, function_parameter_change("breath_control_range", 99, channel)),
                  Event(0.22, function_parameter_change("breath_control_assign", 4, channel))]
    note_events, bend_events = [], []
    wanted_ol = np.full((T, 6), np.nan)
    voice_amp = np.full((T, 6), np.nan)
    for n in notes:
        vel = int(np.clip(stats.velocity(float(np.max(loud[n.start: min(n.end, n.start + 10)]))), 1, 127))
        note_events += [Event(times[n.start], bytes([0x90 | ch, n.pitch, vel])),
                        Event(times[min(n.end, T - 1)] if n.end < T else times[-1] + 1 / FRAME_RATE,
                              bytes([0x80 | ch, n.pitch, 0]))]
        bends = perf.pitch_bend_values(pitch[n.start:n.end], n.pitch, BEND_RANGE)
        last = None
        for i, b in enumerate(bends):
            if last is None or (abs(b - last) >= 41 and i % 5 == 0) or (i == 0):  # 41 = 1 cent at +-2 st; 20 ms
                bend_events.append(Event(times[n.start + i] - (1e-4 if i == 0 else 0.0), perf.pitch_bend_message(b, channel)))
                last = b
        duration = (n.end - n.start) / FRAME_RATE
        for k in range(1, 7):
            op = voice.op(k)
            if op.output_level == 0:
                continue
            kls = keyboard_level_scaling(n.pitch, op.breakpoint, op.left_depth, op.right_depth, op.left_curve,
                                         op.right_curve)
            rates = [voice[f"op{k}_eg_rate_{i}"] for i in range(1, 5)]
            levels = [voice[f"op{k}_eg_level_{i}"] for i in range(1, 5)]
            g = eg_levels(rates, levels, duration, total_seconds=duration, note=n.pitch, output_level=99,
                          velocity=vel, velocity_sensitivity=op.velocity_sensitivity, level_scaling=kls)
            span = slice(n.start, n.start + len(g))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(g > 1e-4, wanted_amp[span, k - 1] / np.maximum(g, 1e-12), np.nan)
            ok = np.isfinite(ratio)
            wanted_ol[span, k - 1] = np.where(ok, amplitude_to_output_level(np.where(ok, ratio, 0.0)), np.nan)
            voice_amp[span, k - 1] = g * output_level_to_amplitude(op.output_level)  # the voice alone
    mandatory = setup + note_events + bend_events
    wire = perf.WireBudget(T + int(LEAD_IN_SECONDS * FRAME_RATE) + 2, FRAME_RATE, budget)
    for e in mandatory:
        wire.add(e.time, e.data)
    if wire.worst()["bytes per 1 s"] > 1.0:
        raise DX7Error(f"the notes and pitch bends alone need more than {budget:.0f} bytes in one second "
                       "(raise --budget, at most 3125)")

    from dx7tools.midi import parameter_change

    lanes = []
    sysex_ops = [k for k in range(1, 7) if voice[f"op{k}_output_level"] > 0 and not (breath and k in modulators)]
    for k in sysex_ops:
        lanes.append(perf.Lane(f"op{k}_output_level", wanted_ol[:, k - 1],
                               (lambda v, key=f"op{k}_output_level": parameter_change(key, v, channel)),
                               weight=0.753))
    if breath and modulators:
        # Brightness: how far the model's modulators sit below the voice's fitted levels (dB, mean).
        cols = [k - 1 for k in modulators]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = 20 * np.log10(np.maximum(wanted_amp[:, cols], 1e-6) / np.maximum(voice_amp[:, cols], 1e-6))
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # frames between notes: all NaN, no brightness
            bright = np.clip(np.nanmean(rel, axis=1), -BREATH_RANGE_DB, 0.0)
        cc2 = np.where(np.isfinite(voice_amp[:, modulators[0] - 1]), 127 * (1 + bright / BREATH_RANGE_DB), np.nan)
        lanes.append(perf.Lane("cc2", cc2, lambda v: bytes([0xB0 | ch, 2, v]), 0, 127, 1.0, BREATH_RANGE_DB / 127))
    if cc_lanes:
        for k in range(1, 7):
            if voice[f"op{k}_output_level"] == 0:
                continue
            lanes.append(perf.Lane(f"cc{OPERATOR_CC[k - 1]}", wanted_ol[:, k - 1] * 127 / 99,
                                   (lambda v, c=OPERATOR_CC[k - 1]: bytes([0xB0 | ch, c, v])), 0, 127, 2.0, 0.3))
    initial = {f"op{k}_output_level": voice[f"op{k}_output_level"] for k in range(1, 7)}
    lane_events = perf.thin_lanes(lanes, wire, times, initial)
    events = sort_events(mandatory + lane_events)

    # Stream and error figures.
    from dx7tools.midi import max_bytes_per_window

    sizes = [len(e.data) for e in events]
    total_seconds = float(times[-1] + 1 / FRAME_RATE)
    err_rows = {}
    for ln in lanes:
        if not ln.name.startswith("op"):
            continue
        active = np.isfinite(ln.wanted) & np.isfinite(ln.sent)
        if active.any():
            e = np.abs(ln.sent[active] - ln.wanted[active])
            q = np.abs(np.rint(ln.wanted[active]) - ln.wanted[active])
            err_rows[ln.name] = {"messages": ln.count, "rms_levels": round(float(np.sqrt(np.mean(e ** 2))), 3),
                                 "max_levels": round(float(e.max()), 3),
                                 "quantisation_rms_levels": round(float(np.sqrt(np.mean(q ** 2))), 3)}
    all_e = [v for v in err_rows.values()]
    every = np.concatenate([np.abs(ln.sent - ln.wanted)[np.isfinite(ln.sent) & np.isfinite(ln.wanted)]
                            for ln in lanes if ln.name.startswith("op")] or [np.zeros(1)])
    stream = {
        "messages": len(events), "bytes": int(sum(sizes)), "seconds": round(total_seconds, 3),
        "mean_bytes_per_second": round(sum(sizes) / total_seconds, 1),
        "max_bytes_in_one_second": int(max_bytes_per_window([e.time for e in events], sizes)),
        "budget_bytes_per_second": budget,
        "parameter_changes": sum(ln.count for ln in lanes if ln.name.startswith("op")),
        "level_rms_levels": round(float(np.sqrt(np.mean([r["rms_levels"] ** 2 for r in all_e]))), 3) if all_e else 0.0,
        "level_max_levels": max((r["max_levels"] for r in all_e), default=0.0),
        "level_p99_levels": round(float(np.percentile(every, 99)), 3),
        "quantisation_rms_levels": round(float(np.sqrt(np.mean([r["quantisation_rms_levels"] ** 2 for r in all_e]))), 3)
        if all_e else 0.0,
        "per_operator": err_rows,
    }
    stream["level_rms_db"] = round(stream["level_rms_levels"] * 0.753, 3)
    sidecar = {
        "voice": voice.name, "run": run.get("name"), "channel": channel, "lead_in_seconds": LEAD_IN_SECONDS,
        "notes": len(notes), "velocity_loudness_range_db": list(stats.loudness_range),
        "controllers": {"pitch_bend_range_semitones": BEND_RANGE,
                        "dx7_parameter_changes": [f"op{k}_output_level" for k in sysex_ops],
                        "breath_cc2": ({"operators": modulators, "amp_mod_sensitivity": 3, "range_db": BREATH_RANGE_DB,
                                        "function": "breath control range 99, assign EG BIAS"} if breath else None),
                        "operator_cc": ({f"op{k}_output_level": OPERATOR_CC[k - 1] for k in range(1, 7)
                                         if voice[f"op{k}_output_level"] > 0} if cc_lanes else None)},
        "cc_map": {"2": "breath: modulator brightness (EG bias)" if breath else None,
                   **({str(OPERATOR_CC[k - 1]): f"OP{k} output level x 127/99" for k in range(1, 7)
                       if voice[f"op{k}_output_level"] > 0} if cc_lanes else {})},
        "stream": stream,
    }
    data = perf.midi_file_bytes(events)
    sidecar_path = out_mid.with_suffix(".json")
    from dx7tools.midi import message_kind

    for e in events:
        message_kind(e.data)
    existed = out_mid.exists()
    atomic_write_bytes(out_mid, data)
    try:
        atomic_write_bytes(sidecar_path, (json.dumps(sidecar, indent=2) + "\n").encode())
    except BaseException:
        if not existed:  # no .mid without its sidecar
            out_mid.unlink(missing_ok=True)
        raise
    sidecar["seconds_to_export"] = round(time.perf_counter() - started, 3)
    sidecar["output"], sidecar["sidecar"] = str(out_mid), str(sidecar_path)
    sidecar["_lanes"] = lanes
    sidecar["_times"] = times
    return sidecar


# -- rendering a .mid through Dexed ----------------------------------------------------------------
def render_midi(voice: Voice, song, *, sample_rate: int = 44100, max_tail: float = 4.0,
                progress=None) -> tuple[np.ndarray, dict]:
    """Play a .mid with ``voice`` through dexed-py (optional GPL extra), note by note.

    dexed-py renders one held note at a time, so each note is rendered on its own -- with the
    voice as it stands at its note-on (voice dumps and parameter changes in the file apply from
    the next note-on) -- until its release has died away (at most ``max_tail`` s), and mixed at
    its onset. Not heard: pitch bend, controllers (breath, mod wheel, the CC lanes), parameter
    changes within a note; these are counted in the returned ``ignored``.

    Returns:
        ``(audio, info)``: float32 (samples,), and a dict (notes, seconds, ignored counts).
    """
    from dx7tools.envelope import operator_levels
    from dx7tools.midi import KIND_VOICE, message_kind, parse_parameter_change, read_midi_events
    from dx7tools.sysex import parse_bytes

    from ddx7.synth.preview import render_dexed

    events = read_midi_events(song)
    current = voice
    held: dict[tuple[int, int], tuple[float, int, Voice]] = {}
    notes: list[tuple[float, float, int, int, Voice]] = []
    ignored = {"pitch_bend": 0, "control_change": 0, "changes_within_notes": 0, "other": 0}
    for e in events:
        d = e.data
        status = d[0] & 0xF0
        if d[0] == 0xF0:
            kind = message_kind(d)
            pc = parse_parameter_change(d)
            if kind == KIND_VOICE:
                current = parse_bytes(d, str(song)).voices[0].voice
            elif pc is not None:
                current = current.replace(**{pc[0]: pc[1]})
            else:
                ignored["other"] += 1
                continue
            ignored["changes_within_notes"] += 1 if held else 0
        elif status == 0x90 and d[2] > 0:
            key = (d[0] & 0x0F, d[1])
            if key in held:  # retrigger: end the previous one
                t0, vel, v = held.pop(key)
                notes.append((t0, e.time, d[1], vel, v))
            held[key] = (e.time, d[2], current)
        elif status in (0x80, 0x90):
            key = (d[0] & 0x0F, d[1])
            if key in held:
                t0, vel, v = held.pop(key)
                notes.append((t0, e.time, d[1], vel, v))
        elif status == 0xE0:
            ignored["pitch_bend"] += 1
        elif status == 0xB0:
            ignored["control_change"] += 1
        else:
            ignored["other"] += 1
    end_time = events[-1].time if events else 0.0
    for key, (t0, vel, v) in held.items():
        notes.append((t0, end_time, key[1], vel, v))
    if not notes:
        raise DX7Error("the MIDI file has no notes to play", str(song))
    rendered, cache = [], {}
    for i, (t0, t1, note, vel, v) in enumerate(sorted(notes, key=lambda n: n[0])):
        held_s = max(t1 - t0, 1.0 / sample_rate)
        levels = operator_levels(v, note, vel, held_s, frame_rate=FRAME_RATE)
        tail = min(max_tail, max(0.0, len(levels) / FRAME_RATE - held_s) + 0.05)
        key = (v.content_hash, note, vel, round(held_s, 3), round(tail, 3))
        if key not in cache:
            cache[key] = render_dexed(v, note, vel, round(held_s, 3), tail=round(tail, 3), sample_rate=sample_rate)
        rendered.append((int(round(t0 * sample_rate)), cache[key]))
        if progress:
            progress(i + 1, len(notes))
    length = max(start + len(a) for start, a in rendered)
    out = np.zeros(length, np.float32)
    for start, a in rendered:
        out[start: start + len(a)] += a
    return out, {"notes": len(notes), "seconds": round(length / sample_rate, 3), "sample_rate": sample_rate,
                 "ignored": ignored}
