"""The partial lattice: which fixed configurations can place partials where a corpus has them.

The numpy first stage of the patch selector (``dx7tools rank``).

DDX7 keeps a voice's algorithm, operator frequencies and feedback and learns only the six
output levels. Whether a configuration can reproduce an instrument is therefore, first of all,
a question of *where* its partials can fall. This module answers it cheaply for a whole
library (the first stage of ``dx7tools rank``); :mod:`ddx7.rank.ranking` then fits the synth itself to
corpus excerpts for the best candidates (the second stage).

First stage, per corpus excerpt (a steady window with a known f0):

1. :func:`spectral_peaks` finds the excerpt's partials (frequency, level in dB).
2. :func:`partial_lattice` lists, per carrier, the frequencies the configuration can produce:
   ``carrier + sum(n_i * g_i)`` over the frequencies ``g_i`` of the operators upstream of it
   (feedback adds the fed-back operator's own harmonics), each with its *order*
   ``sum(|n_i|)``. Low orders need little modulation; a partial the lattice cannot reach at all
   is unexplained.
3. :func:`lattice_cost` is the level-weighted mean order of the excerpt's partials, with a
   fixed cost for unexplained ones, plus a cost for the carriers' own frequencies where the
   excerpt has nothing (a configuration whose every carrier sits off the spectrum's partials
   cannot be right).

The score is a cost: lower is better. Voices sharing a fixed configuration are grouped
(:func:`group_voices`) and scored once.

For the fits, :func:`make_excerpt` also pins an excerpt's f0 from its harmonic partials
(:func:`harmonic_f0`) and keeps the tracked pitch's course over the window
(:func:`pitch_contour`), and :func:`voice_starts` gives the levels a configuration's own voices
reach on a held note, as starting points of the level search.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from .errors import DX7Error
from .fixed_config import FixedConfig

MAX_ORDER = 14
"""Highest sideband order enumerated; a partial needing more counts as unexplained (an index
of 2, a DX7 operator at output level 99, has significant sidebands up to about order 14)."""
PRECISION_ORDER = 2
PRECISION_WEIGHT = 0.5
SILENT_CARRIER_WEIGHT = 0.1
PEAK_FLOOR_DB = 50.0
"""Partials more than this far below an excerpt's strongest one are ignored."""
MAX_POINTS = 4000
"""Cap on lattice points per carrier (inharmonic configurations grow combinatorially)."""


@dataclass
class ConfigGroup:
    """Library voices that share one fixed configuration (scored once).

    Attributes:
        config: the shared :class:`FixedConfig` (named after the first voice).
        voice_ids: library ids, ascending.
        names: the voices' names, same order.
        voices: the :class:`dx7tools.voice.Voice` objects, same order (their envelopes seed the
            fits, :func:`voice_starts`); may be empty.
        ratio_factor: ``config`` is the voices' configuration with its ratios multiplied by this
            (:meth:`FixedConfig.scaled`; see :func:`placed_on_carrier`); 1 for the voices' own.
    """

    config: FixedConfig
    voice_ids: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    voices: list = field(default_factory=list)
    ratio_factor: float = 1.0


CARRIER_PLACEMENT_CENTS = 50.0
"""A configuration whose lowest carrier sits further than this from every octave of its key also
gets a copy placed on that carrier (:func:`placed_on_carrier`)."""


