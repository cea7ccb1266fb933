"""How close a DX7 playing an export comes to the recording it was made from.

For one recording (:func:`compare_take`): the run's export for a DX7 Mark I (``mk1``: voice +
.mid, played by the project's DX7 engine with the ``mk1`` receiver), the ``dexed`` export (the
engine with the ``dexed`` receiver), the starting voice the run was trained from played with the
same notes, velocities and bends (the floor: what a user had before) and the model's own
resynthesis (the ceiling a DX7 export can approach), each compared with the recording, gains
matched (each rendering scaled to the recording's RMS), by

* :func:`multires_distance_db`: the mean absolute difference of log-magnitude spectra (dB, each
  spectrum floored 80 dB below the recording's peak) at FFT sizes 2048, 1024, 512, 256 and 128
  (hop a quarter), averaged over the resolutions;
* :func:`loudness_error_db`: the RMS difference of the A-weighted loudness envelopes (dB, 4 ms
  frames, :func:`ddx7.data.features.a_weighted_loudness`) over the frames where the recording is
  within 60 dB of its loudest.

Renders are made at 44.1 kHz (the rate Dexed's EG timing was measured at) and resampled to the
recording's 16 kHz.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from dx7tools.audio import SAMPLE_RATE, read_audio

RESOLUTIONS = (2048, 1024, 512, 256, 128)
SPECTRUM_RANGE_DB = 80.0
LOUDNESS_RANGE_DB = 60.0
RENDER_RATE = 44100
ROWS = ("mk1", "dexed", "start voice", "model")
"""Row keys of :func:`compare_take`: (a) the mk1 export, (b) the dexed export, (c) the floor, (d) the ceiling."""
ROW_LABELS = {"mk1": "mk1 export on a DX7 (Mark I receiver)", "dexed": "dexed export (Dexed receiver)",
              "start voice": "starting voice, same notes, velocities and bends", "model": "the DDX7 model (resynthesis)"}


def match_gain(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``x`` scaled to ``reference``'s RMS over their common length (silence stays silence)."""
    n = min(len(x), len(reference))
    rx, rr = np.sqrt(np.mean(x[:n] ** 2)), np.sqrt(np.mean(reference[:n] ** 2))
    return x * (rr / rx) if rx > 0 else x


def _padded(x: np.ndarray, n: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)[:n]
    return np.pad(x, (0, n - len(x)))


