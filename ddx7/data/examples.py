"""Corpus segments with their features: what rank, fit, evaluate and export read from a corpus.

:func:`load_examples` turns a corpus's segments into :class:`Example` s (audio cut to whole frames,
voiced f0 and A-weighted loudness at 250 frames/s), from the corpus's feature cache when it can.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dx7tools.audio import HOP, SAMPLE_RATE
from dx7tools.errors import DX7Error

from ddx7.data.f0 import CONFIDENCE as TRACKER_CONFIDENCE
from ddx7.data.f0 import CREPE_TRACKERS, feature_settings
from ddx7.run import FitConfig


@dataclass
class Example:
    """One corpus segment with its features (frames at 250/s)."""

    audio: np.ndarray       # (T * HOP,) float32
    f0_hz: np.ndarray       # (T,)
    loudness_db: np.ndarray  # (T,)
    name: str = ""

    @property
    def frames(self) -> int:
        return len(self.f0_hz)


CONFIDENCE = {model: TRACKER_CONFIDENCE[name] for name, model in CREPE_TRACKERS.items()}
"""Default voicing thresholds by CREPE model ("full", "tiny"); every tracker's are
:data:`ddx7.data.f0.CONFIDENCE`."""


def tracker_of(cfg: "FitConfig | dict") -> str:
    """The f0 tracker of a run's settings (a :class:`FitConfig` or ``run.json``'s ``config``)."""
    c = cfg if isinstance(cfg, dict) else asdict(cfg)
    return c.get("f0") or f"crepe-{c.get('crepe', 'full')}"


def confidence_threshold(cfg: "FitConfig | dict") -> float:
    c = cfg if isinstance(cfg, dict) else asdict(cfg)
    return c.get("confidence") if c.get("confidence") is not None else TRACKER_CONFIDENCE[tracker_of(c)]


def voiced_f0(f0_hz: np.ndarray, confidence: np.ndarray, threshold: float = 0.85) -> np.ndarray:
    """f0 with low-confidence frames set to 0 (unvoiced)."""
    return np.where(confidence >= threshold, f0_hz, 0.0).astype(np.float32)


def _feature_settings(cfg: FitConfig) -> dict:
    """What a segment's cached features depend on besides its audio."""
    return feature_settings(cfg.tracker, cfg.crepe_hop, HOP)


def _frames_audio(audio: np.ndarray) -> np.ndarray | None:
    """A segment cut to whole frames (float32), or None below 8 frames (32 ms: left out)."""
    t = len(audio) // HOP
    return None if t < 8 else np.ascontiguousarray(audio[: t * HOP], dtype=np.float32)


def uncached_seconds(home, corpus_name: str, cfg: FitConfig) -> float:
    """Seconds of the corpus's audio whose features :func:`load_examples` would compute now."""
    from ddx7.data.corpus import Corpus
    from ddx7.data.features import FeatureCache

    corpus = Corpus.open(home, corpus_name)
    cache, settings, seconds = FeatureCache(Path(corpus.path) / "features"), _feature_settings(cfg), 0.0
    for seg in corpus.segments():
        audio = _frames_audio(corpus.load(seg))
        if audio is not None and not cache.path(cache.key(audio, SAMPLE_RATE, settings)).exists():
            seconds += len(audio) / SAMPLE_RATE
    return seconds


def load_examples(home, corpus_name: str, cfg: FitConfig, progress: Callable | None = None) -> dict:
    """Features for every segment of a corpus, from the feature cache when possible.

    Returns:
        ``{"train": [Example], "valid": [...], "test": [...]}``.
    """
    from ddx7.data.corpus import Corpus
    from ddx7.data.features import FeatureCache, compute_features

    corpus = Corpus.open(home, corpus_name)
    cache = FeatureCache(Path(corpus.path) / "features")
    settings = _feature_settings(cfg)
    segments = corpus.segments()
    total = sum(s["duration"] for s in segments)
    out: dict[str, list[Example]] = {"train": [], "valid": [], "test": []}
    done = 0.0
    for seg in segments:
        audio = _frames_audio(corpus.load(seg))
        if audio is None:
            continue
        t = len(audio) // HOP

        def compute(a, sr):
            return compute_features(a, sr, hop=HOP, tracker=cfg.tracker, crepe_hop=cfg.crepe_hop)

        feats = cache.get_or_compute(audio, SAMPLE_RATE, settings, compute)
        f0 = voiced_f0(np.asarray(feats["f0_hz"])[:t], np.asarray(feats["confidence"])[:t], confidence_threshold(cfg))
        out[seg["split"]].append(Example(audio, f0, np.asarray(feats["loudness_db"], dtype=np.float32)[:t],
                                         seg["file"]))
        done += seg["duration"]
        if progress:
            progress(done, total)
    if not out["train"]:
        raise DX7Error(f"corpus {corpus_name!r} has no training segments")
    if not any(np.any(e.f0_hz > 0) for e in out["train"]):
        raise DX7Error(f"corpus {corpus_name!r}: the f0 tracker ({cfg.tracker}) found no voiced frames "
                       "(is it all noise or silence?)")
    return out
