"""Evaluate a trained run by FAD, as the paper does: the resynthesised test split against the
complete corpus (every split), with two reference rows.

    result = evaluate_run(home, "violin-ddx7")          # default embedding crepe-tiny
    result["fad"], result["embedding"], result["n_frames"], result["reference"]

Rows:

* the run itself: its best model resynthesises each test segment from the segment's own
  features (f0 and loudness, from the feature cache), and those resyntheses are embedded;
* ``original``: the original test segments against the corpus -- the floor, what a perfect
  resynthesis would score (the test split is part of the corpus, as in the paper);
* ``hpn``: the newest finished HpN run trained on the same corpus, if there is one (and the
  evaluated run is not HpN itself).

Embeddings of corpus segments and originals are cached per segment content and embedding
settings in ``<corpus>/embeddings/`` (so evaluating several runs of one corpus embeds it once).
The result is also written to ``<run>/eval-<embedding>.json`` for :mod:`ddx7.evaluate.report`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dx7tools.audio import SAMPLE_RATE
from dx7tools.errors import DX7Error
from dx7tools.files import atomic_write_bytes

from ddx7.evaluate.embeddings import DEFAULT_EMBEDDING, Embedder, get_embedding
from ddx7.evaluate.fad import GaussianStats, gaussian_stats, stats_distance
from ddx7.run import Run, newest_finished

ProgressFn = Callable[[str, float, float], None]
"""``progress(stage, done, total)``."""


class EmbeddingStore:
    """Embeddings of corpus audio, cached per segment content (see :class:`ddx7.data.features.FeatureCache`)."""

    def __init__(self, corpus_path: Path, embedder: Embedder):
        from ddx7.data.features import FeatureCache

        self.cache = FeatureCache(Path(corpus_path) / "embeddings")
        self.embedder = embedder

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        feats = self.cache.get_or_compute(audio, SAMPLE_RATE, self.embedder.settings(),
                                          lambda a, sr: {"embedding": self.embedder(a)})
        return np.asarray(feats["embedding"], dtype=np.float64).reshape(-1, self.embedder.dim)


def corpus_embeddings(corpus, store: EmbeddingStore, progress: ProgressFn | None = None) -> dict[str, np.ndarray]:
    """Embedding frames of every segment: ``{segment file: (F, d)}``."""
    segments = corpus.segments()
    total = sum(s["duration"] for s in segments)
    out, done = {}, 0.0
    for seg in segments:
        out[seg["file"]] = store(corpus.load(seg))
        done += seg["duration"]
        if progress:
            progress("embedding corpus", done, total)
    return out


def _stack(parts: list[np.ndarray], dim: int) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, dim))


def resynthesize_test(run: Run, home, progress: ProgressFn | None = None) -> list[tuple[str, np.ndarray]]:
    """The run's best model applied to each test segment's features: ``[(segment file, audio)]``."""
    from ddx7.data.examples import load_examples

    cfg = run.fit_config
    data = load_examples(home, cfg.corpus, cfg, progress=(lambda d, t: progress("features", d, t))
                         if progress else None)
    model = run.model()
    out = []
    torch.manual_seed(0)  # HpN's noise: the same evaluation every time
    with torch.no_grad():
        for i, e in enumerate(data["test"]):
            y = model(torch.from_numpy(e.f0_hz)[None], torch.from_numpy(e.loudness_db)[None])[0].numpy()
            out.append((e.name, y.astype(np.float32)))
            if progress:
                progress("resynthesis", i + 1, len(data["test"]))
    return out


def fad_row(name: str, stats: GaussianStats, corpus_stats: GaussianStats, **extra) -> dict:
    return {"row": name, "fad": round(stats_distance(stats, corpus_stats), 6), "n_frames": stats.n_frames, **extra}


def corpus_reference(home, corpus_name: str, emb: Embedder, *, diagonal: bool = False,
                     progress: ProgressFn | None = None) -> tuple[GaussianStats, dict[str, np.ndarray], float]:
    """The complete corpus's Gaussian, its per-segment embeddings, and its seconds of audio."""
    from ddx7.data.corpus import Corpus

    corpus = Corpus.open(home, corpus_name)
    per_segment = corpus_embeddings(corpus, EmbeddingStore(corpus.path, emb), progress)
    stats = gaussian_stats(_stack(list(per_segment.values()), emb.dim), diagonal=diagonal,
                           what=f"corpus {corpus_name!r}")
    return stats, per_segment, sum(s["duration"] for s in corpus.segments())