def multires_distance_db(x: np.ndarray, reference: np.ndarray) -> float:
    """Multi-resolution log-spectral distance (dB, see the module notes), ``x`` gain-matched."""
    from dx7tools.audio import log_spectrogram

    n = len(reference)
    x, ref = _padded(match_gain(x, reference), n), _padded(reference, n)
    out = []
    for size in RESOLUTIONS:
        a, b = log_spectrogram(x, size, size // 4), log_spectrogram(ref, size, size // 4)
        floor = b.max() - SPECTRUM_RANGE_DB
        out.append(float(np.mean(np.abs(np.maximum(a, floor) - np.maximum(b, floor)))))
    return float(np.mean(out))


def loudness_error_db(x: np.ndarray, reference: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """RMS difference of the A-weighted loudness envelopes (dB, module notes), ``x`` gain-matched."""
    from ddx7.data.features import a_weighted_loudness

    n = len(reference)
    lx = np.asarray(a_weighted_loudness(_padded(match_gain(x, reference), n).astype(np.float32), sample_rate))
    lr = np.asarray(a_weighted_loudness(_padded(reference, n).astype(np.float32), sample_rate))
    m = min(len(lx), len(lr))
    lx, lr = lx[:m], lr[:m]
    active = lr > lr.max() - LOUDNESS_RANGE_DB
    return float(np.sqrt(np.mean((np.maximum(lx, lr.max() - LOUDNESS_RANGE_DB) - lr)[active] ** 2)))


def _to_recording_rate(audio: np.ndarray, rate: int) -> np.ndarray:
    if rate == SAMPLE_RATE:
        return audio
    import soxr

    return soxr.resample(audio, rate, SAMPLE_RATE)


def play(voice, mid: Path, receiver: str, lead_in: float, length: int) -> np.ndarray:
    """``mid`` played by the DX7 engine with ``voice``, from ``lead_in`` s on, ``length`` samples at 16 kHz."""
    from dx7tools.midi import read_midi_events

    from ddx7.synth.dx7 import DX7

    audio = DX7(voice, sample_rate=RENDER_RATE, receiver=receiver).render(read_midi_events(mid), tail=1.0)
    audio = _to_recording_rate(audio, RENDER_RATE)
    start = int(round(lead_in * SAMPLE_RATE))
    return _padded(audio[start:], length)


def variant_events(mk1_mid: Path, voice, *, lane: bool = False, bends: bool = True, velocity: int | None = None):
    """The mk1 performance's events played with ``voice`` and fewer of its parts: notes always (at
    ``velocity`` if given, else their own), pitch bends (and the bend range) if ``bends``, the
    controller lane and its function set-up if ``lane``. Used for the floor row (the starting voice,
    no lane) and for the benchmark's ablation."""
    from dx7tools.midi import Event, parse_function_change, read_midi_events
    from dx7tools.sysex import vced_message

    out = [Event(0.0, vced_message(voice))]
    for e in read_midi_events(mk1_mid):
        d, status = e.data, e.data[0] & 0xF0
        if d[0] == 0xF0:
            change = parse_function_change(d)
            if change and (change[0].startswith("pitch_bend") and bends or not change[0].startswith("pitch") and lane):
                out.append(e)
        elif status in (0x80, 0x90):
            out.append(Event(e.time, bytes([d[0], d[1], velocity])) if velocity and status == 0x90 and d[2] else e)
        elif status == 0xE0 and bends or status in (0xB0, 0xD0) and lane:
            out.append(e)
    return out


def compare_take(run, wav, *, home=None, voice_export=None, start_voice=None, model_audio=None, plans=None,
                 **export_options) -> dict:
    """The end-to-end rows for one recording (module notes).

    Args:
        run: a DDX7 :class:`ddx7.run.Run` (or its folder).
        wav: the recording (16 kHz or resampled).
        voice_export: the run's :class:`ddx7.export.voice.VoiceExport` (fitted once and reused).
        start_voice: the voice the run was trained from (default: the library's voice of the run's
            configuration, :func:`ddx7.export.voice.baseline_voice`).
        model_audio: the model's resynthesis of ``wav`` (default: computed).
        plans: the mk1 and dexed plans of ``wav`` (:func:`ddx7.export.mk1.plan_mk1_and_dexed`),
            if already made.
        export_options: ``channel``, ``budget``, ``controller`` of the exports (as
            :func:`ddx7.export.performance.export_performance` takes them).

    Returns:
        ``{"rows": {row: {"spectral_db", "loudness_db"}}, "notes", "seconds"}``.
    """
    from dx7tools.performance import write_midi_file

    from ddx7.export.mk1 import plan_mk1_and_dexed
    from ddx7.export.performance import LEAD_IN_SECONDS, performance_features, write_performance
    from ddx7.export.voice import export_voice
    from ddx7.run import Run

    run = run if isinstance(run, Run) else Run.at(run)
    reference, sr = read_audio(wav)
    reference = _to_recording_rate(reference.astype(np.float64), sr)
    n = len(reference)
    voice_export = voice_export or export_voice(run, home)
    renders = {}
    with tempfile.TemporaryDirectory(prefix="dx7tools-e2e-") as tmp:
        tmp = Path(tmp)
        plans = plans or plan_mk1_and_dexed(run, voice_export, *performance_features(run, wav), source=str(wav),
                                            **export_options)
        for target, plan in plans.items():   # each played by its own receiver
            write_performance(plan, tmp / f"{target}.mid")
            renders[target] = play(voice_export.voice, tmp / f"{target}.mid", target, LEAD_IN_SECONDS, n)
        notes = plans["mk1"].sidecar["notes"]
        start = start_voice if start_voice is not None else _library_voice(run, home)
        write_midi_file(tmp / "start.mid", variant_events(tmp / "mk1.mid", start))
        renders["start voice"] = play(start, tmp / "start.mid", "mk1", LEAD_IN_SECONDS, n)
        if model_audio is None:
            model_audio = _resynth(run, wav, tmp / "model.wav")
    renders["model"] = _padded(model_audio, n)
    rows = {k: {"spectral_db": round(multires_distance_db(renders[k], reference), 3),
                "loudness_db": round(loudness_error_db(renders[k], reference), 3)} for k in ROWS}
    return {"rows": rows, "notes": notes, "seconds": round(n / SAMPLE_RATE, 3), "audio": renders}


def _library_voice(run, home):
    """The unfitted voice of the run's fixed configuration (:func:`ddx7.export.voice.baseline_voice`)."""
    from ddx7.export.voice import baseline_voice

    return baseline_voice(home, run.fixed_config)[0]


def _resynth(run, wav, out: Path) -> np.ndarray:
    from ddx7.resynth import resynthesize_file

    resynthesize_file(run.path, wav, out)
    return read_audio(out)[0].astype(np.float64)


def save_check(run, wav, *, home=None, voice_export=None, plans=None, **export_options) -> dict:
    """:func:`compare_take` for ``wav`` (with the export's ``export_options``, or its ``plans``), kept in the run
    folder for the report: ``e2e/STEM.json``
    (the rows) and ``e2e/STEM-{original,model,mk1,dexed,start}.wav`` (16 kHz).

    Returns:
        the rows, notes, seconds and the JSON's path.
    """
    import json

    from dx7tools.audio import write_wav
    from dx7tools.files import atomic_write_bytes

    from ddx7.run import Run

    run = run if isinstance(run, Run) else Run.at(run)
    result = compare_take(run, wav, home=home, voice_export=voice_export, plans=plans, **export_options)
    folder = run.path / "e2e"
    folder.mkdir(exist_ok=True)
    stem = Path(wav).stem
    audio, rate = read_audio(wav)
    reference = _to_recording_rate(audio.astype(np.float64), rate)
    write_wav(folder / f"{stem}-original.wav", reference, SAMPLE_RATE)
    for key, name in AUDIO_FILES.items():
        write_wav(folder / f"{stem}-{name}.wav", result["audio"][key], SAMPLE_RATE)
    record = {"recording": str(wav), "rows": result["rows"], "notes": result["notes"], "seconds": result["seconds"]}
    path = folder / f"{stem}.json"
    atomic_write_bytes(path, (json.dumps(record, indent=2) + "\n").encode())
    return {**record, "json": str(path)}


AUDIO_FILES = {"mk1": "mk1", "dexed": "dexed", "start voice": "start", "model": "model"}
"""Row -> file name suffix of the renders :func:`save_check` keeps."""
