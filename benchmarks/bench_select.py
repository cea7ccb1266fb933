"""The patch selector: known-answer accuracy, 1,000-voice timing, and the real-world check.

    python benchmarks/bench_select.py known-answer [--sources 32] [--seed 1] [--candidates 40]
    python benchmarks/bench_select.py speed [--voices 1000]
    python benchmarks/bench_select.py probe [--instruments violin flute trumpet]
    python benchmarks/bench_select.py ceiling [--instruments violin flute trumpet] [--trial-seed 5] [--trial-steps 50]
    python benchmarks/bench_select.py real-world [--steps 200] [--runs 8] [--seed 0] [--seeds 1] [--reuse-ranking]
                                                 [--instruments violin flute trumpet]

known-answer: a library of hexter's DX7 ROM banks (dx7_roms: 128 voices; --tx7 adds 128); for each of
``--sources`` voices drawn at random, a corpus of its notes rendered by Dexed (several pitches,
velocities and lengths, and a phrase) is ranked against the whole library. Reports how often the
source's configuration comes first and within the top 5, per voice and overall.

speed: a library of ``--voices`` voices (hexter's 432 plus voices assembled from their parts, see
:func:`shuffled_voices`) ranked for the
default violin corpus with the default 60 s budget; reports first-stage voices per second and the
time of each stage (features are cached from a first, untimed pass).

real-world: on each default corpus, DDX7 is trained for ``--steps`` steps on ``--runs``
configurations spread over the selector's ranking (plus the paper's), and the Spearman rank
correlation between the selector's rank and the reached validation loss is reported (with
``--seeds N``, the loss is the mean of N runs with different training seeds).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dx7tools.fixed_config import FixedConfig  # noqa: E402
from dx7tools.library import Library  # noqa: E402
from dx7tools.voice import Voice  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HEXTER = ROOT / ".cache" / "hexter"


def spearman(a, b) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def sounding_config(row: dict) -> FixedConfig | None:
    """The configuration DDX7 trains for a ranking row (moved to the row's octave), or None when
    that move is not exact (such a row cannot be trained as ranked)."""
    try:
        return FixedConfig.from_dict(row["config"]).transposed(int(row["octave"]))
    except Exception:
        return None


def sounding_key(row: dict):
    """:func:`sounding_config`'s key without its detune, or None: rows with equal keys differ
    only by detune, a few cents per operator that a 128 ms window cannot resolve."""
    config = sounding_config(row)
    return None if config is None else config.key[:4] + config.key[5:]


KA_NOTES = (45, 60, 72)
KA_VELOCITIES = (110, 70)
TRACKING_CENTS = 50.0


def tracked_multiples(home: Path, crepe_hop: int | None) -> list[float]:
    """Per segment of the known-answer corpus ``ka``'s held notes (its takes 0..5: KA_NOTES x
    KA_VELOCITIES, :func:`ddx7.rank.known_answer.render_known_answer`'s order; a note the corpus split
    at a silence gives several), the pitch CREPE tracked (median over voiced frames) as a multiple
    of the key played. The selector places a configuration once per corpus and DDX7 plays it at
    the tracked pitch, so a source tracked at different multiples (more than TRACKING_CENTS apart)
    is heard at different partials by turns: an octave apart the fits mostly absorb it, at another
    carrier (CHIMES: 2.5 and 4) not (README, known answers)."""
    from ddx7.fit import train
    from ddx7.data.corpus import Corpus
    from ddx7.synth.preview import midi_to_hz

    source = {seg["file"]: seg["source"] for seg in Corpus.open(home, "ka").segments()}
    examples = train.load_examples(home, "ka", train.FitConfig(corpus="ka", crepe="tiny", crepe_hop=crepe_hop))
    out = []
    for ex in sorted((e for split in examples.values() for e in split), key=lambda e: e.name):
        take = source.get(ex.name, "")
        voiced = ex.f0_hz[ex.f0_hz > 0]
        if take.startswith("take") and int(take[4:6]) < len(KA_NOTES) * len(KA_VELOCITIES) and len(voiced):
            out.append(float(np.median(voiced)) / midi_to_hz(KA_NOTES[int(take[4:6]) // len(KA_VELOCITIES)]))
    return out


def tracked_consistently(multiples: list[float]) -> bool:
    cents = 1200.0 * np.log2(np.array(multiples))   # tracked_multiples keeps voiced segments only
    return len(cents) > 0 and float(cents.max() - cents.min()) <= TRACKING_CENTS


def known_answer(args) -> None:
    from ddx7.rank.known_answer import known_answer_corpus
    from ddx7.rank.ranking import rank

    import torch

    torch.set_num_threads(args.threads)
    home = ROOT / ".cache" / "bench-select-ka"
    lib = Library(home)
    if not len(lib):
        lib.import_files([HEXTER / "dx7_roms.dx7"] + ([HEXTER / "tx7_roms.dx7"] if args.tx7 else []))
    voices = lib.voices()
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(voices), size=args.sources, replace=False)
    if args.only:   # rerun some of the drawn sources (library ids), e.g. last run's misses
        picks = [k for k in picks if voices[k].id in set(args.only)]
    positions, first_stage_positions, detune_positions, consistent = [], [], [], []
    kinds: list[str] = []   # why each ranked miss missed
    algorithms = set()
    for k in picks:
        entry = voices[k]
        algorithms.add(entry.voice.algorithm)
        t0 = time.perf_counter()
        try:
            # notes of 1.2-2 s, so that slow attacks (strings, pads) still give 0.5 s of sound
            known_answer_corpus(home, "ka", entry.voice, seed=int(k), notes=KA_NOTES, velocities=KA_VELOCITIES,
                                seconds=(1.2, 2.0))
            result = rank(home, "ka", budget=args.budget, candidates=args.candidates, save=False,
                          crepe_hop=args.crepe_hop, start_from_voices=args.voice_starts,
                          feedback_cap=args.feedback_cap)
        except Exception as exc:  # a corpus CREPE finds no steady pitch in counts as a miss, reported
            print(f"{entry.id:4d} {entry.voice.name:10s} alg {entry.voice.algorithm:2d}  FAILED: {exc}", flush=True)
            consistent.append(False)
            positions.append(10 ** 6)
            first_stage_positions.append(10 ** 6)
            detune_positions.append(10 ** 6)
            continue
        multiples = tracked_multiples(home, args.crepe_hop)
        consistent.append(tracked_consistently(multiples))
        own = next(r for r in result.rows if entry.id in r["voices"])
        pos = own["rank"]
        by_first = sorted(result.rows, key=lambda r: r["first_stage"])
        pos1 = next(i + 1 for i, r in enumerate(by_first) if entry.id in r["voices"])
        positions.append(pos)
        first_stage_positions.append(pos1)
        own_key = sounding_key(own)
        detune_positions.append(next((r["rank"] for r in result.rows if own_key is not None
                                      and sounding_key(r) == own_key), pos))
        top = result.rows[0]
        # A miss is either a search limit (the source's own configuration never reached the final
        # fit, stage < 4) or an identifiability limit (it did, and another reproduced the
        # excerpts at least as closely).
        if pos > 1:
            kinds.append("not in final fit" if own["stage"] < top["stage"] else "beaten in final fit")
        print(f"{entry.id:4d} {entry.voice.name:10s} alg {entry.voice.algorithm:2d}  rank {pos:3d}  "
              f"first stage {pos1:3d}  own: stage {own['stage']} octave {own['octave']:+d}"
              + (f" ratios x{own['ratio_factor']:g}" if own.get("ratio_factor", 1.0) != 1.0 else "")
              + f" score {own['score']:.3f}  "
              f"top: {top['names'][0]:10s} stage {top['stage']} octave {top['octave']:+d} score {top['score']:.3f}  "
              f"{time.perf_counter() - t0:5.1f} s  tracked at "
              + "/".join(f"{m:.3g}" for m in multiples) + " x key" + ("" if consistent[-1] else " (several multiples)"),
              flush=True)
    p = np.array(positions)
    p1 = np.array(first_stage_positions)
    print(f"\nknown answers: {len(p)} source voices, {len(algorithms)} algorithms, library of {len(voices)} voices "
          f"({len({FixedConfig.from_voice(v.voice).key for v in voices})} configurations)")
    print(f"top-1 {np.mean(p == 1) * 100:.1f} %   top-5 {np.mean(p <= 5) * 100:.1f} %   "
          f"(first stage alone: top-1 {np.mean(p1 == 1) * 100:.1f} %, top-{args.candidates} "
          f"{np.mean(p1 <= args.candidates) * 100:.1f} %)")
    pd = np.array(detune_positions)
    print(f"up to detune (a row with the source's algorithm, ratios and feedback at its octave, any detune, "
          f"counts): top-1 {np.mean(pd == 1) * 100:.1f} %   top-5 {np.mean(pd <= 5) * 100:.1f} %")
    failed = int(np.sum(p == 10 ** 6))
    usable = p[p != 10 ** 6]
    if failed and len(usable):
        # A voice whose notes have no pitch CREPE can follow cannot be a DDX7 corpus at all (the
        # synth plays at the measured f0); rank refuses it with a clear error, counted above.
        print(f"over the {len(usable)} usable corpora: top-1 {np.mean(usable == 1) * 100:.1f} %   "
              f"top-5 {np.mean(usable <= 5) * 100:.1f} %")
    one = np.array(consistent, dtype=bool)
    several = p[~one & (p != 10 ** 6)]
    if one.any() and len(several):
        # The selector places a configuration once per corpus and DDX7 plays it at the tracked
        # pitch; CREPE often tracks a voice's notes at different multiples of their keys (an
        # octave apart, or at another carrier): how much does that cost the ranking?
        print(f"held notes tracked at one multiple of the key (within {TRACKING_CENTS:g} cents): {one.sum()} sources, "
              f"top-1 {np.mean(p[one] == 1) * 100:.1f} %   top-5 {np.mean(p[one] <= 5) * 100:.1f} %; at several: "
              f"{len(several)} sources, top-1 {np.mean(several == 1) * 100:.1f} %   "
              f"top-5 {np.mean(several <= 5) * 100:.1f} %")
    print(f"misses: {failed} corpora the pipeline could not use; of the ranked misses, "
          + ", ".join(f"{kinds.count(k)} {k}" for k in ("beaten in final fit", "not in final fit")))


def shuffled_voices(rng: np.random.Generator, pool: list[Voice], n: int) -> list[Voice]:
    """``n`` new voices as cartridges have them: each takes its algorithm, its feedback and each
    operator's frequency settings (mode, coarse, fine, detune) from a different real voice of
    ``pool``, so ratios, fixed-frequency operators and feedback follow real usage."""
    out = []
    for k in range(n):
        base = pool[rng.integers(len(pool))]
        changes = {"algorithm": pool[rng.integers(len(pool))].algorithm - 1,
                   "feedback": pool[rng.integers(len(pool))].feedback}
        for op in range(1, 7):
            donor = pool[rng.integers(len(pool))]
            for field in ("mode", "coarse", "fine", "detune"):
                changes[f"op{op}_{field}"] = donor[f"op{op}_{field}"]
        out.append(base.replace(**changes).with_name(f"GEN {k:05d}"))
    return out


def speed(args) -> None:
    from ddx7.data.corpus import Corpus, build_corpus
    from ddx7.rank.ranking import rank

    home = ROOT / ".cache" / "bench-select-speed"
    lib = Library(home)
    if len(lib) < args.voices:
        lib.import_files(sorted(HEXTER.glob("*.dx7")))
        pool = [e.voice for e in lib.voices()]
        for v in shuffled_voices(np.random.default_rng(0), pool, args.voices - len(lib)):
            lib.add_voice(v, "bench-shuffled")
    try:
        Corpus.open(home, "violin")
    except Exception:
        build_corpus(home, "violin")
    rank(home, "violin", budget=1e-3, save=False)   # features into the cache, untimed
    result = rank(home, "violin", save=False)
    s = result.stats
    print(f"library: {s['voices']} voices, {s['configurations']} configurations; corpus violin, {s['excerpts']} "
          f"excerpts")
    print(f"first stage: {s['first_stage_s']:.2f} s = {s['first_stage_voices_per_s']:.0f} voices/s; quick fits: "
          f"{s['quick_fits']} in {s['quick_fit_s']:.1f} s; full fits: {s['full_fits']} in {s['full_fit_s']:.1f} s; "
          f"final fits: {s['final_fits']} and {s['tie_break_fits']} tie-break fits in {s['final_fit_s']:.1f} s; features (cached) {s['features_s']:.1f} s")
    print(f"total {s['total_s']:.1f} s against the 60 s goal: {s['total_s'] / 60:.2f}x of the budget; "
          f"complete: {result.complete}")
    print("top 5:", [(r["names"][0], r["score"]) for r in result.rows[:5]])


def real_world(args) -> None:
    import torch

    from ddx7.run import load_model, runs_dir
    from ddx7.fit import train
    from ddx7.data.corpus import Corpus, build_corpus
    from ddx7.evaluate.embeddings import get_embedding
    from ddx7.evaluate import evaluate_run
    from ddx7.rank.choose import paper_config
    from ddx7.rank.ranking import load_ranking, rank

    embedder = get_embedding() if args.fad else None
    home = ROOT / ".cache" / "bench-select-real"
    lib = Library(home)
    if not len(lib):
        lib.import_files(sorted(HEXTER.glob("*.dx7")) + sorted((ROOT / "patches").glob("*.syx")))
    torch.set_num_threads(args.threads)
    report = {}
    for instrument in args.instruments:
        try:
            Corpus.open(home, instrument)
        except Exception:
            build_corpus(home, instrument)
        result = load_ranking(home, instrument) if args.reuse_ranking else None
        if result is None:
            result = rank(home, instrument, budget=args.budget, feedback_cap=args.feedback_cap)
        print(f"{instrument}: {result.message}; {result.stats}", flush=True)

        ranked = [r for r in result.rows if sounding_config(r) is not None]
        n = len(ranked)
        picks = sorted(set(np.unique(np.round(np.geomspace(1, n, args.runs)).astype(int)).tolist()))
        rows = [ranked[p - 1] for p in picks]
        # A fixed number of steps, not minutes: on a shared machine a time budget gives each run a
        # different amount of training, which swamps the differences between configurations.
        seeds = list(range(args.seed, args.seed + args.seeds))
        cfgs = [train.FitConfig(corpus=instrument, steps=args.steps, minutes=None, crepe="tiny", threads=args.threads,
                                feedback_cap=args.feedback_cap, seed=seed) for seed in seeds]
        data = train.load_examples(home, instrument, cfgs[0])

        # What the loss means on this corpus: a silent model, and quiet white noise.
        scale = loss_scale(data["valid"])
        print(f"{instrument}: validation loss of " + ", ".join(f"{k} {v:.2f}" for k, v in scale.items()), flush=True)

        def trained_loss(config: FixedConfig, name: str) -> tuple[float, list[float], float, float]:
            # A short run's loss depends on its seed by as much as the configurations differ
            # (weights, batches): the mean over ``--seeds`` runs is the point the correlation uses.
            # The validation split is 10 % of the corpus (7 segments, about 30 s): each best model is
            # also scored on validation + test, twice the audio, neither trained on; with --fad, by
            # the FAD of its resynthesised test split (the paper's metric).
            per_seed, held_out, fads = [], [], []
            for cfg in cfgs:
                run_dir = runs_dir(home) / f"{instrument}-{name}-seed{cfg.seed}"
                shutil.rmtree(run_dir, ignore_errors=True)   # a fresh run for this configuration
                per_seed.append(train.fit(home, run_dir, cfg, config, data=data).best_valid)
                held_out.append(train.evaluate(load_model(run_dir)[0], data["valid"] + data["test"]))
                if embedder is not None:
                    fads.append(evaluate_run(home, run_dir, embedder=embedder, reference=False)["fad"])
            fad = float(np.mean(fads)) if fads else float("nan")
            return float(np.mean(per_seed)), per_seed, float(np.mean(held_out)), fad

        losses, held, fads, spreads = [], [], [], []
        for row in rows:
            config = sounding_config(row)
            loss, per_seed, held_loss, fad = trained_loss(config, f"rank{row['rank']}")
            losses.append(loss)
            held.append(held_loss)
            fads.append(fad)
            spreads.append(max(per_seed) - min(per_seed))
            print(f"{instrument}: rank {row['rank']:3d} stage {row['stage']} score {row['score']:.3f} "
                  f"{row['names'][0]:10s} {config.describe():45s} valid loss {loss:.3f}"
                  + (f" (seeds {', '.join(f'{v:.2f}' for v in per_seed)})" if len(seeds) > 1 else "")
                  + f"; valid + test {held_loss:.3f}" + (f"; FAD {fad:.3f}" if embedder is not None else ""),
                  flush=True)
        paper = paper_config(instrument)
        paper_loss, paper_seeds, paper_held, paper_fad = trained_loss(paper, "paper")
        paper_row = next((r for r in result.rows if FixedConfig.from_dict(r["config"]).key == paper.key), None)
        rho = spearman([r["rank"] for r in rows], losses)
        rho_held = spearman([r["rank"] for r in rows], held)
        report[instrument] = {"spearman": round(rho, 3), "spearman_valid_test": round(rho_held, 3),
                              "picked": rows[0]["names"], "picked_loss": losses[0],
                              "paper": paper.name, "paper_loss": paper_loss, "paper_valid_test": paper_held,
                              "paper_rank": paper_row["rank"] if paper_row else None, "seeds": seeds,
                              "loss_scale": scale,
                              "rows": [{"rank": r["rank"], "names": r["names"][:3], "loss": v, "valid_test": h}
                                       for r, v, h in zip(rows, losses, held)]}
        if embedder is not None:
            rho_fad = spearman([r["rank"] for r in rows], fads)
            report[instrument].update({"spearman_fad": round(rho_fad, 3), "paper_fad": paper_fad,
                                       "embedding": embedder.name})
            for entry, fad in zip(report[instrument]["rows"], fads):
                entry["fad"] = fad
            print(f"{instrument}: Spearman(rank, test FAD, {embedder.name}) = {rho_fad:.2f}; paper's configuration "
                  f"FAD {paper_fad:.3f}", flush=True)
        if len(seeds) > 1:
            report[instrument]["median_seed_spread"] = float(np.median(spreads))
            print(f"{instrument}: between seeds a configuration's loss moved by {np.median(spreads):.2f} (median), "
                  f"{max(spreads):.2f} at most; paper's configuration {', '.join(f'{v:.2f}' for v in paper_seeds)}",
                  flush=True)
        print(f"{instrument}: Spearman(rank, valid + test loss) = {rho_held:.2f}", flush=True)
        print(f"{instrument}: Spearman(rank, valid loss) = {rho:.2f} over {len(rows)} configurations; selector's pick "
              f"{rows[0]['names'][0]!r} loss {losses[0]:.3f}; paper's {paper.name!r} (rank "
              f"{paper_row['rank'] if paper_row else 'not in library'}) loss {paper_loss:.3f}", flush=True)
    print(json.dumps(report, indent=1))


def loss_scale(examples) -> dict[str, float]:
    """The validation loss (:func:`ddx7.fit.train.evaluate`) of a silent model and of white noise at
    -40 and -20 dB RMS: what a number on this corpus is worth."""
    import torch

    from ddx7.fit import train

    class Noise(torch.nn.Module):
        def __init__(self, rms: float):
            super().__init__()
            self.rms = rms

        def forward(self, f0_hz: torch.Tensor, loudness_db: torch.Tensor) -> torch.Tensor:
            return self.rms * torch.randn(f0_hz.shape[0], f0_hz.shape[1] * train.HOP)   # evaluate seeds it

    levels = {"silence": 0.0, "white noise -40 dB": 0.01, "white noise -20 dB": 0.1}
    return {name: round(train.evaluate(Noise(rms), examples), 3) for name, rms in levels.items()}


def saved_rankings(home: Path, instruments):
    """``(instrument, ranking)`` for each instrument whose ranking real-world saved (the others are
    named and skipped)."""
    from ddx7.rank.ranking import load_ranking

    for instrument in instruments:
        result = load_ranking(home, instrument)
        if result is None:
            print(f"{instrument}: no saved ranking; run real-world first")
            continue
        yield instrument, result


def trained_runs(home: Path, instrument: str, result, single_seed: bool = False) -> dict[str, list[Path]]:
    """The run folders real-world trained on ``result`` (the saved ranking), by ``rankN`` or
    ``paper``, seeds ascending: finished runs of the configuration the ranking puts there, made
    after the ranking was saved (runs of an earlier ranking, another configuration at that rank
    or older code, are left out). ``single_seed``: the runs named without ``-seedN`` (made before
    ``--seeds`` existed) instead."""
    import re

    from ddx7.rank.ranking import ranking_path
    from ddx7.rank.choose import paper_config
    from ddx7.run import RECORD_FILE, iter_runs

    paper = paper_config(instrument)
    saved_at = ranking_path(home, instrument).stat().st_mtime
    found: dict[str, list[tuple[int, Path]]] = {}
    for one in iter_runs(home):
        run, info = one.path / RECORD_FILE, one.record
        m = re.fullmatch(rf"{instrument}-(rank(\d+)|paper)(-seed(\d+))?", one.name)
        if not m or info.get("status") != "trained" or (m.group(3) is None) != single_seed:
            continue
        if run.stat().st_mtime < saved_at:
            continue
        row = result.rows[int(m.group(2)) - 1] if m.group(2) else None
        expected = paper if row is None else sounding_config(row)
        if expected is not None and FixedConfig.from_dict(info["fixed_config"]).key == expected.key:
            found.setdefault(m.group(1), []).append((int(m.group(4) or 0), run.parent))
    return {key: [run for _, run in sorted(runs)] for key, runs in found.items()}


def probe(args) -> None:
    """How well :func:`ddx7.rank.ranking.descent_probe` predicts the losses real-world trained: for
    each configuration real-world trained (its runs in the benchmark's data home), the probe on
    the ranking's excerpts against the mean trained loss, next to the selector's rank."""
    import torch

    from ddx7.fit import train
    from ddx7.rank.choose import paper_config
    from ddx7.rank.ranking import descent_probe, pick_excerpts
    from ddx7.run import Run

    torch.set_num_threads(args.threads)
    home = ROOT / ".cache" / "bench-select-real"
    report = {}
    for instrument, result in saved_rankings(home, args.instruments):
        trained = {key: [float(Run.at(run).record["best_valid_loss"]) for run in runs]
                   for key, runs in trained_runs(home, instrument, result, args.single_seed_runs).items()}
        paper = paper_config(instrument)
        data = train.load_examples(home, instrument, train.FitConfig(corpus=instrument, crepe="tiny"))
        chosen = pick_excerpts(data["train"] + data["valid"], n=12)[::2]
        ranks, losses, probes = [], [], []
        for key, values in sorted(trained.items()):
            if key == "paper":
                config, octave, rank_ = paper, 0, None
            else:
                row = result.rows[int(key[4:]) - 1]
                config, octave, rank_ = FixedConfig.from_dict(row["config"]), int(row["octave"]), row["rank"]
            value = descent_probe(config, chosen, octave=octave, feedback_cap=args.feedback_cap)
            ranks.append(rank_)
            losses.append(float(np.mean(values)))
            probes.append(value)
            print(f"{instrument}: {key:8s} {(config.name or '')[:10]:10s} probe {value:6.2f}  trained "
                  f"{np.mean(values):6.2f} over {len(values)} run(s)", flush=True)
        ranked = [k for k, r in enumerate(ranks) if r is not None]
        rho_probe = spearman(probes, losses)
        rho_rank = spearman([ranks[k] for k in ranked], [losses[k] for k in ranked])
        report[instrument] = {"probe_spearman": round(rho_probe, 3), "rank_spearman": round(rho_rank, 3),
                              "configurations": len(losses)}
        print(f"{instrument}: Spearman(probe, trained loss) = {rho_probe:.2f} over {len(losses)} configurations "
              f"(the paper's included); Spearman(selector rank, trained loss) = {rho_rank:.2f}", flush=True)
    print(json.dumps(report, indent=1))


def ceiling(args) -> None:
    """What the real-world check's validation loss is made of, from the runs real-world left
    (no training): how far a ranking could correlate with it at all.

    Per corpus, over the ranked configurations trained with two or more seeds:

    - ``seed_agreement``: Spearman between the first two seeds' best validation losses (is the
      loss a property of the configuration, or of the run?);
    - ``rank_valid``: Spearman(rank, mean best validation loss), the real-world figure;
    - ``rank_train`` and ``train_valid``: the same with each run's training loss (mean of its last
      25 steps, ``metrics.csv``): does the ranking predict what the model learns on the data it
      trains on, and is the validation loss that same thing?
    - the median f0 of each split (Hz): is the validation split like the training split?

    ``--trial-seed S`` also trains every one of those configurations for ``--trial-steps`` steps
    with seed S (a new run, about 5 s each) and reports ``trial``: Spearman(its best validation
    loss, the mean best validation loss), what a ranking that trial-trained every configuration
    would reach, and ``trial_top``: the ranking with its rows within the top K re-ordered by the
    trial (a trial-training stage over the K best), K = 10, 20, 40.
    """
    import csv

    from ddx7.run import runs_dir
    from ddx7.fit import train

    home = ROOT / ".cache" / "bench-select-real"
    report = {}
    for instrument, result in saved_rankings(home, args.instruments):
        ranks, best, first, second, trained = [], [], [], [], []
        for key, runs in sorted(trained_runs(home, instrument, result).items()):
            if key == "paper" or len(runs) < 2:
                continue
            per_run = []
            for run in runs:
                log = list(csv.DictReader((run / "metrics.csv").open()))
                valid = [float(r["valid_loss"]) for r in log if r["valid_loss"]]
                per_run.append((min(valid), float(np.mean([float(r["train_loss"]) for r in log[-25:]]))))
            values = np.array(per_run)
            ranks.append(int(key[4:]))
            best.append(values[:, 0].mean())
            first.append(values[0, 0])
            second.append(values[1, 0])
            trained.append(values[:, 1].mean())
        if len(ranks) < 3:
            print(f"{instrument}: {len(ranks)} configurations trained with 2+ seeds; run real-world --seeds 2 first")
            continue
        entry = {"configurations": len(ranks), "seed_agreement": spearman(first, second),
                 "rank_valid": spearman(ranks, best), "rank_train": spearman(ranks, trained),
                 "train_valid": spearman(trained, best)}
        cfg = train.FitConfig(corpus=instrument, crepe="tiny", steps=args.trial_steps, minutes=None,
                              valid_every=args.trial_steps, seed=args.trial_seed or 0, threads=args.threads)
        examples = train.load_examples(home, instrument, cfg)
        if args.trial_seed is not None:
            trial = []
            for r in ranks:
                run_dir = runs_dir(home) / f"{instrument}-trial-rank{r}-seed{args.trial_seed}"
                shutil.rmtree(run_dir, ignore_errors=True)
                trial.append(train.fit(home, run_dir, cfg, sounding_config(result.rows[r - 1]), data=examples).best_valid)
            entry["trial"] = spearman(trial, best)
            entry["trial_top"] = {}
            for top in (10, 20, 40):
                inside = sorted((k for k, r in enumerate(ranks) if r <= top), key=lambda k: trial[k])
                order = np.array(ranks, dtype=float)
                order[inside] = np.arange(len(inside)) + 0.5   # ahead of every row outside, in trial order
                entry["trial_top"][str(top)] = spearman(order, best)
        entry["median_f0_hz"] = {split: float(np.median(np.concatenate([e.f0_hz[e.f0_hz > 0] for e in exs])))
                                 for split, exs in examples.items() if exs}
        report[instrument] = json.loads(json.dumps(entry), parse_float=lambda v: round(float(v), 3))
        print(f"{instrument}: {len(ranks)} configurations; seeds agree {entry['seed_agreement']:.2f}; "
              f"Spearman(rank, valid) {entry['rank_valid']:.2f}, (rank, train) {entry['rank_train']:.2f}, "
              f"(train, valid) {entry['train_valid']:.2f}"
              + (f"; {args.trial_steps}-step trial of all {entry['trial']:.2f}, of the top 10/20/40 "
                 + "/".join(f"{v:.2f}" for v in entry["trial_top"].values()) if "trial" in entry else "")
              + "; median f0 " + ", ".join(f"{k} {v:.0f} Hz" for k, v in entry["median_f0_hz"].items()), flush=True)
    print(json.dumps(report, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    ka = sub.add_parser("known-answer")
    ka.add_argument("--sources", type=int, default=32)
    ka.add_argument("--seed", type=int, default=1)
    ka.add_argument("--candidates", type=int, default=40)
    ka.add_argument("--budget", type=float, default=60.0)
    ka.add_argument("--crepe-hop", type=int, default=None)
    ka.add_argument("--threads", type=int, default=2)
    ka.add_argument("--only", type=int, nargs="+", help="only these library ids among the drawn sources")
    ka.add_argument("--tx7", action="store_true", help="add hexter's TX7 bank to the library (256 voices)")
    ka.add_argument("--no-voice-starts", dest="voice_starts", action="store_false",
                    help="fit from random starts only, not the voices' own envelope levels (an ablation)")
    ka.add_argument("--no-feedback-cap", dest="feedback_cap", action="store_false",
                    help="let the fits drive feedback operators into chaos (rank as for runs without the cap)")
    sp = sub.add_parser("speed")
    sp.add_argument("--voices", type=int, default=1000)
    rw = sub.add_parser("real-world")
    rw.add_argument("--steps", type=int, default=200)
    rw.add_argument("--runs", type=int, default=16,
                    help="configurations trained, at ranks spread geometrically (a Spearman over 8 is too noisy to decide: see README)")
    rw.add_argument("--reuse-ranking", action="store_true", help="train on the ranking saved by an earlier run")
    rw.add_argument("--no-feedback-cap", dest="feedback_cap", action="store_false",
                    help="rank and train without the feedback cap (see ddx7.synth.feedback.STABLE_LOOP_GAIN)")
    rw.add_argument("--budget", type=float, default=60.0)
    rw.add_argument("--seed", type=int, default=0, help="training seed (initial weights, batches, dropout)")
    rw.add_argument("--seeds", type=int, default=1,
                    help="train each configuration with this many seeds (--seed, --seed + 1, ...); the mean loss counts")
    rw.add_argument("--threads", type=int, default=2)
    rw.add_argument("--fad", action="store_true",
                    help="also score each trained model by the FAD (crepe-tiny) of its resynthesised test split")
    rw.add_argument("--instruments", nargs="+", default=["violin", "flute", "trumpet"])
    pr = sub.add_parser("probe", help="does descent_probe predict the losses real-world trained?")
    pr.add_argument("--instruments", nargs="+", default=["violin", "flute", "trumpet"])
    pr.add_argument("--threads", type=int, default=2)
    pr.add_argument("--no-feedback-cap", dest="feedback_cap", action="store_false")
    pr.add_argument("--single-seed-runs", action="store_true",
                    help="use the runs of real-world before --seeds existed (named without -seedN)")
    ce = sub.add_parser("ceiling", help="what the real-world loss is made of (from its runs; no training)")
    ce.add_argument("--instruments", nargs="+", default=["violin", "flute", "trumpet"])
    ce.add_argument("--trial-seed", type=int, default=None,
                    help="also trial-train every configuration with this seed (not one real-world used)")
    ce.add_argument("--trial-steps", type=int, default=50, help="steps of a trial training")
    ce.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if getattr(args, "seeds", 1) < 1:
        parser.error("--seeds must be at least 1")
    {"known-answer": known_answer, "speed": speed, "real-world": real_world, "probe": probe,
     "ceiling": ceiling}[args.what](args)


if __name__ == "__main__":
    main()