def original_row(per_segment: dict[str, np.ndarray], corpus_stats: GaussianStats, test_files: list[str],
                 emb: Embedder, corpus_name: str, diagonal: bool = False) -> dict:
    """The floor: the original test segments against the complete corpus."""
    stats = gaussian_stats(_stack([per_segment[f] for f in test_files if f in per_segment], emb.dim),
                           diagonal=diagonal, what=f"test split of {corpus_name!r}")
    return fad_row("original", stats, corpus_stats)


def run_stats(run: Run, home, emb: Embedder, *, diagonal: bool = False,
              progress: ProgressFn | None = None) -> tuple[GaussianStats, list[str]]:
    """The Gaussian of a run's resynthesised test split, and the test segment files."""
    corpus_name = run.corpus
    resynth = resynthesize_test(run, home, progress)
    if not resynth:
        raise DX7Error(f"corpus {corpus_name!r} has no test segments to evaluate")
    parts = []
    for i, (_, audio) in enumerate(resynth):
        parts.append(emb(audio))
        if progress:
            progress("embedding resynthesis", i + 1, len(resynth))
    stats = gaussian_stats(_stack(parts, emb.dim), diagonal=diagonal,
                           what=f"resynthesised test split of {corpus_name!r} ({run.name})")
    return stats, [name for name, _ in resynth]


def evaluate_run(home, run, *, embedding: str = DEFAULT_EMBEDDING, weights=None, diagonal: bool = False,
                 reference: bool = True, embedder: Embedder | None = None, write: bool = True,
                 progress: ProgressFn | None = None) -> dict:
    """FAD of a run's resynthesised test split against its complete corpus, with reference rows.

    Args:
        home: data home.
        run: run name or folder.
        embedding: registry name (see :mod:`ddx7.evaluate.embeddings`); ``weights`` for ``vggish``.
        diagonal: diagonal covariances (small sets); never mixed with full ones.
        reference: also compute the ``original`` and ``hpn`` rows.
        embedder: an already built embedder (overrides ``embedding``/``weights``).
        write: save the result as ``<run>/eval-<embedding>.json``.
        progress: ``progress(stage, done, total)``.

    Returns:
        ``{"run", "corpus", "model", "embedding", "embedding_description", "diagonal", "fad",
        "n_frames", "corpus_frames", "reference": [{"row", "fad", "n_frames", ...}], "seconds",
        "audio_seconds"}``.

    Raises:
        DX7Error: unknown run, unfinished run, missing corpus, too few frames for the covariance,
            embedding problems (unknown name, VGGish weights missing or of the wrong shape).
    """
    started = time.perf_counter()
    run = Run.open(home, run).require_finished()
    corpus_name = run.corpus
    emb = embedder if embedder is not None else get_embedding(embedding, weights=weights)
    corpus_stats, per_segment, audio_seconds = corpus_reference(home, corpus_name, emb, diagonal=diagonal,
                                                                progress=progress)
    stats, test_files = run_stats(run, home, emb, diagonal=diagonal, progress=progress)
    rows = [fad_row(run.name, stats, corpus_stats, model=run.kind)]
    if reference:
        rows.append(original_row(per_segment, corpus_stats, test_files, emb, corpus_name, diagonal))
        hpn = newest_finished(home, kind="hpn", corpus=corpus_name, exclude=run.name) if run.kind != "hpn" else None
        if hpn is not None:
            hpn_stats, _ = run_stats(hpn, home, emb, diagonal=diagonal, progress=progress)
            rows.append(fad_row("hpn", hpn_stats, corpus_stats, run=hpn.name))
    result = {
        "run": run.name, "corpus": corpus_name, "model": run.kind,
        "embedding": emb.name, "embedding_description": emb.describe(), "diagonal": diagonal,
        "fad": rows[0]["fad"], "n_frames": rows[0]["n_frames"], "corpus_frames": corpus_stats.n_frames,
        "reference": rows[1:], "audio_seconds": round(audio_seconds, 2),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if write:
        atomic_write_bytes(run.path / eval_file_name(emb.name, diagonal), json.dumps(result, indent=2).encode())
    return result


def eval_file_name(embedding: str, diagonal: bool = False) -> str:
    """Where :func:`evaluate_run` saves its result inside the run folder."""
    return f"eval-{embedding}{'-diagonal' if diagonal else ''}.json"
