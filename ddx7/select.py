"""Patch selector: rank library voices by how well their fixed configuration plays a corpus.

``dx7tools rank --corpus NAME`` runs :func:`rank`:

1. **Excerpts.** :func:`pick_excerpts` takes steady, voiced 128 ms windows of the corpus's
   training and validation segments (f0 from CREPE, as for training), spread over its pitch range
   and dynamics.
2. **First stage, every configuration** (:func:`dx7tools.selector.first_stage`, numpy): can
   the configuration put partials where the excerpts have them (its partial lattice)?
3. **Second stage, a quick fit** in first-stage order for as long as the budget allows (keeping
   time for the third stage):
   the differentiable synth itself, with the configuration's algorithm, frequencies and
   feedback, is searched for the output levels that best reproduce 3 excerpts' spectra (no
   network: random points of a grid of DX7 output levels, then coordinate descent, levels held
   over the 128 ms window; :func:`fit_distance`). The score is the reached mean log-spectral
   distance in dB.
4. **Third stage, the full fit** of the quick fit's best ``candidates`` on 6 excerpts with a
   longer search, within the rest of the budget.

Voices sharing a configuration are scored once and listed together. Rows fitted fully come
first (by their distance), then those fitted quickly, then the rest by first-stage cost;
``stage`` (3, 2 or 1) says which. The ranking is saved in the data home (``rankings/CORPUS.json``) for ``fit --voice auto``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dx7tools.errors import DX7Error
from dx7tools.fixed_config import FixedConfig
from dx7tools.library import Library, resolve_home
from dx7tools.selector import ConfigGroup, Excerpt, first_stage, group_voices, make_excerpt
from dx7tools.sysex import atomic_write_bytes

from .synth import FMSynth

SAMPLE_RATE = 16000
HOP = 64
WINDOW = 2048
"""Excerpt length in samples (128 ms at 16 kHz, 32 frames)."""
DEFAULT_BUDGET = 60.0
SECOND_STAGE_EXCERPTS = 6
FULL_COST = 2.5
"""A full fit costs about this many quick ones (measured: 6 excerpts and 126 renders each against
3 excerpts and 86); the quick fits stop while that much time is left for the full fits."""
DEFAULT_CANDIDATES = 40
"""Second-stage candidates when the budget allows (the first stage's best)."""
FLOOR_DB = 60.0

# Index grid of the second stage: silence, then DX7 output levels 39..99 in steps of 4
# (about 3 dB apart), as DDX7 indexes (2 = output level 99).
_LEVEL_STEP_DB = 0.75  # dB per output-level step near the top of the DX7's table
INDEX_GRID = torch.tensor([0.0] + [2.0 * 10 ** (-(99 - ol) * _LEVEL_STEP_DB / 20) for ol in range(39, 100, 4)])


ProgressFn = Callable[[str, float, float], None]


# -- excerpts -----------------------------------------------------------------------------------
def pick_excerpts(examples: list, n: int = 12, window: int = WINDOW, pitch_bins: int = 4) -> list[Excerpt]:
    """Steady voiced windows spread over pitch and loudness.

    Args:
        examples: :class:`ddx7.train.Example` (audio, f0 per frame with 0 = unvoiced, loudness).
        n: how many excerpts at most.
        window: excerpt length in samples (a multiple of the 64-sample hop).
        pitch_bins: the pitch range is cut into this many quantile bins; each gives its loudest
            windows and one of middling loudness.

    Returns:
        excerpts (:class:`dx7tools.selector.Excerpt`), at most ``n``.

    Raises:
        DX7Error: no window of ``window`` samples is voiced throughout with a steady pitch.
    """
    frames = window // HOP
    cands = []  # (log f0, loudness, example index, start frame)
    for k, ex in enumerate(examples):
        f0 = np.asarray(ex.f0_hz, dtype=np.float64)
        loud = np.asarray(ex.loudness_db, dtype=np.float64)
        for start in range(0, len(f0) - frames + 1, frames // 2):
            seg = f0[start:start + frames]
            if np.all(seg > 0) and np.log2(seg.max() / seg.min()) * 1200 < 40:
                cands.append((float(np.log2(np.median(seg))), float(loud[start:start + frames].mean()), k, start))
    if not cands:
        raise DX7Error(f"no steady voiced stretch of {window / SAMPLE_RATE * 1000:.0f} ms in the corpus "
                       "(is it all noise, silence or very fast passages?)")
    pitch = np.array([c[0] for c in cands])
    edges = np.quantile(pitch, np.linspace(0, 1, pitch_bins + 1))
    chosen: list[tuple] = []
    per_bin = max(1, math.ceil(n / pitch_bins))
    for b in range(pitch_bins):
        members = [c for c, p in zip(cands, pitch) if edges[b] <= p <= edges[b + 1]]
        members.sort(key=lambda c: -c[1])
        order = members[: max(1, per_bin - 1)] + members[len(members) // 2:len(members) // 2 + 1]
        order += members  # fall back to any window when the first picks overlap
        taken = 0
        for c in order:
            if taken >= per_bin or len(chosen) >= n:
                break
            if any(c[2] == d[2] and abs(c[3] - d[3]) < frames for d in chosen):
                continue
            chosen.append(c)
            taken += 1
    out = []
    for _, _, k, start in chosen:
        ex = examples[k]
        audio = ex.audio[start * HOP:(start + frames) * HOP]
        f0 = float(np.median(ex.f0_hz[start:start + frames]))
        out.append(make_excerpt(audio, f0, SAMPLE_RATE, f"{ex.name}@{start * HOP / SAMPLE_RATE:.2f}s"))
    return out


# -- the synth fits (second and third stages) ------------------------------------------------
def log_power_db(audio: torch.Tensor) -> torch.Tensor:
    """Hann-windowed power spectrum in dB: (..., n) -> (..., n // 2 + 1)."""
    window = torch.hann_window(audio.shape[-1], periodic=False, dtype=torch.float64)
    return 10.0 * torch.log10(torch.fft.rfft(audio.double() * window).abs() ** 2 + 1e-20)


def spectral_distance(pred_db: torch.Tensor, target_db: torch.Tensor, floor_db: float = FLOOR_DB) -> torch.Tensor:
    """Mean |dB difference| over bins, both spectra floored at ``floor_db`` below the target's
    peak and the prediction's gain matched peak to peak: (..., bins), (bins,) -> (...)."""
    top = target_db.max()
    floor = top - floor_db
    pred = pred_db - pred_db.max(-1, keepdim=True).values + top
    return (pred.clamp(min=floor) - target_db.clamp(min=floor)).abs().mean(-1)


def fit_distance(config: FixedConfig, excerpts: list[Excerpt], *, octave: int = 0, n_random: int = 24,
                 sweeps: int = 1, seed: int = 0) -> float:
    """Second-stage score: how closely the synth with ``config`` can reproduce the excerpts.

    For every excerpt at once: ``n_random`` random grid points of the six indexes, the best one
    refined by ``sweeps`` rounds of coordinate descent (each operator in turn over the whole
    :data:`INDEX_GRID`), levels held constant over the 128 ms window. ``octave``: the note
    pitch is ``f0 * 2**octave`` (see :func:`dx7tools.selector.lattice_cost`).

    Returns:
        the mean over excerpts of the best :func:`spectral_distance` (dB); lower is better.
    """
    if not excerpts:
        raise DX7Error("no excerpts to fit")
    synth = FMSynth(config, SAMPLE_RATE, HOP)
    n_ex = len(excerpts)
    frames = len(excerpts[0].audio) // HOP
    target = log_power_db(torch.from_numpy(np.stack([e.audio for e in excerpts])))   # (E, bins)
    f0 = torch.tensor([e.f0_hz * 2.0 ** octave for e in excerpts], dtype=torch.float32)
    grid = INDEX_GRID

    def evaluate(index: torch.Tensor) -> torch.Tensor:  # (E, K, 6) -> (E, K) distances
        k = index.shape[1]
        with torch.no_grad():
            audio = synth(f0[:, None, None].expand(n_ex, k, frames).reshape(-1, frames),
                          index.reshape(-1, 1, 6).expand(-1, frames, 6).float())
        pred = log_power_db(audio).reshape(n_ex, k, -1)
        return torch.stack([spectral_distance(pred[e], target[e]) for e in range(n_ex)])

    gen = torch.Generator().manual_seed(seed)
    start = grid[torch.randint(len(grid), (n_ex, n_random, 6), generator=gen)]
    dist = evaluate(start)
    best_d, best_k = dist.min(1)
    current = start[torch.arange(n_ex), best_k]                                          # (E, 6)
    for _ in range(sweeps):
        for op in range(6):
            trial = current[:, None, :].repeat(1, len(grid), 1)
            trial[:, :, op] = grid
            d = evaluate(trial)
            d_min, k = d.min(1)
            better = d_min < best_d
            current = torch.where(better[:, None], trial[torch.arange(n_ex), k], current)
            best_d = torch.minimum(best_d, d_min)
    return float(best_d.mean())


# -- the ranking ---------------------------------------------------------------------------------
@dataclass
class Ranking:
    """Result of :func:`rank`.

    Attributes:
        corpus: corpus name.
        rows: one dict per configuration, best first: ``rank``, ``voices`` (library ids),
            ``names``, ``algorithm``, ``ratios`` (OP1..OP6; a fixed operator's entry is
            ``"<Hz>Hz"``), ``feedback``, ``score`` (lower is better), ``stage`` (1 or 2),
            ``first_stage`` (the stage-1 cost), ``config`` (:meth:`FixedConfig.to_dict`).
        complete: False when the budget stopped the second stage before its planned candidates.
        message: what happened, for the user (e.g. the budget ran out).
        stats: counts and timings (voices, configurations, excerpts, seconds per stage,
            first-stage voices per second).
    """

    corpus: str
    rows: list[dict]
    complete: bool
    message: str
    stats: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"corpus": self.corpus, "complete": self.complete, "message": self.message,
                "stats": self.stats, "rows": self.rows}

    def top_config(self) -> FixedConfig:
        return FixedConfig.from_dict(self.rows[0]["config"])


def _ratio_cells(config: FixedConfig) -> list:
    return [f"{config.fixed_hz[i]:.4g}Hz" if config.mode[i] else round(config.ratios[i], 4) for i in range(6)]


def _row(group: ConfigGroup, score: float, stage: int, first: float, octave: int) -> dict:
    c = group.config
    return {"voices": list(group.voice_ids), "names": list(group.names), "algorithm": c.algorithm,
            "ratios": _ratio_cells(c), "feedback": c.feedback, "octave": int(octave), "score": round(float(score), 4),
            "stage": stage, "first_stage": round(float(first), 4), "config": c.to_dict()}


def rank(home, corpus: str, *, algorithm: int | None = None, budget: float = DEFAULT_BUDGET,
         candidates: int = DEFAULT_CANDIDATES, crepe: str = "tiny", crepe_hop: int | None = None,
         excerpts: int = 12,
         groups: list[ConfigGroup] | None = None, progress: ProgressFn | None = None,
         save: bool = True) -> Ranking:
    """Rank the library's fixed configurations for ``corpus``.

    Args:
        home: data home (library, corpora, rankings).
        corpus: corpus name.
        algorithm: rank only voices of this DX7 algorithm.
        budget: seconds for the ranking once the corpus's features are ready (they are computed
            once per corpus and cached). The first stage always completes; the second stops when
            the budget is spent.
        candidates: configurations given the full fit at most (the quick fit's best).
        crepe: CREPE model for f0 (``tiny`` is 30x faster than ``full`` and precise enough here).
        crepe_hop: run CREPE every this many samples (see ``dx7tools fit --crepe-hop``).
        excerpts: corpus excerpts scored.
        groups: configurations to rank instead of the library's (tests, benchmarks).
        progress: called as ``progress(stage_name, done, total)``.
        save: write ``rankings/CORPUS.json`` in the data home (atomic) when the run completes.

    Raises:
        DX7Error: empty library (or no voice of ``algorithm``), unknown corpus, no voiced
            frames, bad arguments.
    """
    from .train import FitConfig, load_examples

    t0 = time.perf_counter()
    if not (isinstance(budget, (int, float)) and budget > 0):
        raise DX7Error(f"--budget must be > 0 seconds, got {budget!r}")
    if algorithm is not None and not (isinstance(algorithm, int) and 1 <= algorithm <= 32):
        raise DX7Error(f"--algorithm must be 1-32, got {algorithm!r}")
    if groups is None:
        voices = Library(home).voices()
        if not voices:
            raise DX7Error("the library is empty: import cartridges first (dx7tools import FILE.syx)")
        groups = group_voices(voices, algorithm)
        if not groups:
            raise DX7Error(f"no library voice uses algorithm {algorithm}")
    if not groups:
        raise DX7Error("no configurations to rank")
    n_voices = sum(len(g.voice_ids) for g in groups)
    cfg = FitConfig(corpus=corpus, crepe=crepe, crepe_hop=crepe_hop)
    cfg.check()
    data = load_examples(home, corpus, cfg, progress=(lambda d, t: progress("features", d, t)) if progress else None)
    chosen = pick_excerpts(data["train"] + data["valid"], n=excerpts)
    t_features = time.perf_counter() - t0
    t0 = time.perf_counter()   # features are computed once per corpus and cached: not in the budget

    t1 = time.perf_counter()
    cost, octave = first_stage(groups, chosen,
                               progress=(lambda d, t: progress("first stage", d, t)) if progress else None)
    t_first = time.perf_counter() - t1
    order = np.argsort(cost, kind="stable")

    # Second stage: a quick fit (3 excerpts, a short search) in first-stage order, while the
    # budget leaves room for the third: the full fit of the quick stage's best.
    t2 = time.perf_counter()
    quick_set = chosen[::4] if len(chosen) > 3 else chosen
    quick: dict[int, float] = {}
    for i in order:
        per = (time.perf_counter() - t2) / len(quick) if quick else 0.0
        # Leave time for the full fits of the best so far (each costs about FULL_COST quick ones).
        reserve = min(candidates, len(quick) + 1) * per * FULL_COST
        if time.perf_counter() - t0 + per + reserve > budget:
            break
        quick[int(i)] = fit_distance(groups[i].config, quick_set, octave=int(octave[i]), n_random=8)
        if progress:
            progress("second stage (quick fit)", len(quick), len(groups))
    t_quick = time.perf_counter() - t2

    t3 = time.perf_counter()
    fitted = chosen[::2] if len(chosen) > SECOND_STAGE_EXCERPTS else chosen
    by_quick = sorted(quick, key=lambda i: (quick[i], cost[i]))
    planned = min(candidates, len(by_quick)) if quick else min(candidates, len(groups))
    full: dict[int, float] = {}
    for i in by_quick[:planned]:
        # Stop before a candidate that would overrun: each costs about as much as the last one.
        per = (time.perf_counter() - t3) / len(full) if full else 0.0
        if time.perf_counter() - t0 + per > budget:
            break
        full[i] = fit_distance(groups[i].config, fitted, octave=int(octave[i]))
        if progress:
            progress("third stage (full fit)", len(full), planned)
    t_full = time.perf_counter() - t3

    third = sorted(full, key=lambda i: (full[i], quick[i]))
    second = [i for i in by_quick if i not in full]
    rest = [int(i) for i in order if int(i) not in quick]
    rows = ([_row(groups[i], full[i], 3, cost[i], octave[i]) for i in third]
            + [_row(groups[i], quick[i], 2, cost[i], octave[i]) for i in second]
            + [_row(groups[i], cost[i], 1, cost[i], octave[i]) for i in rest])
    for r, row in enumerate(rows, 1):
        row["rank"] = r
    complete = bool(full) and len(full) == planned
    if complete:
        message = (f"lattice over {len(groups)} configurations ({n_voices} voices), quick fit over the best "
                   f"{len(quick)}, full fit over the best {len(full)} of those")
    elif full:
        message = (f"the budget of {budget:g} s ran out after {len(full)} of {planned} full fits; ranks "
                   f"{len(full) + 1} and beyond are by the quick fit or the lattice only (raise --budget)")
    else:
        message = (f"the budget of {budget:g} s ran out before the fits; this is the first-stage (lattice) ranking "
                   "only (raise --budget)")
    stats = {"voices": n_voices, "configurations": len(groups), "excerpts": len(chosen),
             "quick_fits": len(quick), "full_fits": len(full), "full_fit_excerpts": len(fitted),
             "features_s": round(t_features, 2), "first_stage_s": round(t_first, 3),
             "quick_fit_s": round(t_quick, 2), "full_fit_s": round(t_full, 2),
             "total_s": round(time.perf_counter() - t0, 2),
             "first_stage_voices_per_s": round(n_voices / max(t_first, 1e-9), 1)}
    result = Ranking(corpus, rows, complete, message, stats)
    if save:
        save_ranking(home, result)
    return result


# -- persistence ----------------------------------------------------------------------------------
def _rankings_dir(home) -> Path:
    return resolve_home(home) / "rankings"


def save_ranking(home, ranking: Ranking) -> Path:
    """Write ``rankings/CORPUS.json`` atomically (the corpus name is validated, never a raw path)."""
    from .corpus import check_name

    path = _rankings_dir(home) / f"{check_name(ranking.corpus)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(ranking.to_dict(), indent=1).encode())
    return path


def load_ranking(home, corpus: str) -> Ranking | None:
    """The saved ranking of ``corpus``, or None."""
    from .corpus import check_name

    path = _rankings_dir(home) / f"{check_name(corpus)}.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return Ranking(data["corpus"], data["rows"], bool(data["complete"]), data["message"], data.get("stats", {}))
    except (ValueError, KeyError, TypeError) as exc:
        raise DX7Error(f"unreadable ranking ({exc})", str(path)) from None


def cached_top_config(home, corpus: str) -> FixedConfig | None:
    """The top configuration of the saved ranking of ``corpus``, or None if none was made."""
    ranking = load_ranking(home, corpus)
    return ranking.top_config() if ranking and ranking.rows else None
