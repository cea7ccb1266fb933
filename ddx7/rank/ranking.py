"""Patch selector: rank library voices by how well their fixed configuration plays a corpus.

``dx7tools rank --corpus NAME`` runs :func:`rank`:

1. **Excerpts.** :func:`pick_excerpts` takes steady, voiced 128 ms windows of the corpus's
   training and validation segments (f0 from CREPE, as for training), spread over its pitch range
   and dynamics.
2. **First stage, every configuration** (:func:`dx7tools.lattice.first_stage_costs`, numpy):
   can the configuration put partials where the excerpts have them (its partial lattice), at
   the measured f0 and an octave either way?
3. **The fits** (:func:`fit_distance`): the differentiable synth itself, with the
   configuration's algorithm, frequencies and feedback, is searched for the output levels (and
   a pitch within a few cents of the excerpt's, pinned from its harmonics where it has them,
   flat or following the window's tracked contour) that best reproduce excerpts' spectra: no
   network, random points of a grid of DX7 output levels and the levels the configuration's
   own voices reach on a held note, then coordinate descent, levels held over the 128 ms window.
   The score is the reached mean log-spectral distance in dB. When the budget allows (timed on
   the first one), every configuration gets the **full fit** (6 excerpts, stage 3) at each octave
   the lattice finds plausible. On larger libraries a **quick fit** (3 excerpts, a shorter search,
   stage 2) runs in first-stage order while the budget leaves room, and its best ``candidates``
   get the full fit.
4. **Final fit** (stage 4) of the full fit's best :data:`FINAL_CANDIDATES` on all excerpts,
   with the levels then refined off the grid by gradient descent through the synth; then of the
   next ones, up to :data:`FINAL_MAX`, while :data:`FINAL_SHARE` of the budget lasts. Rows
   whose final-fit scores are within the search's noise of the best (:data:`TIE_MARGIN`) are
   fitted again from other random starts while the budget lasts and keep their best score.

Voices sharing a configuration are scored once and listed together. Rows are ordered by the
highest stage that scored them, then by score; ``stage`` (4, 3, 2 or 1) says which. The ranking
is saved in the data home (``rankings/CORPUS.json``) for ``fit --voice auto``.
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
from dx7tools.lattice import (OCTAVES, ConfigGroup, Excerpt, first_stage_costs, group_voices, make_excerpt,
                               voice_starts)
from dx7tools.audio import HOP, SAMPLE_RATE
from dx7tools.files import atomic_write_bytes

from ddx7.synth import core
from ddx7.synth.feedback import feedback_beta, index_ceiling
from ddx7.synth.fm import FMSynth

WINDOW = 2048
"""Excerpt length in samples (128 ms at 16 kHz, 32 frames)."""
DEFAULT_BUDGET = 60.0
SECOND_STAGE_EXCERPTS = 6
FINAL_CANDIDATES = 10
"""Configurations given the fourth stage's final fit (all excerpts, then gradient refinement)."""
FINAL_MAX = 30
"""The final fit goes on down the full fit's order up to this many configurations ..."""
FINAL_SHARE = 0.9
"""... while this share of the budget lasts (the full fit's scores are a coarse grid search:
the true configuration is often just outside its best 10; measured on known answers); the
rest of the budget goes to the tie-break."""
TIE_MARGIN = 0.25
"""Final-fit scores within this fraction of the best one (plus :data:`TIE_DB`) are a tie: the
fit is a local search, and from other random starts the same configuration's score moves by
10-30 % (measured on known answers: PIANO 3 1.02-1.27 dB over three seeds, the configuration
that beat it with seed 0 1.13-1.39) ..."""
TIE_DB = 0.02
"""... so tied rows are fitted again from other starts (:data:`TIE_SEEDS` more), best first,
while the budget lasts, and keep their best score."""
TIE_SEEDS = 2
FINAL_REFINE = 40
"""Gradient steps of the final fit."""
FINAL_COST = 4.0
"""A final fit costs about this many full fits (twice the excerpts, plus the refinement; measured
1.05 s against 0.27 s on the 1,000-voice benchmark)."""
OCTAVE_MARGIN = 0.2
"""Octave placements whose first-stage cost is within this of the best one are all fitted."""
QUICK_SPEEDUP = 2.0
"""A quick fit costs about this fraction of a full one (measured 0.14 s against 0.27 s)."""
FIT_VOICE_STARTS = 24
"""Starting points of a fit taken from the configuration's voices' envelopes
(:func:`dx7tools.lattice.voice_starts`), besides the random ones ..."""
QUICK_VOICE_STARTS = 8
"""... and of a quick fit."""
DEFAULT_CANDIDATES = 40
"""Second-stage candidates when the budget allows (the first stage's best)."""
STEADY_CENTS = (40.0, 100.0, 300.0)
"""How far an excerpt's pitch may move within its window: the first limit any window meets is
used (a voice with a trill or a wide vibrato still gets ranked, on its least unsteady windows)."""
DISTANCE_FLOOR_DB = 60.0
"""The level fits' spectral distance ignores bins more than this far below the excerpt's loudest
(the lattice's partial floor, :data:`dx7tools.lattice.PEAK_FLOOR_DB`, is another threshold)."""

