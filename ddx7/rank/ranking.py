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

import hashlib
import json
import math
import time
from contextlib import contextmanager
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
RERANK_BUDGET = 600.0
"""The budget suggested when a ranking stopped before its fits (seconds)."""
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
_GRID_DB_PER_LEVEL = 0.75  # INDEX_GRID's spacing only, not STEP_DB (0.7526): kept round so the grid stays as before
REFINE_LR = 0.05
"""Adam step on the log index of the fits' gradient refinement (about 0.4 dB)."""
PITCH_CENTS = (-12.0, -8.0, -5.0, -3.0, -1.5, 0.0, 1.5, 3.0, 5.0, 8.0, 12.0)
"""Pitch offsets tried by the fits' coordinate descent (cents from the excerpt's measured f0)."""
INDEX_GRID = torch.tensor([0.0] + [2.0 * 10 ** (-(99 - ol) * _GRID_DB_PER_LEVEL / 20) for ol in range(39, 100, 4)])


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


@dataclass
class _FitTargets:
    """The excerpts as :func:`fit_distance` compares against them: spectra, pitches and contours."""

    held: HeldNotes
    target: torch.Tensor     # (E, bins) dB
    f0: torch.Tensor         # (E,) Hz, the octave applied
    contour: torch.Tensor    # (E, frames): the pitch contour relative to f0 (ones where flat)

    @property
    def n_ex(self) -> int:
        """How many excerpts."""
        return len(self.f0)

    def pitch_of(self, cents: torch.Tensor, follow: torch.Tensor) -> torch.Tensor:
        """(E, K) cents, (E, K) bool (on the contour) -> (E, K, frames) Hz."""
        flat = (self.f0[:, None] * torch.exp2(cents / 1200.0))[..., None]
        return (flat * torch.where(follow[..., None], self.contour[:, None, :], torch.ones(()))).float()

    def distances(self, pred: torch.Tensor) -> torch.Tensor:
        """(E, ...) predicted spectra (dB) -> each excerpt's :func:`spectral_distance` to its target."""
        return torch.stack([spectral_distance(pred[e], self.target[e]) for e in range(self.n_ex)])

    def evaluate(self, index: torch.Tensor, cents: torch.Tensor, follow: torch.Tensor | None = None) -> torch.Tensor:
        """(E, K, 6) indexes, (E, K) pitch offsets in cents (on the contour where ``follow``) -> (E, K) distances."""
        follow = torch.zeros(cents.shape, dtype=torch.bool) if follow is None else follow
        return self.distances(log_power_db(self.held.render(self.pitch_of(cents, follow), index)))


def _fit_targets(config: FixedConfig, excerpts: list[Excerpt], octave: int) -> _FitTargets:
    """The excerpts' spectra, note pitches and tracked contours, and the held notes that render trials."""
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
    return _FitTargets(held, target, f0, contour)