def placed_on_carrier(config: FixedConfig) -> tuple[FixedConfig, float] | None:
    """The configuration scaled so that its lowest ratio-mode carrier sits on the note pitch.

    A pitch tracker hears a sound's lowest strong partial as its pitch, and DDX7 plays a
    configuration at the tracked pitch. The first stage tries each configuration an octave up and
    down (:data:`OCTAVES`), which covers carriers at octaves of the key; a voice whose carriers
    all sit elsewhere (ROM1A's CHIMES: 2.5, 3 and 4 times its key; CREPE follows the 2.5 in some
    of its notes) could not be placed on its own sound. Its copy scaled by ``1 / ratio`` of that carrier
    (:meth:`FixedConfig.scaled`, exact DX7 ratios: CHIMES' become 1, 1.2, 1.6 and modulators
    3.2, 2.4, 2) is ranked beside it.

    Returns:
        ``(scaled configuration, factor)``, or None: the lowest carrier is within
        :data:`CARRIER_PLACEMENT_CENTS` of an octave of the key, every carrier is fixed-frequency,
        or a scaled ratio has no exact DX7 setting.
    """
    alg = config.algorithm_spec
    carriers = [config.ratios[op - 1] for op in alg.carriers if not config.is_fixed[op - 1]]
    if not carriers:
        return None
    lowest = min(carriers)
    octaves = np.log2(lowest)
    if abs(octaves - round(octaves)) * 1200.0 <= CARRIER_PLACEMENT_CENTS:
        return None
    try:
        return config.scaled(1.0 / lowest), 1.0 / lowest
    except DX7Error:
        return None


def group_voices(entries: Iterable, algorithm: int | None = None, place_carriers: bool = True) -> list[ConfigGroup]:
    """Group library voices (objects with ``.id`` and ``.voice``) by fixed configuration.

    Args:
        entries: e.g. ``Library(home).voices()``.
        algorithm: keep only this DX7 algorithm (1-32), or all.
        place_carriers: add, after each group whose carriers sit off the octaves of its key, a
            group of the same voices with the configuration placed on its lowest carrier
            (:func:`placed_on_carrier`; skipped where the placed configuration is another
            group's own).

    Returns:
        groups in order of their lowest voice id (a placed copy right after its group).
    """
    groups: dict[tuple, ConfigGroup] = {}
    for entry in sorted(entries, key=lambda e: e.id):
        config = FixedConfig.from_voice(entry.voice)
        if algorithm is not None and config.algorithm != algorithm:
            continue
        group = groups.setdefault(config.key, ConfigGroup(config))
        group.voice_ids.append(int(entry.id))
        group.names.append(entry.voice.name)
        group.voices.append(entry.voice)
    out, seen = [], set(groups)
    for group in groups.values():
        out.append(group)
        placed = placed_on_carrier(group.config) if place_carriers else None
        if placed is not None and placed[0].key not in seen:
            seen.add(placed[0].key)
            out.append(ConfigGroup(placed[0], list(group.voice_ids), list(group.names), list(group.voices),
                                   placed[1]))
    return out


# -- where the voices themselves put the levels -------------------------------------------------
START_VELOCITIES = (50, 90, 127)
START_SECONDS = (0.03, 0.06, 0.1, 0.15, 0.25, 0.4, 0.6, 0.9, 1.3, 2.0, 2.1, 2.3)
"""Moments of a held note (key up at 2 s) at which a voice's operator levels seed the fits."""
MAX_VOICE_STARTS = 48