# Index grid of the second stage: silence, then DX7 output levels 39..99 in steps of 4
# (about 3 dB apart), as DDX7 indexes (2 = output level 99).
_LEVEL_STEP_DB = 0.75  # dB per output-level step near the top of the DX7's table
REFINE_LR = 0.05
"""Adam step on the log index of the fits' gradient refinement (about 0.4 dB)."""
PITCH_CENTS = (-12.0, -8.0, -5.0, -3.0, -1.5, 0.0, 1.5, 3.0, 5.0, 8.0, 12.0)
"""Pitch offsets tried by the fits' coordinate descent (cents from the excerpt's measured f0)."""
INDEX_GRID = torch.tensor([0.0] + [2.0 * 10 ** (-(99 - ol) * _LEVEL_STEP_DB / 20) for ol in range(39, 100, 4)])


ProgressFn = Callable[[str, float, float], None]


# -- excerpts -----------------------------------------------------------------------------------
def pick_excerpts(examples: list, n: int = 12, window: int = WINDOW, pitch_bins: int = 4) -> list[Excerpt]:
    """Steady voiced windows spread over pitch and loudness.

    Args:
        examples: :class:`ddx7.fit.train.Example` (audio, f0 per frame with 0 = unvoiced, loudness).
        n: how many excerpts at most.
        window: excerpt length in samples (a multiple of the 64-sample hop).
        pitch_bins: the pitch range is cut into this many quantile bins; each gives its loudest
            windows and one of middling loudness.

    Returns:
        excerpts (:class:`dx7tools.lattice.Excerpt`), at most ``n``: windows whose pitch stays
        within the first of :data:`STEADY_CENTS` that any window meets (each excerpt's
        ``pitch_spread_cents`` says how steady it is).

    Raises:
        DX7Error: no window of ``window`` samples is voiced throughout with its pitch within
            the last of :data:`STEADY_CENTS`.
    """
    frames = window // HOP
    voiced = []  # (log f0, loudness, example index, start frame, pitch spread in cents)
    for k, ex in enumerate(examples):
        f0 = np.asarray(ex.f0_hz, dtype=np.float64)
        loud = np.asarray(ex.loudness_db, dtype=np.float64)
        for start in range(0, len(f0) - frames + 1, frames // 2):
            seg = f0[start:start + frames]
            if np.all(seg > 0):
                voiced.append((float(np.log2(np.median(seg))), float(loud[start:start + frames].mean()), k, start,
                               float(np.log2(seg.max() / seg.min()) * 1200)))
    steadiest = min((c[4] for c in voiced), default=math.inf)
    limit = next((lim for lim in STEADY_CENTS if steadiest < lim), None)
    cands = [c for c in voiced if limit is not None and c[4] < limit]
    if not cands:
        raise DX7Error(f"no steady voiced stretch of {window / SAMPLE_RATE * 1000:.0f} ms in the corpus (voiced "
                       f"throughout, pitch within {STEADY_CENTS[-1]:g} cents; is it all noise, silence or very fast "
                       "passages?)")
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
    for _, _, k, start, spread in chosen:
        ex = examples[k]
        audio = ex.audio[start * HOP:(start + frames) * HOP]
        f0 = float(np.median(ex.f0_hz[start:start + frames]))
        out.append(make_excerpt(audio, f0, SAMPLE_RATE, f"{ex.name}@{start * HOP / SAMPLE_RATE:.2f}s", spread,
                                np.asarray(ex.f0_hz[start:start + frames], dtype=np.float64)))
    return out


# -- the synth fits (second and third stages) ------------------------------------------------
def log_power_db(audio: torch.Tensor) -> torch.Tensor:
    """Hann-windowed power spectrum in dB: (..., n) -> (..., n // 2 + 1)."""
    window = torch.hann_window(audio.shape[-1], periodic=False, dtype=torch.float64)
    return 10.0 * torch.log10(torch.fft.rfft(audio.double() * window).abs() ** 2 + 1e-20)


def spectral_distance(pred_db: torch.Tensor, target_db: torch.Tensor, floor_db: float = DISTANCE_FLOOR_DB) -> torch.Tensor:
    """Mean |dB difference| over bins, both spectra floored at ``floor_db`` below the target's
    peak and the prediction's gain matched peak to peak: (..., bins), (bins,) -> (...)."""
    top = target_db.max()
    floor = top - floor_db
    pred = pred_db - pred_db.max(-1, keepdim=True).values + top
    return (pred.clamp(min=floor) - target_db.clamp(min=floor)).abs().mean(-1)


class HeldNotes:
    """Renders held notes of one configuration, constant pitch and levels over the window, for
    many level settings at once (the fits' inner loop).

    Same controls and core as :class:`ddx7.synth.fm.FMSynth` (its :meth:`~FMSynth.get_controls`
    and :func:`ddx7.synth.core.fm_operators`), but the phases depend on the pitch alone, so a batch
    of level settings at one pitch shares them instead of accumulating them per setting.
    """

    def __init__(self, config: FixedConfig, frames: int):
        self.synth = FMSynth(config, SAMPLE_RATE, HOP)
        self.frames = frames
        self.beta = feedback_beta(self.synth.feedback.float(), config.algorithm)
        self.carriers = self.synth.carrier_mask[None, :, None]

    def _phases(self, pitch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, frames) Hz -> phase (P, 6, N) in cycles, gain (P, 6) (voicing and anti-aliasing)."""
        ones = torch.ones(len(pitch), self.frames, 6)
        controls = self.synth.get_controls(pitch.float(), ones)
        phase, _ = core.accumulate_phase(controls["freq"], controls["previous_freq"], SAMPLE_RATE, HOP,
                                         controls["state"].phase, torch.float32)
        return phase, 2.0 * controls["amp"][:, :, -1]

    def render(self, pitch: torch.Tensor, index: torch.Tensor, grad: bool = False) -> torch.Tensor:
        """pitch (E, K) or (E, K, frames) Hz, index (E, K, 6) -> audio (E, K, N) (1.0 = a carrier
        at level 99); ``grad``: keep the graph for gradients with respect to ``index``."""
        e, k = pitch.shape[:2]
        n = self.frames * HOP
        if pitch.dim() == 2:
            pitch = pitch[..., None].expand(e, k, self.frames)
        if bool((pitch == pitch[:, :1]).all()):
            phase, gain = self._phases(pitch[:, 0])
            phase = phase[:, None].expand(e, k, 6, n).reshape(e * k, 6, n)
            gain = gain[:, None].expand(e, k, 6).reshape(e * k, 6)
        else:
            phase, gain = self._phases(pitch.reshape(e * k, self.frames))
        amp = (0.5 * index.reshape(e * k, 6).float() * gain)[:, :, None].expand(-1, -1, n)
        memory = torch.zeros(e * k, 2, dtype=torch.float64)
        with torch.set_grad_enabled(grad):
            outs, _ = core.fm_operators(phase, amp, self.synth.algorithm, self.beta.expand(e * k), memory)
        return (outs * self.carriers).sum(1).reshape(e, k, n)


def fit_distance(config: FixedConfig, excerpts: list[Excerpt], *, octave: int = 0, n_random: int = 24,
                 sweeps: int = 1, refine: int = 0, seed: int = 0, starts: np.ndarray | None = None,
                 feedback_cap: bool = True) -> float:
    """Second-stage score: how closely the synth with ``config`` can reproduce the excerpts.

    For every excerpt at once: ``n_random`` random grid points of the six indexes and the
    ``starts`` (E, S, 6), more starting points per excerpt (indexes, 2 = output level 99: where
    the configuration's voices put their levels, :func:`dx7tools.lattice.voice_starts`); the
    best one refined by ``sweeps`` rounds of coordinate descent (the pitch over
    :data:`PITCH_CENTS` from the excerpt's f0, on a flat pitch or on its ``pitch_contour``, then
    each operator in turn over the whole :data:`INDEX_GRID`), levels held constant over the
    128 ms window. ``refine`` steps of gradient descent on the levels (log scale, Adam) then
    leave the grid: the true configuration of a steady sound can come arbitrarily close, a wrong
    one cannot. ``octave``: the note pitch is ``f0 * 2**octave`` (see
    :func:`dx7tools.lattice.lattice_cost`). Every index stays within what a DDX7 model of the
    configuration can play (:func:`ddx7.synth.feedback.index_ceiling`: level 99, and with
    ``feedback_cap`` the feedback operator below its chaotic regime, as ``dx7tools fit`` trains
    by default): a score must not count on a sound the trained model cannot make.

    Returns:
        the mean over excerpts of the best :func:`spectral_distance` (dB); lower is better.
    """
    if not excerpts:
        raise DX7Error("no excerpts to fit")
    n_ex = len(excerpts)
    frames = len(excerpts[0].audio) // HOP
    held = HeldNotes(config, frames)
    target = log_power_db(torch.from_numpy(np.stack([e.audio for e in excerpts])))   # (E, bins)
    f0 = torch.tensor([e.f0_hz * 2.0 ** octave for e in excerpts], dtype=torch.float64)
    # The pitch coordinate: an offset in cents, on a flat pitch or on the window's tracked
    # contour (a vibrato or glide smears high partials, which a flat pitch cannot match).
    contour = torch.ones(n_ex, frames, dtype=torch.float64)
    for k, e in enumerate(excerpts):
        if e.pitch_contour is not None and len(e.pitch_contour) == frames:
            contour[k] = torch.from_numpy(np.asarray(e.pitch_contour, dtype=np.float64))
    grid = INDEX_GRID
    ceiling = index_ceiling(config.algorithm, config.feedback, feedback_cap, float(grid.max())).to(grid.dtype)
    # each operator's grid below its ceiling, the ceiling itself once (not one render per capped point)
    op_levels = [torch.unique(grid.clamp(max=c)) for c in ceiling]
    cents_grid = torch.tensor(PITCH_CENTS, dtype=torch.float64)
    follow_grid = torch.zeros(len(PITCH_CENTS), dtype=torch.bool)
    if bool((contour != 1.0).any()):
        cents_grid = torch.cat([cents_grid, cents_grid])
        follow_grid = torch.cat([follow_grid, torch.ones(len(PITCH_CENTS), dtype=torch.bool)])

    def pitch_of(cents: torch.Tensor, follow: torch.Tensor) -> torch.Tensor:
        # (E, K) cents, (E, K) bool -> (E, K, frames) Hz
        flat = (f0[:, None] * torch.exp2(cents / 1200.0))[..., None]
        return (flat * torch.where(follow[..., None], contour[:, None, :], torch.ones(()))).float()

    def evaluate(index: torch.Tensor, cents: torch.Tensor, follow: torch.Tensor | None = None) -> torch.Tensor:
        # (E, K, 6) indexes, (E, K) pitch offsets in cents (on the contour where ``follow``) -> (E, K) distances
        follow = torch.zeros(cents.shape, dtype=torch.bool) if follow is None else follow
        pred = log_power_db(held.render(pitch_of(cents, follow), index))
        return torch.stack([spectral_distance(pred[e], target[e]) for e in range(n_ex)])

    rows = torch.arange(n_ex)
    gen = torch.Generator().manual_seed(seed)
    start = grid[torch.randint(len(grid), (n_ex, n_random, 6), generator=gen)]
    if starts is not None and np.size(starts):
        start = torch.cat([start, torch.as_tensor(np.asarray(starts), dtype=start.dtype)], 1)
    start = torch.minimum(start, ceiling)
    dist = evaluate(start, torch.zeros(start.shape[:2], dtype=torch.float64))
    best_d, best_k = dist.min(1)
    current = start[rows, best_k]                                                        # (E, 6)
    cents = torch.zeros(n_ex, dtype=torch.float64)                                       # (E,)
    follow = torch.zeros(n_ex, dtype=torch.bool)
    for _ in range(sweeps):
        # A pitch tracker's few cents put high partials a bin off, which the comparison would
        # punish like a wrong configuration: the pitch is a coordinate too, within a few cents.
        d = evaluate(current[:, None, :].expand(-1, len(cents_grid), 6), cents_grid[None, :].expand(n_ex, -1),
                     follow_grid[None, :].expand(n_ex, -1))
        d_min, k = d.min(1)
        better = d_min < best_d
        cents = torch.where(better, cents_grid[k], cents)
        follow = torch.where(better, follow_grid[k], follow)
        best_d = torch.minimum(best_d, d_min)
        for op in range(6):
            levels = op_levels[op]
            trial = current[:, None, :].repeat(1, len(levels), 1)
            trial[:, :, op] = levels
            d = evaluate(trial, cents[:, None].expand(-1, len(levels)), follow[:, None].expand(-1, len(levels)))
            d_min, k = d.min(1)
            better = d_min < best_d
            current = torch.where(better[:, None], trial[rows, k], current)
            best_d = torch.minimum(best_d, d_min)
    if refine:
        pitch = pitch_of(cents[:, None], follow[:, None])
        log_index = torch.log(current.clamp(min=1e-3)).float().requires_grad_()
        opt = torch.optim.Adam([log_index], lr=REFINE_LR)
        for _ in range(refine):
            index = torch.minimum(torch.exp(log_index), ceiling.float())
            pred = log_power_db(held.render(pitch, index[:, None], grad=True))[:, 0]
            d = torch.stack([spectral_distance(pred[e], target[e]) for e in range(n_ex)])
            best_d = torch.minimum(best_d, d.detach())
            opt.zero_grad()
            d.sum().backward()
            opt.step()
    return float(best_d.mean())


PROBE_STEPS = 30
PROBE_LR = 0.3


def descent_probe(config: FixedConfig, excerpts: list[Excerpt], *, octave: int = 0, steps: int = PROBE_STEPS,
                  lr: float = PROBE_LR, feedback_cap: bool = True, imax: float = 2.0) -> float:
    """A diagnostic of trainability, not part of the ranking: how far plain gradient descent
    gets from where a new DDX7 model starts.

    Per excerpt, six levels held constant over the window start where a new model starts them
    (:func:`ddx7.fit.models.start_logits`: carriers at half their ceiling, modulators at
    :data:`~ddx7.fit.models.MODULATOR_START`) and follow ``steps`` Adam steps (``lr`` on the
    logits) on the training loss (:func:`ddx7.fit.loss.multiscale_spectral_loss`, absolute level:
    a configuration that starts far too loud can silence its carriers, as training can). The
    fits of :func:`fit_distance` search widely instead and say what the configuration *can*
    reproduce; this says what a descent from the model's start *does* reach.

    ``imax``: the model's largest index (``dx7tools fit``'s default, 2).

    Returns:
        the mean over excerpts of the lowest training loss reached.
    """
    from ddx7.fit.loss import multiscale_spectral_loss
    from ddx7.fit.models import start_logits

    if not excerpts:
        raise DX7Error("no excerpts to probe")
    held = HeldNotes(config, len(excerpts[0].audio) // HOP)
    ceiling = index_ceiling(config.algorithm, config.feedback, feedback_cap, imax).float()
    target = torch.from_numpy(np.stack([e.audio for e in excerpts])).float()           # (E, N)
    pitch = torch.tensor([[e.f0_hz * 2.0 ** octave] for e in excerpts])                 # (E, 1) Hz
    logits = start_logits(held.synth.carrier_mask).expand(len(excerpts), 6).clone().requires_grad_()
    opt = torch.optim.Adam([logits], lr=lr)
    best = torch.full((len(excerpts),), math.inf)
    for step in range(steps + 1):
        pred = held.render(pitch, (ceiling * torch.sigmoid(logits))[:, None], grad=True)[:, 0]
        loss = torch.stack([multiscale_spectral_loss(pred[k:k + 1], target[k:k + 1]) for k in range(len(excerpts))])
        best = torch.minimum(best, loss.detach())
        if step == steps:
            break
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    return float(best.mean())


# -- the ranking ---------------------------------------------------------------------------------
@dataclass
class Ranking:
    """Result of :func:`rank`.

    Attributes:
        corpus: corpus name.
        rows: one dict per configuration, best first: ``rank``, ``voices`` (library ids),
            ``names``, ``algorithm``, ``ratios`` (OP1..OP6; a fixed operator's entry is
            ``"<Hz>Hz"``), ``feedback``, ``octave``, ``score`` (lower is better; comparable
            within a stage), ``stage`` (4, 3, 2 or 1),
            ``first_stage`` (the stage-1 cost), ``config`` (:meth:`FixedConfig.to_dict`),
            ``ratio_factor`` (1, or for a copy of the voices' configuration placed on its lowest
            carrier, :func:`dx7tools.lattice.placed_on_carrier`, the factor its ratios were
            multiplied by: ``ratios`` and ``config`` are the placed ones, what DDX7 trains).
            A voice can therefore appear in two rows.
        complete: False when the budget stopped a fitting stage before its planned candidates.
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

    def best(self) -> tuple[FixedConfig, dict]:
        """The best row DDX7 can use and its configuration, placed at the row's octave (a row
        whose octave move is not exact, see :meth:`FixedConfig.transposed`, is passed over).

        Raises:
            DX7Error: no row can be used.
        """
        for row in self.rows:
            try:
                return FixedConfig.from_dict(row["config"]).transposed(int(row.get("octave", 0))), row
            except DX7Error:
                continue
        raise DX7Error(f"no ranked configuration for corpus {self.corpus!r} can be used")

    def top_config(self) -> FixedConfig:
        """:meth:`best`'s configuration, as DDX7 plays it."""
        return self.best()[0]


def _ratio_cells(config: FixedConfig) -> list:
    return [f"{config.fixed_hz[i]:.4g}Hz" if config.mode[i] else round(config.ratios[i], 4) for i in range(6)]


def _row(group: ConfigGroup, score: float, stage: int, first: float, octave: int) -> dict:
    c = group.config
    return {"voices": list(group.voice_ids), "names": list(group.names), "algorithm": c.algorithm,
            "ratios": _ratio_cells(c), "feedback": c.feedback, "octave": int(octave), "score": round(float(score), 4),
            "stage": stage, "first_stage": round(float(first), 4), "config": c.to_dict(),
            "ratio_factor": round(float(group.ratio_factor), 6)}


def rank(home, corpus: str, *, algorithm: int | None = None, budget: float = DEFAULT_BUDGET,
         candidates: int = DEFAULT_CANDIDATES, crepe: str = "tiny", crepe_hop: int | None = None,
         excerpts: int = 12, fit_all: bool | None = None,
         groups: list[ConfigGroup] | None = None, progress: ProgressFn | None = None,
         save: bool = True, start_from_voices: bool = True, feedback_cap: bool = True) -> Ranking:
    """Rank the library's fixed configurations for ``corpus``.

    Args:
        home: data home (library, corpora, rankings).
        corpus: corpus name.
        algorithm: rank only voices of this DX7 algorithm.
        budget: seconds for the ranking once the corpus's features are ready (they are computed
            once per corpus and cached). The first stage always completes; the fits stop when
            the budget is spent.
        candidates: configurations given the full fit at most (the quick fit's best).
        crepe: CREPE model for f0 (``tiny`` is 30x faster than ``full`` and precise enough here).
        crepe_hop: run CREPE every this many samples (see ``dx7tools fit --crepe-hop``).
        excerpts: corpus excerpts scored.
        fit_all: give every configuration the full fit (True), or quick-fit first and fully fit
            only the best ``candidates`` (False); None (default): fit all when the budget
            allows it, timed on the first full fit.
        groups: configurations to rank instead of the library's (tests, benchmarks).
        progress: called as ``progress(stage_name, done, total)``.
        save: write ``rankings/CORPUS.json`` in the data home (atomic) when the run completes.
        start_from_voices: seed the fits with the voices' own envelope levels
            (:func:`dx7tools.lattice.voice_starts`); False: random starts only.
        feedback_cap: the fits keep each feedback operator below its chaotic regime, as
            ``dx7tools fit`` does by default (``--no-feedback-cap``: rank for runs without it).

    Raises:
        DX7Error: empty library (or no voice of ``algorithm``), unknown corpus, no voiced
            frames, bad arguments.
    """
    from ddx7.fit.train import FitConfig, load_examples

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
    n_voices = len({v for g in groups for v in g.voice_ids})   # a placed copy's voices are counted once
    cfg = FitConfig(corpus=corpus, crepe=crepe, crepe_hop=crepe_hop)
    cfg.check()
    data = load_examples(home, corpus, cfg, progress=(lambda d, t: progress("features", d, t)) if progress else None)
    chosen = pick_excerpts(data["train"] + data["valid"], n=excerpts)
    t_features = time.perf_counter() - t0
    t0 = time.perf_counter()   # features are computed once per corpus and cached: not in the budget

    t1 = time.perf_counter()
    per_octave = first_stage_costs(groups, chosen,
                                   progress=(lambda d, t: progress("first stage", d, t)) if progress else None)
    best_octave = np.argmin(per_octave, axis=1)
    cost = per_octave[np.arange(len(groups)), best_octave]
    # The lattice cannot tell reliably which octave a configuration sits at (a weak ratio-0.5
    # modulator barely shows), so the fits try every placement the lattice finds nearly as good.
    placements = [[OCTAVES[j] for j in np.argsort(per_octave[i], kind="stable")
                   if per_octave[i, j] <= cost[i] + OCTAVE_MARGIN] for i in range(len(groups))]
    octave = np.array([p[0] for p in placements])
    t_first = time.perf_counter() - t1
    order = [int(i) for i in np.argsort(cost, kind="stable")]

    level_cache: dict = {}

    def fit(i: int, excerpts_: list[Excerpt], n_starts: int = FIT_VOICE_STARTS, **kw) -> float:
        best = math.inf
        n_starts = n_starts if start_from_voices else 0
        for o in placements[i]:
            # the voices play their keys at the note pitch times the copy's ratio factor
            key_ratio = 2.0 ** o * groups[i].ratio_factor
            starts = np.stack([voice_starts(groups[i].voices, e.f0_hz * key_ratio, limit=n_starts, cache=level_cache)
                               for e in excerpts_])
            d = fit_distance(groups[i].config, excerpts_, octave=o, starts=starts, feedback_cap=feedback_cap, **kw)
            if d < best:
                best, octave[i] = d, o
        placements[i] = [int(octave[i])]    # later stages refine the placement found here
        return best

    fitted = chosen[::2] if len(chosen) > SECOND_STAGE_EXCERPTS else chosen
    quick_set = chosen[::4] if len(chosen) > 3 else chosen
    quick: dict[int, float] = {}
    full: dict[int, float] = {}
    final: dict[int, float] = {}
    # Time one full fit (the lattice's favourite, after a warm-up of the synth) to decide whether
    # every configuration can have one: on libraries of a few hundred configurations the quick
    # stage would only lose accuracy.
    stopped = False
    t2 = time.perf_counter()
    if time.perf_counter() - t0 < budget:
        fit_distance(groups[order[0]].config, chosen[:1], n_random=1, sweeps=1, refine=1)   # every code path
        t2 = time.perf_counter()
        tried = len(placements[order[0]])
        full[order[0]] = fit(order[0], fitted)
        per_full = (time.perf_counter() - t2) / tried
    else:
        stopped, per_full = True, math.inf
    n_fits = sum(len(placements[i]) for i in order)
    reserve = FINAL_CANDIDATES * per_full * FINAL_COST
    direct = bool(full) and (time.perf_counter() - t0 + n_fits * per_full + reserve <= budget
                             if fit_all is None else fit_all)

    # Second stage (large libraries): a quick fit (3 excerpts, a short search) in first-stage
    # order, while the budget leaves room for the full fits of the best so far.
    t_quick = 0.0
    if not direct and full:
        tq = time.perf_counter()
        for i in order[1:]:
            per = (time.perf_counter() - tq) / len(quick) if quick else per_full / QUICK_SPEEDUP
            left = min(candidates, len(quick) + 1) * per_full + reserve
            if time.perf_counter() - t0 + per * len(placements[i]) + left > budget:
                stopped = len(quick) < len(order) - 1 and len(quick) < candidates
                break
            quick[i] = fit(i, quick_set, n_random=8, n_starts=QUICK_VOICE_STARTS)
            if progress:
                progress("second stage (quick fit)", len(quick), len(groups))
        t_quick = time.perf_counter() - tq

    # Third stage: the full fit (6 excerpts) of every configuration, or of the quick fit's best.
    t3 = time.perf_counter()
    todo = order if direct else sorted(quick, key=lambda i: (quick[i], cost[i]))[:candidates]
    planned = len(set(todo) | set(full))
    for i in todo:
        if i in full:
            continue
        per = (time.perf_counter() - t3) / (len(full) - 1) if len(full) > 1 else per_full
        if time.perf_counter() - t0 + per * len(placements[i]) + (0.0 if direct else reserve) > budget:
            stopped = True
            break
        full[i] = fit(i, fitted)
        if progress:
            progress("third stage (full fit)", len(full), planned)
    t_full = time.perf_counter() - t3 + (t3 - t2 - t_quick)

    # Fourth stage: the closest few are separated on all the excerpts, their levels refined off
    # the grid (the full fit's distances of near-identical configurations differ by its grid
    # and search noise; the true configuration of a steady sound gains most from refinement).
    t4 = time.perf_counter()
    by_full = sorted(full, key=lambda i: (full[i], quick.get(i, 0.0), cost[i]))
    for i in by_full[:FINAL_MAX] if len(by_full) > 1 else []:
        per = (time.perf_counter() - t4) / len(final) if final else per_full * FINAL_COST
        planned_final = len(final) < FINAL_CANDIDATES   # beyond them the final fit is a bonus
        if time.perf_counter() - t0 + per > (budget if planned_final else FINAL_SHARE * budget):
            stopped = stopped or planned_final
            break
        final[i] = fit(i, chosen, refine=FINAL_REFINE)
        if progress:
            progress("fourth stage (final fit)", len(final), min(FINAL_MAX, len(by_full)))
    # Tie-break: the best final-fit scores differ by less than the search's own noise, so the
    # tied rows get more random starts; each keeps its best (closest reached) score.
    tie_refits = 0
    for seed in range(1, TIE_SEEDS + 1) if len(final) > 1 else []:
        best = min(final.values())
        tied = [i for i in sorted(final, key=lambda i: final[i]) if final[i] <= best * (1 + TIE_MARGIN) + TIE_DB]
        for i in tied if len(tied) > 1 else []:
            per = (time.perf_counter() - t4) / (len(final) + tie_refits)
            if time.perf_counter() - t0 + 1.5 * per > budget:   # a margin: this fit may take longer than most
                break
            final[i] = min(final[i], fit(i, chosen, refine=FINAL_REFINE, seed=seed))
            tie_refits += 1
            if progress:
                progress("tie-break (final fit, other starts)", tie_refits, len(tied) * TIE_SEEDS)
    t_final = time.perf_counter() - t4

    fourth = sorted(final, key=lambda i: (final[i], full[i]))
    third = [i for i in by_full if i not in final]
    second = [i for i in sorted(quick, key=lambda i: (quick[i], cost[i])) if i not in full]
    rest = [i for i in order if i not in quick and i not in full]
    rows = ([_row(groups[i], final[i], 4, cost[i], octave[i]) for i in fourth]
            + [_row(groups[i], full[i], 3, cost[i], octave[i]) for i in third]
            + [_row(groups[i], quick[i], 2, cost[i], octave[i]) for i in second]
            + [_row(groups[i], cost[i], 1, cost[i], octave[i]) for i in rest])
    for r, row in enumerate(rows, 1):
        row["rank"] = r
    complete = bool(full) and not stopped
    if complete:
        how = "full fit of every one" if direct else f"quick fit over the best {len(quick)}, full fit over the best {len(full)}"
        message = (f"lattice over {len(groups)} configurations ({n_voices} voices), {how}, final fit of the "
                   f"best {len(final)}" + (f", {tie_refits} tie-break fits" if tie_refits else ""))
    elif full:
        message = (f"the budget of {budget:g} s ran out after {len(full)} of {planned} full fits and "
                   f"{len(final)} final fits; ranks {len(full) + 1} and beyond are by the quick fit or the lattice "
                   "only (raise --budget)")
    else:
        message = (f"the budget of {budget:g} s ran out before the fits; this is the first-stage (lattice) ranking "
                   "only (raise --budget)")
    spread = max(e.pitch_spread_cents for e in chosen)
    if spread >= STEADY_CENTS[0]:
        message += (f"; no corpus window holds its pitch within {STEADY_CENTS[0]:g} cents, the excerpts' pitch moves by "
                    f"up to {spread:.0f} (a trill or wide vibrato), which the fits hold still: scores are less certain")
    stats = {"voices": n_voices, "configurations": len(groups), "excerpts": len(chosen),
             "excerpt_pitch_spread_cents": round(spread, 1), "feedback_cap": bool(feedback_cap),
             "quick_fits": len(quick), "full_fits": len(full), "full_fit_excerpts": len(fitted),
             "features_s": round(t_features, 2), "first_stage_s": round(t_first, 3),
             "quick_fit_s": round(t_quick, 2), "full_fit_s": round(t_full, 2), "final_fits": len(final),
             "tie_break_fits": tie_refits,
             "final_fit_s": round(t_final, 2),
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
    from ddx7.data.corpus import check_name

    path = _rankings_dir(home) / f"{check_name(ranking.corpus)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(ranking.to_dict(), indent=1).encode())
    return path


def load_ranking(home, corpus: str) -> Ranking | None:
    """The saved ranking of ``corpus``, or None."""
    from ddx7.data.corpus import check_name

    path = _rankings_dir(home) / f"{check_name(corpus)}.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return Ranking(data["corpus"], data["rows"], bool(data["complete"]), data["message"], data.get("stats", {}))
    except (ValueError, KeyError, TypeError) as exc:
        raise DX7Error(f"unreadable ranking ({exc})", str(path)) from None


def cached_top_config(home, corpus: str) -> FixedConfig | None:
    """The top usable configuration of the saved ranking of ``corpus`` (:meth:`Ranking.best`, at
    its octave), or None if none was made."""
    ranking = load_ranking(home, corpus)
    return ranking.top_config() if ranking and ranking.rows else None