def _pitch_grid(contour: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The pitch coordinate's trials: :data:`PITCH_CENTS` flat, and again on the contour where there is one."""
    cents_grid = torch.tensor(PITCH_CENTS, dtype=torch.float64)
    follow_grid = torch.zeros(len(PITCH_CENTS), dtype=torch.bool)
    if bool((contour != 1.0).any()):
        cents_grid = torch.cat([cents_grid, cents_grid])
        follow_grid = torch.cat([follow_grid, torch.ones(len(PITCH_CENTS), dtype=torch.bool)])
    return cents_grid, follow_grid


def _best_start(fit: _FitTargets, ceiling: torch.Tensor, n_random: int, seed: int,
                starts: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each excerpt's best starting point (random grid points and ``starts``) and its distance."""
    grid = INDEX_GRID
    gen = torch.Generator().manual_seed(seed)
    start = grid[torch.randint(len(grid), (fit.n_ex, n_random, 6), generator=gen)]
    if starts is not None and np.size(starts):
        start = torch.cat([start, torch.as_tensor(np.asarray(starts), dtype=start.dtype)], 1)
    start = torch.minimum(start, ceiling)
    dist = fit.evaluate(start, torch.zeros(start.shape[:2], dtype=torch.float64))
    best_d, best_k = dist.min(1)
    return start[torch.arange(fit.n_ex), best_k], best_d                                 # (E, 6), (E,)


def _coordinate_descent(fit: _FitTargets, current: torch.Tensor, best_d: torch.Tensor, op_levels: list,
                        sweeps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``sweeps`` rounds over the pitch, then each operator's levels; returns (indexes, distances, cents, follow)."""
    n_ex = fit.n_ex
    rows = torch.arange(n_ex)
    cents_grid, follow_grid = _pitch_grid(fit.contour)
    cents = torch.zeros(n_ex, dtype=torch.float64)                                       # (E,)
    follow = torch.zeros(n_ex, dtype=torch.bool)
    for _ in range(sweeps):
        # A pitch tracker's few cents put high partials a bin off, which the comparison would
        # punish like a wrong configuration: the pitch is a coordinate too, within a few cents.
        d = fit.evaluate(current[:, None, :].expand(-1, len(cents_grid), 6), cents_grid[None, :].expand(n_ex, -1),
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
            d = fit.evaluate(trial, cents[:, None].expand(-1, len(levels)), follow[:, None].expand(-1, len(levels)))
            d_min, k = d.min(1)
            better = d_min < best_d
            current = torch.where(better[:, None], trial[rows, k], current)
            best_d = torch.minimum(best_d, d_min)
    return current, best_d, cents, follow


def _refine_levels(fit: _FitTargets, current: torch.Tensor, best_d: torch.Tensor, cents: torch.Tensor,
                   follow: torch.Tensor, ceiling: torch.Tensor, refine: int) -> torch.Tensor:
    """``refine`` Adam steps on the log levels, off the grid; returns the best distances reached."""
    pitch = fit.pitch_of(cents[:, None], follow[:, None])
    log_index = torch.log(current.clamp(min=1e-3)).float().requires_grad_()
    opt = torch.optim.Adam([log_index], lr=REFINE_LR)
    for _ in range(refine):
        index = torch.minimum(torch.exp(log_index), ceiling.float())
        d = fit.distances(log_power_db(fit.held.render(pitch, index[:, None], grad=True))[:, 0])
        best_d = torch.minimum(best_d, d.detach())
        opt.zero_grad()
        d.sum().backward()
        opt.step()
    return best_d


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
    fit = _fit_targets(config, excerpts, octave)
    grid = INDEX_GRID
    ceiling = index_ceiling(config.algorithm, config.feedback, feedback_cap, float(grid.max())).to(grid.dtype)
    # each operator's grid below its ceiling, the ceiling itself once (not one render per capped point)
    op_levels = [torch.unique(grid.clamp(max=c)) for c in ceiling]
    current, best_d = _best_start(fit, ceiling, n_random, seed, starts)
    current, best_d, cents, follow = _coordinate_descent(fit, current, best_d, op_levels, sweeps)
    if refine:
        best_d = _refine_levels(fit, current, best_d, cents, follow, ceiling, refine)
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

    def pick(self) -> tuple[FixedConfig, dict]:
        """:meth:`best`, if it is a pick to train on: a complete ranking's, or an incomplete one's
        whose row went through the fits (stage 3 or 4).

        Raises:
            DX7Error: the ranking stopped after its first stage, so its order is the lattice's
                alone (the message says how to rank with more time); no row can be used.
        """
        config, row = self.best()
        if not self.complete and int(row.get("stage", 1)) < 3:
            name = (row.get("names") or [config.name])[0].strip()
            raise DX7Error(f"the saved ranking of {self.corpus!r} stopped after its first stage (its budget ran out "
                           f"before the fits), so its top voice {name!r} is ordered by the lattice alone; rank again "
                           f"with more time: dx7tools rank --corpus {self.corpus} --budget {RERANK_BUDGET:g}")
        return config, row

    def made_for(self, voice_ids, *, feedback_cap: bool) -> bool:
        """Whether this ranking covers exactly the library voices ``voice_ids`` (no algorithm
        filter) for runs with or without the feedback cap; rankings saved before these were
        recorded are not."""
        return (bool(self.stats.get("feedback_cap", False)) == bool(feedback_cap)
                and self.stats.get("algorithm") is None
                and self.stats.get("library_key") == voices_key(voice_ids))


def voices_key(voice_ids) -> str:
    """A short key of a set of library voice ids (what a ranking ranked)."""
    text = ",".join(str(int(i)) for i in sorted(set(voice_ids)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _ratio_cells(config: FixedConfig) -> list:
    return [f"{config.fixed_hz[i]:.4g}Hz" if config.mode[i] else round(config.ratios[i], 4) for i in range(6)]


def _row(group: ConfigGroup, score: float, stage: int, first: float, octave: int) -> dict:
    c = group.config
    return {"voices": list(group.voice_ids), "names": list(group.names), "algorithm": c.algorithm,
            "ratios": _ratio_cells(c), "feedback": c.feedback, "octave": int(octave), "score": round(float(score), 4),
            "stage": stage, "first_stage": round(float(first), 4), "config": c.to_dict(),
            "ratio_factor": round(float(group.ratio_factor), 6)}


class Budget:
    """The seconds a ranking may spend, counted from :meth:`restart`, and the time each stage took.

    ``timings`` maps a stage's name to its seconds (summed over its :meth:`stage` blocks).
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.perf_counter()
        self.timings: dict[str, float] = {}

    def restart(self) -> None:
        """Start counting now (what came before is not charged to the budget)."""
        self.start = time.perf_counter()

    def spent(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.spent()

    def allows(self, seconds: float, share: float = 1.0) -> bool:
        """Whether ``seconds`` more still end within ``share`` of the budget."""
        return self.spent() + seconds <= share * self.seconds

    @contextmanager
    def stage(self, name: str):
        """Time a block as part of stage ``name``; yields a function giving the block's seconds so far."""
        started = time.perf_counter()

        def elapsed() -> float:
            return time.perf_counter() - started

        try:
            yield elapsed
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + elapsed()


class Placements:
    """The octaves at which each configuration is fitted, from the first stage's costs.

    The lattice cannot tell reliably which octave a configuration sits at (a weak ratio-0.5
    modulator barely shows), so a configuration's first fit tries every octave whose first-stage
    cost is within :data:`OCTAVE_MARGIN` of its best; later fits keep the octave that fit found.

    Attributes:
        cost: (configurations,) the best first-stage cost of each.
        order: configuration indexes by first-stage cost, best first.
        octaves: per configuration, the octaves its next fit tries.
        octave: (configurations,) per configuration, the octave of its best fit so far (the
            lattice's best before any fit).
    """

    def __init__(self, per_octave: np.ndarray):
        best = np.argmin(per_octave, axis=1)
        self.cost = per_octave[np.arange(len(per_octave)), best]
        self.order = [int(i) for i in np.argsort(self.cost, kind="stable")]
        self.octaves = [[OCTAVES[j] for j in np.argsort(row, kind="stable") if row[j] <= c + OCTAVE_MARGIN]
                        for row, c in zip(per_octave, self.cost)]
        self.octave = np.array([o[0] for o in self.octaves])


class Fitter:
    """Fits configuration ``i`` of ``groups`` (:func:`fit_distance`) at its :class:`Placements`,
    seeded with its voices' own levels, and narrows its placement to the octave that fit best."""

    def __init__(self, groups: list[ConfigGroup], placements: Placements, *, start_from_voices: bool,
                 feedback_cap: bool):
        self.groups = groups
        self.placements = placements
        self.start_from_voices = start_from_voices
        self.feedback_cap = feedback_cap
        self.level_cache: dict = {}

    def fit(self, i: int, excerpts: list[Excerpt], n_starts: int = FIT_VOICE_STARTS, **kw) -> float:
        """The best :func:`fit_distance` of configuration ``i`` over its octaves (``kw`` go to it)."""
        group, place = self.groups[i], self.placements
        n_starts = n_starts if self.start_from_voices else 0
        best = math.inf
        for o in place.octaves[i]:
            key_ratio = 2.0 ** o * group.ratio_factor   # the voices play their keys at note pitch x ratio factor
            starts = np.stack([voice_starts(group.voices, e.f0_hz * key_ratio, limit=n_starts, cache=self.level_cache)
                               for e in excerpts])
            d = fit_distance(group.config, excerpts, octave=o, starts=starts, feedback_cap=self.feedback_cap, **kw)
            if d < best:
                best, place.octave[i] = d, o
        place.octaves[i] = [int(place.octave[i])]
        return best


@dataclass
class Search:
    """What the fitting stages share: the excerpts, the budget, and every stage's scores so far."""

    groups: list[ConfigGroup]
    excerpts: list[Excerpt]
    budget: Budget
    placements: Placements
    fitter: Fitter
    candidates: int
    progress: ProgressFn | None
    quick: dict[int, float] = field(default_factory=dict)
    full: dict[int, float] = field(default_factory=dict)
    final: dict[int, float] = field(default_factory=dict)
    per_full: float = math.inf       # seconds per placement of a full fit, timed on the first one
    direct: bool = False             # every configuration gets the full fit (no quick fits)
    planned_full: int = 0
    tie_refits: int = 0
    stopped: bool = False            # the budget stopped a stage before its planned candidates

    @property
    def fitted(self) -> list[Excerpt]:
        """The full fit's excerpts (every other one beyond :data:`SECOND_STAGE_EXCERPTS`)."""
        return self.excerpts[::2] if len(self.excerpts) > SECOND_STAGE_EXCERPTS else self.excerpts

    @property
    def quick_set(self) -> list[Excerpt]:
        """The quick fit's excerpts (every fourth one)."""
        return self.excerpts[::4] if len(self.excerpts) > 3 else self.excerpts

    @property
    def reserve(self) -> float:
        """Seconds kept for the planned final fits."""
        return FINAL_CANDIDATES * self.per_full * FINAL_COST

    def report(self, stage: str, done: int, total: int) -> None:
        if self.progress:
            self.progress(stage, done, total)

    def by_full(self) -> list[int]:
        """Fully fitted configurations, best first."""
        return sorted(self.full, key=lambda i: (self.full[i], self.quick.get(i, 0.0), self.placements.cost[i]))

    def by_quick(self) -> list[int]:
        return sorted(self.quick, key=lambda i: (self.quick[i], self.placements.cost[i]))


def _corpus_excerpts(home, corpus: str, cfg, n: int, progress: ProgressFn | None) -> list[Excerpt]:
    """The corpus's features (cached per corpus) and :func:`pick_excerpts` of its training and
    validation segments."""
    from ddx7.data.examples import load_examples

    data = load_examples(home, corpus, cfg, progress=(lambda d, t: progress("features", d, t)) if progress else None)
    return pick_excerpts(data["train"] + data["valid"], n=n)


def _first_stage(groups: list[ConfigGroup], excerpts: list[Excerpt], progress: ProgressFn | None) -> Placements:
    """Lattice costs of every configuration at every octave (:func:`first_stage_costs`)."""
    per_octave = first_stage_costs(groups, excerpts,
                                   progress=(lambda d, t: progress("first stage", d, t)) if progress else None)
    return Placements(per_octave)


def _time_first_full_fit(s: Search, fit_all: bool | None) -> None:
    """Fully fit the lattice's favourite (after a warm-up of the synth) and decide from its time
    whether every configuration can have the full fit (``s.direct``): on libraries of a few
    hundred configurations the quick stage would only lose accuracy. An empty budget stops here."""
    first = s.placements.order[0]
    if s.budget.left() <= 0:
        s.stopped = True
        return
    fit_distance(s.groups[first].config, s.excerpts[:1], n_random=1, sweeps=1, refine=1)   # every code path
    with s.budget.stage("full_fit") as elapsed:
        tried = len(s.placements.octaves[first])
        s.full[first] = s.fitter.fit(first, s.fitted)
        s.per_full = elapsed() / tried
    n_fits = sum(len(s.placements.octaves[i]) for i in s.placements.order)
    s.direct = s.budget.allows(n_fits * s.per_full + s.reserve) if fit_all is None else fit_all


def _quick_fits(s: Search) -> None:
    """Second stage (large libraries): a quick fit (3 excerpts, a short search) in first-stage
    order, while the budget leaves room for the full fits of the best so far."""
    with s.budget.stage("quick_fit") as elapsed:
        for i in s.placements.order[1:]:
            per = elapsed() / len(s.quick) if s.quick else s.per_full / QUICK_SPEEDUP
            then = min(s.candidates, len(s.quick) + 1) * s.per_full + s.reserve
            if not s.budget.allows(per * len(s.placements.octaves[i]) + then):
                s.stopped = len(s.quick) < len(s.placements.order) - 1 and len(s.quick) < s.candidates
                break
            s.quick[i] = s.fitter.fit(i, s.quick_set, n_random=8, n_starts=QUICK_VOICE_STARTS)
            s.report("second stage (quick fit)", len(s.quick), len(s.groups))


def _full_fits(s: Search) -> None:
    """Third stage: the full fit (6 excerpts) of every configuration, or of the quick fit's best
    ``candidates``, while the budget lasts (keeping the final fits' reserve after quick fits)."""
    todo = s.placements.order if s.direct else s.by_quick()[:s.candidates]
    s.planned_full = len(set(todo) | set(s.full))
    with s.budget.stage("full_fit") as elapsed:
        for i in todo:
            if i in s.full:
                continue
            per = elapsed() / (len(s.full) - 1) if len(s.full) > 1 else s.per_full
            if not s.budget.allows(per * len(s.placements.octaves[i]) + (0.0 if s.direct else s.reserve)):
                s.stopped = True
                break
            s.full[i] = s.fitter.fit(i, s.fitted)
            s.report("third stage (full fit)", len(s.full), s.planned_full)


def _final_fits(s: Search, elapsed: Callable[[], float]) -> None:
    """Fourth stage: the full fit's best are fitted on all the excerpts, their levels refined off
    the grid (near-identical configurations' full-fit scores differ by its grid and search noise;
    the true configuration of a steady sound gains most from refinement): the first
    :data:`FINAL_CANDIDATES` while the budget lasts, then up to :data:`FINAL_MAX` within
    :data:`FINAL_SHARE` of it. ``elapsed``: seconds since the stage began."""
    by_full = s.by_full()
    for i in by_full[:FINAL_MAX] if len(by_full) > 1 else []:
        per = elapsed() / len(s.final) if s.final else s.per_full * FINAL_COST
        planned = len(s.final) < FINAL_CANDIDATES   # beyond them the final fit is a bonus
        if not s.budget.allows(per, 1.0 if planned else FINAL_SHARE):
            s.stopped = s.stopped or planned
            break
        s.final[i] = s.fitter.fit(i, s.excerpts, refine=FINAL_REFINE)
        s.report("fourth stage (final fit)", len(s.final), min(FINAL_MAX, len(by_full)))


def _tie_break(s: Search, elapsed: Callable[[], float]) -> None:
    """The best final-fit scores differ by less than the search's own noise (:data:`TIE_MARGIN`,
    :data:`TIE_DB`), so the tied rows are fitted again from :data:`TIE_SEEDS` other random starts
    while the budget lasts; each keeps its best (closest reached) score. ``elapsed``: seconds
    since the fourth stage began."""
    for seed in range(1, TIE_SEEDS + 1) if len(s.final) > 1 else []:
        best = min(s.final.values())
        tied = [i for i in sorted(s.final, key=lambda i: s.final[i])
                if s.final[i] <= best * (1 + TIE_MARGIN) + TIE_DB]
        for i in tied if len(tied) > 1 else []:
            per = elapsed() / (len(s.final) + s.tie_refits)
            if not s.budget.allows(1.5 * per):   # a margin: this fit may take longer than most
                break
            s.final[i] = min(s.final[i], s.fitter.fit(i, s.excerpts, refine=FINAL_REFINE, seed=seed))
            s.tie_refits += 1
            s.report("tie-break (final fit, other starts)", s.tie_refits, len(tied) * TIE_SEEDS)


def _rows(s: Search) -> list[dict]:
    """One row per configuration, by the highest stage that scored it, then by that stage's score."""
    cost, octave = s.placements.cost, s.placements.octave
    by_full = s.by_full()
    fourth = sorted(s.final, key=lambda i: (s.final[i], s.full[i]))
    third = [i for i in by_full if i not in s.final]
    second = [i for i in s.by_quick() if i not in s.full]
    rest = [i for i in s.placements.order if i not in s.quick and i not in s.full]
    rows = ([_row(s.groups[i], s.final[i], 4, cost[i], octave[i]) for i in fourth]
            + [_row(s.groups[i], s.full[i], 3, cost[i], octave[i]) for i in third]
            + [_row(s.groups[i], s.quick[i], 2, cost[i], octave[i]) for i in second]
            + [_row(s.groups[i], cost[i], 1, cost[i], octave[i]) for i in rest])
    for r, row in enumerate(rows, 1):
        row["rank"] = r
    return rows


def _message(s: Search, n_voices: int) -> str:
    """What the ranking did, for the user: its stages, or where the budget ran out."""
    budget = s.budget.seconds
    if s.full and not s.stopped:
        how = ("full fit of every one" if s.direct
               else f"quick fit over the best {len(s.quick)}, full fit over the best {len(s.full)}")
        message = (f"lattice over {len(s.groups)} configurations ({n_voices} voices), {how}, final fit of the "
                   f"best {len(s.final)}" + (f", {s.tie_refits} tie-break fits" if s.tie_refits else ""))
    elif s.full:
        message = (f"the budget of {budget:g} s ran out after {len(s.full)} of {s.planned_full} full fits and "
                   f"{len(s.final)} final fits; ranks {len(s.full) + 1} and beyond are by the quick fit or the "
                   "lattice only (raise --budget)")
    else:
        message = (f"the budget of {budget:g} s ran out before the fits; this is the first-stage (lattice) ranking "
                   "only (raise --budget)")
    spread = max(e.pitch_spread_cents for e in s.excerpts)
    if spread >= STEADY_CENTS[0]:
        message += (f"; no corpus window holds its pitch within {STEADY_CENTS[0]:g} cents, the excerpts' pitch moves by "
                    f"up to {spread:.0f} (a trill or wide vibrato), which the fits hold still: scores are less certain")
    return message


def _stats(s: Search, n_voices: int, feedback_cap: bool, algorithm: int | None) -> dict:
    """Counts and seconds per stage, and what was ranked (saved with the ranking)."""
    t = s.budget.timings
    return {"voices": n_voices, "configurations": len(s.groups), "excerpts": len(s.excerpts),
            "library_key": voices_key(v for g in s.groups for v in g.voice_ids), "algorithm": algorithm,
            "excerpt_pitch_spread_cents": round(max(e.pitch_spread_cents for e in s.excerpts), 1),
            "feedback_cap": bool(feedback_cap),
            "quick_fits": len(s.quick), "full_fits": len(s.full), "full_fit_excerpts": len(s.fitted),
            "features_s": round(t.get("features", 0.0), 2), "first_stage_s": round(t.get("first_stage", 0.0), 3),
            "quick_fit_s": round(t.get("quick_fit", 0.0), 2), "full_fit_s": round(t.get("full_fit", 0.0), 2),
            "final_fits": len(s.final), "tie_break_fits": s.tie_refits,
            "final_fit_s": round(t.get("final_fit", 0.0), 2),
            "total_s": round(s.budget.spent(), 2),
            "first_stage_voices_per_s": round(n_voices / max(t.get("first_stage", 0.0), 1e-9), 1)}


def _library_groups(home, algorithm: int | None) -> list[ConfigGroup]:
    voices = Library(home).voices()
    if not voices:
        raise DX7Error("the library is empty: import cartridges first (dx7tools import FILE.syx)")
    groups = group_voices(voices, algorithm)
    if not groups:
        raise DX7Error(f"no library voice uses algorithm {algorithm}")
    return groups


def rank(home, corpus: str, *, algorithm: int | None = None, budget: float = DEFAULT_BUDGET,
         candidates: int = DEFAULT_CANDIDATES, crepe: str | None = None, crepe_hop: int | None = None,
         f0: str | None = None, excerpts: int = 12, fit_all: bool | None = None,
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
        crepe, crepe_hop, f0: the f0 tracker, as ``dx7tools rank --crepe/--crepe-hop/--f0``
            (:func:`ddx7.data.f0.resolve_tracker`; ``--crepe-hop`` alone means CREPE tiny);
            none of them: :data:`ddx7.data.f0.DEFAULT_F0`.
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
    from ddx7.data.f0 import resolve_tracker
    from ddx7.run import FitConfig

    features = resolve_tracker(f0, crepe, crepe_hop, crepe_default="tiny")
    clock = Budget(budget)
    if not (isinstance(budget, (int, float)) and budget > 0):
        raise DX7Error(f"--budget must be > 0 seconds, got {budget!r}")
    if algorithm is not None and not (isinstance(algorithm, int) and 1 <= algorithm <= 32):
        raise DX7Error(f"--algorithm must be 1-32, got {algorithm!r}")
    groups = _library_groups(home, algorithm) if groups is None else groups
    if not groups:
        raise DX7Error("no configurations to rank")
    n_voices = len({v for g in groups for v in g.voice_ids})   # a placed copy's voices are counted once
    cfg = FitConfig(corpus=corpus, **features)
    cfg.check()
    with clock.stage("features"):
        chosen = _corpus_excerpts(home, corpus, cfg, excerpts, progress)
    clock.restart()   # features are computed once per corpus and cached: not in the budget
    with clock.stage("first_stage"):
        placements = _first_stage(groups, chosen, progress)
    s = Search(groups, chosen, clock, placements,
               Fitter(groups, placements, start_from_voices=start_from_voices, feedback_cap=feedback_cap),
               candidates, progress)
    _time_first_full_fit(s, fit_all)
    if s.full and not s.direct:
        _quick_fits(s)
    _full_fits(s)
    with clock.stage("final_fit") as elapsed:
        _final_fits(s, elapsed)
        _tie_break(s, elapsed)
    result = Ranking(corpus, _rows(s), bool(s.full) and not s.stopped, _message(s, n_voices),
                     _stats(s, n_voices, feedback_cap, algorithm))
    if save:
        save_ranking(home, result)
    return result


# -- persistence ----------------------------------------------------------------------------------
def _rankings_dir(home) -> Path:
    return resolve_home(home) / "rankings"


def ranking_path(home, corpus: str) -> Path:
    """``<home>/rankings/CORPUS.json`` (the corpus name is validated, never a raw path)."""
    from ddx7.data.corpus import check_name

    return _rankings_dir(home) / f"{check_name(corpus)}.json"


def save_ranking(home, ranking: Ranking) -> Path:
    """Write :func:`ranking_path` atomically."""
    path = ranking_path(home, ranking.corpus)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(ranking.to_dict(), indent=1).encode())
    return path


def load_ranking(home, corpus: str) -> Ranking | None:
    """The saved ranking of ``corpus``, or None."""
    path = ranking_path(home, corpus)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return Ranking(data["corpus"], data["rows"], bool(data["complete"]), data["message"], data.get("stats", {}))
    except (ValueError, KeyError, TypeError) as exc:
        raise DX7Error(f"unreadable ranking ({exc})", str(path)) from None


def cached_top_config(home, corpus: str) -> FixedConfig | None:
    """The configuration to train of the saved ranking of ``corpus`` (:meth:`Ranking.pick`, at its
    octave), or None if none was made."""
    ranking = load_ranking(home, corpus)
    return ranking.pick()[0] if ranking and ranking.rows else None