def voice_starts(voices: Sequence, pitch_hz: float, *, limit: int = MAX_VOICE_STARTS,
                 cache: dict | None = None) -> np.ndarray:
    """Modulation indexes that the voices' own envelopes reach on a held note near ``pitch_hz``.

    The fits search six output levels; in deeply modulated (bright) sounds the spectrum depends
    on them so unevenly that a grid search from random points rarely lands in the right basin.
    Measured on ROM1A's SYN-LEAD 5: our synth driven by the voice's own envelopes matches Dexed's
    notes to 0.1-0.3 dB in their first 0.3 s, yet the final fit of its configuration to its 12
    known-answer excerpts reached 7.2 dB from random starts, 6.1 dB with these starts as well
    (its closest rival, STRINGS 6: 6.8 dB either way). The voices that share a configuration
    say where its designers put the levels, so each voice's levels at :data:`START_SECONDS` of a
    held note, at :data:`START_VELOCITIES`, are starting points too (with output level and
    keyboard level and rate scaling; see :func:`dx7tools.envelope.operator_levels`).

    Args:
        voices: :class:`dx7tools.voice.Voice` objects (one configuration's).
        pitch_hz: the note pitch the configuration plays (Hz); each voice's key is the MIDI note
            nearest it, its TRANSPOSE undone.
        limit: at most this many starts, evenly spread over voices, velocities and moments.
        cache: a dict reused between calls while the same voice objects live (keyed by the
            object's identity, key and velocity).

    Returns:
        (K, 6) float64 indexes OP1..OP6 (2.0 = output level 99), K = min(limit, all); (0, 6)
        without voices.
    """
    from .envelope import operator_levels
    from .performance import midi_pitch

    if not voices or limit <= 0:
        return np.zeros((0, 6))
    if not (np.isfinite(pitch_hz) and pitch_hz > 0):
        raise DX7Error(f"a start needs a pitch > 0 Hz, got {pitch_hz!r}")
    frame = 0.01
    picks = np.round(np.asarray(START_SECONDS) / frame).astype(int)
    moments = len(picks)
    pairs = [(voice, velocity) for voice in voices for velocity in START_VELOCITIES]
    total = len(pairs) * moments
    rows = np.linspace(0, total - 1, limit).round().astype(int) if total > limit else np.arange(total)
    note = int(round(float(midi_pitch(pitch_hz))))
    levels = {}
    for p in np.unique(rows // moments):   # only the (voice, velocity) pairs whose moments are kept
        voice, velocity = pairs[p]
        key = int(np.clip(note - (voice["transpose"] - 24), 0, 127))
        tag = (id(voice), key, velocity)
        found = None if cache is None else cache.get(tag)
        if found is None:
            found = operator_levels(voice, key, velocity, 2.0, total_seconds=picks.max() * frame + frame,
                                    frame_rate=1.0 / frame)[picks]
            if cache is not None:
                cache[tag] = found
        levels[p] = found
    return 2.0 * np.stack([levels[r // moments][r % moments] for r in rows])


# -- excerpt analysis ---------------------------------------------------------------------------
@dataclass
class Excerpt:
    """A steady corpus window: its audio, its fundamental and its partials.

    Attributes:
        audio: (n,) float32 samples.
        f0_hz: the fundamental (Hz) over the window: :func:`harmonic_f0` where the partials
            are harmonic, else the pitch tracker's.
        sample_rate: Hz.
        peak_hz, peak_db: the partials (:func:`spectral_peaks`), level in dB re the strongest.
        source: where it came from (segment file and time), for messages.
        pitch_spread_cents: how far the pitch moves within the window (highest over lowest f0).
        tracked_f0_hz: the pitch tracker's f0 (Hz) the excerpt was made with.
        pitch_contour: (frames,) the tracked pitch's course over the window as a ratio to its
            mean (a quadratic in log pitch, smoothing the tracker's jitter), or None.
    """

    audio: np.ndarray
    f0_hz: float
    sample_rate: float
    peak_hz: np.ndarray
    peak_db: np.ndarray
    source: str = ""
    pitch_spread_cents: float = 0.0
    tracked_f0_hz: float = 0.0
    pitch_contour: np.ndarray | None = None


def _blackman_harris(n: int) -> np.ndarray:
    x = 2 * np.pi * np.arange(n) / (n - 1)
    return 0.35875 - 0.48829 * np.cos(x) + 0.14128 * np.cos(2 * x) - 0.01168 * np.cos(3 * x)


def log_power_spectrum(audio: np.ndarray) -> np.ndarray:
    """Power spectrum in dB of one window, 4-term Blackman-Harris window (side lobes at -92 dB,
    so no side lobe of a strong partial passes for a weak one): (n,) -> (n // 2 + 1,)."""
    audio = np.asarray(audio, dtype=np.float64)
    spectrum = np.fft.rfft(audio * _blackman_harris(len(audio)))
    return 10.0 * np.log10(np.abs(spectrum) ** 2 + 1e-20)


def spectral_peaks(audio: np.ndarray, sample_rate: float, floor_db: float = PEAK_FLOOR_DB,
                   max_peaks: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """Partials of a steady window: local maxima of the dB spectrum, refined by parabolic
    interpolation.

    Args:
        audio: (n,) samples, n >= 64.
        sample_rate: Hz.
        floor_db: ignore peaks more than this below the strongest.
        max_peaks: keep at most this many (the strongest).

    Returns:
        ``(frequency_hz, level_db)``, ascending in frequency; level 0 dB = the strongest.
    """
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1 or len(audio) < 64:
        raise DX7Error(f"an excerpt must be a 1-D window of at least 64 samples, got shape {audio.shape}")
    db = log_power_spectrum(audio)
    top = float(db.max())
    inner = db[1:-1]
    is_peak = (inner > db[:-2]) & (inner >= db[2:]) & (inner > top - floor_db)
    k = np.nonzero(is_peak)[0] + 1
    if len(k) == 0:
        return np.zeros(0), np.zeros(0)
    a, b, c = db[k - 1], db[k], db[k + 1]
    denom = a - 2 * b + c
    offset = np.where(np.abs(denom) > 1e-12, 0.5 * (a - c) / np.where(denom == 0, 1, denom), 0.0)
    offset = np.clip(offset, -0.5, 0.5)
    level = b - 0.25 * (a - c) * offset
    level = level - level.max()
    freq = (k + offset) * sample_rate / len(audio)
    if len(k) > max_peaks:
        keep = np.sort(np.argsort(level)[-max_peaks:])
        freq, level = freq[keep], level[keep]
    return freq, level


HARMONIC_FLOOR_DB = 50.0
HARMONIC_MAX_CENTS = 2.0
"""Partials this close to a harmonic of :func:`harmonic_f0`'s estimate are harmonic."""


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


def harmonic_f0(peak_hz: np.ndarray, peak_db: np.ndarray, f0_hz: float) -> float | None:
    """The fundamental that best explains harmonic partials, starting from a tracked ``f0_hz``.

    A pitch tracker is good to a few cents, but a bright FM tone's spectrum hangs on the pitch
    far more finely than that: measured, ROM1A's SYN-LEAD 5 rendered by Dexed at 110.0 Hz, CREPE
    said 110.39 Hz (+6 cents); the voice's own levels reproduce the window to 0.8 dB at -6 cents,
    4.3 dB at -5 and 10.4 dB at the tracked pitch. The peaks' interpolated frequencies fix f0
    to a fraction of a cent. Each partial within a fifth of a harmonic ``n`` of ``f0`` says
    ``f0 = f / n``; the median of those (weighted by amplitude and ``n``: high harmonics pin f0
    more finely), over the harmonics up to the 8th, then the 32nd, then all, resists partials
    of detuned or off-ratio operators. The partials within :data:`HARMONIC_MAX_CENTS` of that
    estimate's harmonics then give it by least squares (``f = n * f0``).

    Args:
        peak_hz, peak_db: partials (:func:`spectral_peaks`), dB re the strongest.
        f0_hz: tracked fundamental (Hz).

    Returns:
        the refined f0 (Hz), or None when the partials within :data:`HARMONIC_MAX_CENTS` of
        its harmonics carry less than half the amplitude of those within
        :data:`HARMONIC_FLOOR_DB` of the strongest, or the estimate leaves a quarter tone of
        ``f0_hz`` (an inharmonic, chorused or unpitched window).
    """
    loud = np.asarray(peak_db) > -HARMONIC_FLOOR_DB
    freq, weight = np.asarray(peak_hz)[loud], 10.0 ** (np.asarray(peak_db)[loud] / 20.0)
    f0 = float(f0_hz)
    for top in (8, 32, np.inf):
        n = np.round(freq / f0)
        ok = (n >= 1) & (n <= top) & (np.abs(freq - n * f0) < 0.2 * f0)
        if not ok.any():
            return None
        f0 = _weighted_median(freq[ok] / n[ok], weight[ok] * n[ok])
    n = np.maximum(np.round(freq / f0), 1)
    inlier = np.abs(1200.0 * np.log2(freq / (n * f0))) <= HARMONIC_MAX_CENTS
    if weight[inlier].sum() < 0.5 * weight.sum():
        return None
    f0 = float(np.sum(weight[inlier] * freq[inlier] * n[inlier]) / np.sum(weight[inlier] * n[inlier] ** 2))
    return f0 if abs(1200.0 * np.log2(f0 / f0_hz)) <= 50.0 else None


def pitch_contour(f0_track_hz: np.ndarray) -> np.ndarray:
    """A window's tracked pitch as a smooth ratio to its mean: (frames,) Hz -> (frames,).

    A quadratic in log pitch over the window: it follows a glide or part of a vibrato cycle
    and irons out the tracker's frame-to-frame jitter.
    """
    track = np.asarray(f0_track_hz, dtype=np.float64)
    if track.ndim != 1 or len(track) < 3 or not np.all(track > 0):
        raise DX7Error("a pitch contour needs 3 or more voiced frames")
    x = np.linspace(-1.0, 1.0, len(track))
    smooth = np.polyval(np.polyfit(x, np.log2(track), 2), x)
    return np.exp2(smooth - smooth.mean())


def make_excerpt(audio: np.ndarray, f0_hz: float, sample_rate: float, source: str = "",
                 pitch_spread_cents: float = 0.0, f0_track_hz: np.ndarray | None = None) -> Excerpt:
    """An :class:`Excerpt` with its partials measured and its f0 refined by :func:`harmonic_f0`
    where the partials are harmonic (``f0_hz``, the tracker's, is kept as ``tracked_f0_hz``);
    ``f0_track_hz``: the tracker's f0 per frame over the window, for :func:`pitch_contour`."""
    if not (np.isfinite(f0_hz) and f0_hz > 0):
        raise DX7Error(f"an excerpt needs a voiced f0 > 0 Hz, got {f0_hz!r}")
    peak_hz, peak_db = spectral_peaks(audio, sample_rate)
    fine = harmonic_f0(peak_hz, peak_db, f0_hz)
    contour = None if f0_track_hz is None else pitch_contour(f0_track_hz)
    return Excerpt(np.asarray(audio, dtype=np.float32), float(fine or f0_hz), float(sample_rate), peak_hz, peak_db,
                   source, float(pitch_spread_cents), float(f0_hz), contour)


# -- what a configuration can produce -----------------------------------------------------------
def _upstream(algorithm, op: int) -> set[int]:
    seen: set[int] = set()
    todo = list(algorithm.modulators_of(op))
    while todo:
        j = todo.pop()
        if j not in seen:
            seen.add(j)
            todo.extend(algorithm.modulators_of(j))
    return seen


def partial_lattice(config: FixedConfig, f0_hz: float, nyquist_hz: float,
                    max_order: int = MAX_ORDER) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per carrier, the frequencies the configuration can put energy at, with their order.

    A carrier at frequency ``c`` whose upstream operators (every operator that reaches it
    through modulation) have frequencies ``g_i`` has partials at ``|c + sum(n_i g_i)|``
    (negative frequencies fold back). Feedback makes the operators of its loop produce their own
    harmonics (its second and third count as generators too), so a carrier inside the loop also
    gets ``c`` as a generator. The order
    ``sum(|n_i|)`` says how much modulation the partial needs.

    Args:
        config: the fixed configuration.
        f0_hz: the note's fundamental (Hz); fixed-frequency operators ignore it.
        nyquist_hz: partials above are dropped (they fold and are band-limited in the synth).
        max_order: highest order enumerated.

    Returns:
        one ``(frequency_hz, order)`` pair of arrays per carrier (carriers ascending).
    """
    # Undetuned: detuned operators beat within a few Hz, which a 128 ms window cannot resolve;
    # their partials' energy centres stay on the undetuned lattice. The second stage hears detune.
    freqs = np.where(config.is_fixed, config.fixed_hz, np.array(config.ratios) * f0_hz)
    # Points are kept to 0.01 Hz, or to 1e-4 of f0 when working in units of f0 (f0_hz = 1).
    decimals = 2 if f0_hz > 10 else 4
    alg = config.algorithm_spec
    loop: set[int] = set()
    if config.feedback > 0:
        src, dst = alg.feedback
        loop = {dst} | ({src} if src == dst else _upstream(alg, src) - _upstream(alg, dst) | {src})
    out = []
    for carrier in alg.carriers:
        ops = _upstream(alg, carrier) | ({carrier} if carrier in loop else set())
        gens = [freqs[j - 1] * k for j in ops for k in ((1, 2, 3) if j in loop else (1,))]
        generators = np.unique(np.round(gens, decimals)) if gens else np.zeros(0)
        generators = generators[generators > 0]
        steps = np.concatenate([generators, -generators])
        hz = np.array([round(float(freqs[carrier - 1]), decimals)])
        order = np.zeros(1)
        frontier = hz
        limit = nyquist_hz + (generators.max() if len(generators) else 0.0)
        for k in range(1, max_order + 1):
            if not len(steps) or not len(frontier) or len(hz) >= MAX_POINTS:
                break
            cand = np.unique(np.round((frontier[:, None] + steps[None, :]).ravel(), decimals))
            cand = cand[(np.abs(cand) <= limit) & ~np.isin(cand, hz)]
            frontier = cand[: MAX_POINTS - len(hz)]
            hz = np.concatenate([hz, frontier])
            order = np.concatenate([order, np.full(len(frontier), float(k))])
        hz = np.abs(hz)
        keep = hz <= nyquist_hz
        hz, order = hz[keep], order[keep]
        sort = np.lexsort((order, hz))
        hz, order = hz[sort], order[sort]
        first = np.unique(hz, return_index=True)[1]   # a folded partial keeps its lowest order
        out.append((hz[first], order[first]))
    return out


def _tolerance_hz(freq_hz: np.ndarray, excerpt_len: int, sample_rate: float) -> np.ndarray:
    # Peak positions are good to a fraction of a bin on steady partials; vibrato and the
    # CREPE f0 error (a few cents) scale with frequency.
    return np.maximum(1.0 * sample_rate / excerpt_len, freq_hz * 0.006)


def _near(points_hz: np.ndarray, targets_hz: np.ndarray, tol_hz: np.ndarray) -> np.ndarray:
    """For each target, whether a point lies within its tolerance (points sorted ascending)."""
    if not len(points_hz):
        return np.zeros(len(targets_hz), dtype=bool)
    last = len(points_hz) - 1
    pos = np.searchsorted(points_hz, targets_hz)
    lo = np.abs(points_hz[np.maximum(pos - 1, 0)] - targets_hz)
    hi = np.abs(points_hz[np.minimum(pos, last)] - targets_hz)
    return np.minimum(lo, hi) <= tol_hz


def lattice_cost(config: FixedConfig, excerpt: Excerpt, octave: int = 0, max_order: int = MAX_ORDER,
                 lattices: list | None = None) -> float:
    """First-stage cost of one configuration on one excerpt (lower is better, 0 is perfect).

    ``octave``: the configuration is played with its note pitch at ``f0 * 2**octave`` (a voice
    whose fundamental is its ratio-0.5 operator sounds an octave below its key, so the excerpt's
    f0 is half the note pitch: ``octave=1``).

    Two parts, each a fraction:

    * recall -- the share of the excerpt's partials (weighted by level above the floor) that no
      carrier's lattice reaches within ``max_order``;
    * precision -- the share of the lattice's first sidebands (order <= :data:`PRECISION_ORDER`,
      below the excerpt's highest partial) where the excerpt has no partial, over the carriers
      that sound (a carrier whose own frequency has no partial is taken as silent). A denser
      lattice than needed predicts partials that are not there.

    Each silent carrier adds ``0.1 / carriers``; a configuration none of whose carriers lands on
    a partial pays 1 more. ``lattices``: the
    :func:`partial_lattice` for this excerpt and octave, if already computed.
    """
    if len(excerpt.peak_hz) == 0:
        return 2.0
    if lattices is None:
        lattices = partial_lattice(config, excerpt.f0_hz * 2.0 ** octave, excerpt.sample_rate / 2, max_order)
    peaks = excerpt.peak_hz
    n, sr = len(excerpt.audio), excerpt.sample_rate
    top_hz = float(peaks.max()) * 1.02
    # Every carrier's points in one sorted array (recall), and each carrier's own frequency and
    # first sidebands in another (precision), so each excerpt needs two look-ups in all.
    every = np.sort(np.concatenate([hz for hz, _ in lattices]))
    explained = _near(every, peaks, _tolerance_hz(peaks, n, sr))
    probe_hz, probe_carrier = [], []
    for c, (hz, order) in enumerate(lattices):
        low = hz[(order <= PRECISION_ORDER) & (hz <= top_hz) & (hz > 0)]
        probe_hz.append(low)
        probe_carrier.append(np.full(len(low), c))
    probe = np.concatenate(probe_hz)
    owner = np.concatenate(probe_carrier)
    is_carrier = np.concatenate([order[(order <= PRECISION_ORDER) & (hz <= top_hz) & (hz > 0)] == 0
                                 for hz, order in lattices])
    heard = _near(peaks, probe, _tolerance_hz(probe, n, sr))
    # a carrier whose own frequency has no partial is taken as silent: its sidebands do not count
    sounding = np.zeros(len(lattices), dtype=bool)
    sounding[owner[is_carrier & heard]] = True
    counted = sounding[owner] & ~is_carrier
    predicted = int(counted.sum())
    absent = int((counted & ~heard).sum())
    weight = np.clip(excerpt.peak_db + PEAK_FLOOR_DB, 0.0, None) / PEAK_FLOOR_DB
    recall = float(np.sum(weight * ~explained) / max(np.sum(weight), 1e-9))
    precision = absent / predicted if predicted else 0.0
    # A silent carrier is allowed but costs a little: among configurations that explain the
    # excerpt alike, the one using its operators is the better instrument for it.
    silent = 1.0 - sounding.mean() if len(sounding) else 1.0
    return recall + PRECISION_WEIGHT * precision + SILENT_CARRIER_WEIGHT * silent + (0.0 if sounding.any() else 1.0)


OCTAVES = (0, 1, -1)
"""Octave placements tried: DDX7 plays a configuration at the corpus's measured f0, so a voice
sounding an octave off its key fits only when its ratios are read an octave away."""


def first_stage_costs(groups: Sequence[ConfigGroup], excerpts: Sequence[Excerpt], octaves: Sequence[int] = OCTAVES,
                      progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Mean :func:`lattice_cost` over the excerpts for every group at every octave placement.

    Returns:
        (len(groups), len(octaves)) float costs.
    """
    if not excerpts:
        raise DX7Error("no excerpts to score against")
    cost = np.empty((len(groups), len(octaves)))
    # Partials above an excerpt's highest measured one cannot matter; in units of f0 a ratio-only
    # configuration's lattice is the same for every excerpt and octave, so it is built once.
    reach = [min(ex.sample_rate / 2, 1.1 * float(ex.peak_hz.max()) if len(ex.peak_hz) else 0.0) for ex in excerpts]
    widest = max(r / (ex.f0_hz * 2.0 ** o) for r, ex in zip(reach, excerpts) for o in octaves)
    for i, group in enumerate(groups):
        config = group.config
        unit = None if any(config.is_fixed) else partial_lattice(config, 1.0, widest)
        for j, octave in enumerate(octaves):
            costs = []
            for r, ex in zip(reach, excerpts):
                pitch = ex.f0_hz * 2.0 ** octave
                if unit is None:
                    lattices = partial_lattice(config, pitch, r)
                else:
                    lattices = [(hz[hz * pitch <= r] * pitch, order[hz * pitch <= r]) for hz, order in unit]
                costs.append(lattice_cost(config, ex, octave, lattices=lattices))
            cost[i, j] = float(np.mean(costs))
        if progress:
            progress(i + 1, len(groups))
    return cost


def first_stage(groups: Sequence[ConfigGroup], excerpts: Sequence[Excerpt], octaves: Sequence[int] = OCTAVES,
                progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`first_stage_costs` at each group's best octave.

    Returns:
        ``(cost, octave)``: (len(groups),) float costs and the int octave each was reached at.
    """
    per = first_stage_costs(groups, excerpts, octaves, progress)
    k = np.argmin(per, axis=1)
    return per[np.arange(len(groups)), k], np.asarray(octaves, dtype=int)[k]
