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
The result is also written to ``<run>/eval-<embedding>.json`` for :mod:`ddx7.report`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dx7tools.errors import DX7Error
from dx7tools.sysex import atomic_write_bytes

from .embeddings import DEFAULT_EMBEDDING, Embedder, get_embedding
from .fad import GaussianStats, gaussian_stats, stats_distance

ProgressFn = Callable[[str, float, float], None]
"""``progress(stage, done, total)``."""


def resolve_run(home, run) -> Path:
    """A run name (in ``<home>/runs``) or a run folder -> the folder."""
    from .train import check_name, runs_dir

    path = Path(run)
    if path.is_dir() and (path / "run.json").exists():
        return path
    folder = runs_dir(home) / check_name(str(run))
    if not folder.exists():
        raise DX7Error(f"no run named {run!r} (see `dx7tools runs`)")
    return folder


def read_run(run_dir: Path) -> dict:
    """``run.json`` of a finished run.

    Raises:
        DX7Error: not a run, or one that never finished training (no best model, or its status
            is still ``training``: it was stopped; resume it first).
    """
    try:
        info = json.loads((Path(run_dir) / "run.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DX7Error(f"not a readable run ({type(exc).__name__})", str(Path(run_dir) / "run.json")) from None
    if info.get("status") != "trained" or not (Path(run_dir) / "model.safetensors").exists():
        raise DX7Error(f"run {Path(run_dir).name!r} never finished training (status {info.get('status')!r}); "
                       f"finish it with `dx7tools fit --run {Path(run_dir).name} --resume`", str(run_dir))
    return info


def fit_config(info: dict):
    """The run's :class:`ddx7.train.FitConfig` (unknown keys from other versions ignored)."""
    from .train import FitConfig

    return FitConfig.from_saved(info["config"])


class EmbeddingStore:
    """Embeddings of corpus audio, cached per segment content (see :class:`ddx7.features.FeatureCache`)."""

    def __init__(self, corpus_path: Path, embedder: Embedder):
        from .features import FeatureCache

        self.cache = FeatureCache(Path(corpus_path) / "embeddings")
        self.embedder = embedder

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        feats = self.cache.get_or_compute(audio, 16000, self.embedder.settings(),
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


def resynthesize_test(run_dir: Path, home, info: dict,
                      progress: ProgressFn | None = None) -> list[tuple[str, np.ndarray]]:
    """The run's best model applied to each test segment's features: ``[(segment file, audio)]``."""
    from .train import load_examples, load_model

    cfg = fit_config(info)
    data = load_examples(home, cfg.corpus, cfg, progress=(lambda d, t: progress("features", d, t))
                         if progress else None)
    model, _ = load_model(run_dir)
    out = []
    torch.manual_seed(0)  # HpN's noise: the same evaluation every time
    with torch.no_grad():
        for i, e in enumerate(data["test"]):
            y = model(torch.from_numpy(e.f0_hz)[None], torch.from_numpy(e.loudness_db)[None])[0].numpy()
            out.append((e.name, y.astype(np.float32)))
            if progress:
                progress("resynthesis", i + 1, len(data["test"]))
    return out


def find_hpn_run(home, corpus: str, exclude: str | None = None) -> Path | None:
    """The newest finished HpN run trained on ``corpus`` (by ``run.json`` time), or None."""
    from .train import runs_dir

    best, best_time = None, -1.0
    root = runs_dir(home)
    for d in sorted(root.iterdir()) if root.exists() else []:
        try:
            info = json.loads((d / "run.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if (info.get("model") == "hpn" and info.get("status") == "trained" and d.name != exclude
                and info.get("config", {}).get("corpus") == corpus and (d / "model.safetensors").exists()):
            t = (d / "run.json").stat().st_mtime
            if t > best_time:
                best, best_time = d, t
    return best


def _row(name: str, stats: GaussianStats, corpus_stats: GaussianStats, **extra) -> dict:
    return {"row": name, "fad": round(stats_distance(stats, corpus_stats), 6), "n_frames": stats.n_frames, **extra}


def corpus_reference(home, corpus_name: str, emb: Embedder, *, diagonal: bool = False,
                     progress: ProgressFn | None = None) -> tuple[GaussianStats, dict[str, np.ndarray], float]:
    """The complete corpus's Gaussian, its per-segment embeddings, and its seconds of audio."""
    from .corpus import Corpus

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
    return _row("original", stats, corpus_stats)


def run_stats(run_dir: Path, home, info: dict, emb: Embedder, *, diagonal: bool = False,
              progress: ProgressFn | None = None) -> tuple[GaussianStats, list[str]]:
    """The Gaussian of a run's resynthesised test split, and the test segment files."""
    corpus_name = info["config"]["corpus"]
    resynth = resynthesize_test(run_dir, home, info, progress)
    if not resynth:
        raise DX7Error(f"corpus {corpus_name!r} has no test segments to evaluate")
    parts = []
    for i, (_, audio) in enumerate(resynth):
        parts.append(emb(audio))
        if progress:
            progress("embedding resynthesis", i + 1, len(resynth))
    stats = gaussian_stats(_stack(parts, emb.dim), diagonal=diagonal,
                           what=f"resynthesised test split of {corpus_name!r} ({run_dir.name})")
    return stats, [name for name, _ in resynth]


def evaluate_run(home, run, *, embedding: str = DEFAULT_EMBEDDING, weights=None, diagonal: bool = False,
                 reference: bool = True, embedder: Embedder | None = None, write: bool = True,
                 progress: ProgressFn | None = None) -> dict:
    """FAD of a run's resynthesised test split against its complete corpus, with reference rows.

    Args:
        home: data home.
        run: run name or folder.
        embedding: registry name (see :mod:`ddx7.embeddings`); ``weights`` for ``vggish``.
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
    run_dir = resolve_run(home, run)
    info = read_run(run_dir)
    corpus_name = info["config"]["corpus"]
    emb = embedder if embedder is not None else get_embedding(embedding, weights=weights)
    corpus_stats, per_segment, audio_seconds = corpus_reference(home, corpus_name, emb, diagonal=diagonal,
                                                                progress=progress)
    stats, test_files = run_stats(run_dir, home, info, emb, diagonal=diagonal, progress=progress)
    rows = [_row(run_dir.name, stats, corpus_stats, model=info["model"])]
    if reference:
        rows.append(original_row(per_segment, corpus_stats, test_files, emb, corpus_name, diagonal))
        hpn_dir = find_hpn_run(home, corpus_name, exclude=run_dir.name) if info["model"] != "hpn" else None
        if hpn_dir is not None:
            hpn_stats, _ = run_stats(hpn_dir, home, read_run(hpn_dir), emb, diagonal=diagonal, progress=progress)
            rows.append(_row("hpn", hpn_stats, corpus_stats, run=hpn_dir.name))
    result = {
        "run": run_dir.name, "corpus": corpus_name, "model": info["model"],
        "embedding": emb.name, "embedding_description": emb.describe(), "diagonal": diagonal,
        "fad": rows[0]["fad"], "n_frames": rows[0]["n_frames"], "corpus_frames": corpus_stats.n_frames,
        "reference": rows[1:], "audio_seconds": round(audio_seconds, 2),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if write:
        atomic_write_bytes(run_dir / eval_file_name(emb.name, diagonal), json.dumps(result, indent=2).encode())
    return result


def eval_file_name(embedding: str, diagonal: bool = False) -> str:
    """Where :func:`evaluate_run` saves its result inside the run folder."""
    return f"eval-{embedding}{'-diagonal' if diagonal else ''}.json"
