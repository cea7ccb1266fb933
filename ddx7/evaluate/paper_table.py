"""The DDX7 paper's FAD table, reproduced on our corpora: one embedding, same training budget.

    result = paper_table(home, ["violin", "flute", "trumpet"], minutes=4)
    print(result["markdown"])               # also written to <out>/paper-table.md and .csv

Per corpus it trains (or reuses) four models with the same trainer, budget and CREPE model, and
evaluates them with one embedding against the complete corpus (see :mod:`ddx7.evaluate.score`):

========  ==========================================================================
row       model
========  ==========================================================================
original  no model: the original test split against the corpus (the floor)
hpn       the DDSP harmonic-plus-noise baseline
ddx7-6op  DDX7 on the paper's configuration for the instrument, 6 operators, Imax 2
ddx7-2op  DDX7 on a 2-operator stack: OP2 -> OP1, both ratio 1, no feedback
ddx7-top  DDX7 on the patch selector's top voice for the corpus, when a ranking exists
========  ==========================================================================

The 2-operator stack is algorithm 1 with OP3-OP6 in fixed mode at 9,772 Hz: above the
Nyquist frequency of 16 kHz audio, so the synth's anti-aliasing gain is exactly 0 for them
whatever the network asks, and only OP2 -> OP1 sounds (the TCN keeps its six outputs, so the
parameter count is that of the 6-operator model). Runs are named
``paper-<corpus>-<row>-<budget>`` (budget ``4m`` for 4 minutes, ``300steps`` for 300 steps),
so a second call with the same budget reuses them, and an interrupted one resumes. With ``seeds=N``
every row is trained N times (seed K > 0 named ``...-sK``) and its FAD is the mean ± spread over
the seeds (:mod:`ddx7.evaluate.spread`); with ``workers`` > 1 or an ``address`` the runs train as
Ray tasks (:mod:`ddx7.fit.sweep`, :mod:`ddx7.fit.engine`).

The paper's published FADs (URMP recordings, VGGish) are listed beside ours, labelled as a
different corpus and embedding: compare rankings, not numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dx7tools.errors import DX7Error
from dx7tools.fixed_config import FixedConfig

from ddx7 import run as runs
from ddx7.data.f0 import resolve_tracker
from ddx7.evaluate import spread
from ddx7.evaluate.embeddings import DEFAULT_EMBEDDING, Embedder, get_embedding
from ddx7.fit import engine
from ddx7.fit.sweep import RunSpec, budget_tag, parse_seeds, require_some, train_specs, write_tables

ProgressFn = Callable[[str, float, float], None]

PAPER_FAD = {
    # Caspe, McPherson and Sandler, ISMIR 2022 (DDX7), FAD (VGGish) on URMP, lower is better; see docs/evaluation.md.
    "original": {"flute": 2.074, "violin": 0.577, "trumpet": 1.069},
    "hpn": {"flute": 4.326, "violin": 0.795, "trumpet": 2.486},
    "ddx7-6op": {"flute": 2.731, "violin": 1.618, "trumpet": 4.941},
    "ddx7-2op": {"flute": 3.364, "violin": 8.270, "trumpet": 1.674},
}
LABELS = {
    "original": "original test split vs corpus (floor)",
    "hpn": "HpN (DDSP harmonic + noise)",
    "ddx7-6op": "DDX7, 6 operators, Imax 2 (paper's configuration)",
    "ddx7-2op": "DDX7, 2-operator stack",
    "ddx7-top": "DDX7, selector's top voice",
}
ROWS = ("original", "hpn", "ddx7-6op", "ddx7-2op", "ddx7-top")
MUTED_FIXED_COARSE, MUTED_FIXED_FINE = 3, 99   # 10^3 * 10^0.99 = 9,772 Hz fixed: above 8 kHz Nyquist


def two_operator_stack() -> FixedConfig:
    """OP2 -> OP1 (ratios 1, 1, no feedback); OP3-OP6 fixed above Nyquist (muted by anti-aliasing)."""
    return FixedConfig(algorithm=1, mode=(0, 0, 1, 1, 1, 1),
                       coarse=(1, 1) + (MUTED_FIXED_COARSE,) * 4, fine=(0, 0) + (MUTED_FIXED_FINE,) * 4,
                       feedback=0, name="2-OP STACK")


def top_voice_config(home, corpus_name: str) -> tuple[FixedConfig | None, str]:
    """The selector's top configuration for the corpus and a caveat (or ''), or ``(None, why not)``.

    The saved ranking's :meth:`~ddx7.rank.ranking.Ranking.pick`: a complete ranking is used as it
    is, an incomplete one (with its own message as the caveat) only when its top row went through
    the fits; one that stopped after its first stage is ordered by the lattice alone, no pick to
    train on.
    """
    from ddx7.rank.ranking import load_ranking

    try:
        ranking = load_ranking(home, corpus_name)
        if ranking is None or not ranking.rows:
            return None, f"no ranking for {corpus_name!r} (run the selector first)"
        config, _ = ranking.pick()
    except DX7Error as exc:
        return None, str(exc)
    return config, "" if ranking.complete else (ranking.message or "the ranking is incomplete")


@dataclass
class PlannedRun:
    row: str
    model: str
    config: FixedConfig | None
    name: str


def plan_runs(home, corpus_name: str, instrument: str | None, minutes: float | None, steps: int | None
              ) -> tuple[list[PlannedRun], list[str]]:
    """The runs the table needs for one corpus, and notes on rows that are skipped."""
    from ddx7.rank.choose import paper_config

    tag = budget_tag(minutes, steps)
    notes: list[str] = []
    plans = [PlannedRun("hpn", "hpn", None, f"paper-{corpus_name}-hpn-{tag}")]
    try:
        plans.append(PlannedRun("ddx7-6op", "ddx7", paper_config(instrument or ""),
                                f"paper-{corpus_name}-ddx7-6op-{tag}"))
    except DX7Error:
        notes.append(f"{corpus_name}: ddx7-6op skipped: no paper configuration for instrument {instrument!r}")
    plans.append(PlannedRun("ddx7-2op", "ddx7", two_operator_stack(), f"paper-{corpus_name}-ddx7-2op-{tag}"))
    top, why = top_voice_config(home, corpus_name)
    if top is None:
        notes.append(f"{corpus_name}: ddx7-top skipped: {why}")
    else:
        plans.append(PlannedRun("ddx7-top", "ddx7", top, f"paper-{corpus_name}-ddx7-top-{tag}"))
        if why:
            notes.append(f"{corpus_name}: ddx7-top uses {top.name.strip()!r}, but the selector's ranking says: {why}")
    return plans, notes


def run_specs(plans: list[PlannedRun], corpus_name: str, seeds: list[int], minutes, steps, features: dict,
              overrides: dict) -> list[RunSpec]:
    """The sweep runs of one corpus's planned rows, one per seed: seed 0 keeps the row's run name
    (so tables made before seeds existed are reused), seed K is named ``...-sK``."""
    settings = {**features, "valid_every": min(50, steps) if steps else 50, **overrides}
    return [RunSpec(plan.name if seed == 0 else f"{plan.name}-s{seed}", corpus_name, plan.model, seed,
                    config=plan.config.to_dict() if plan.config is not None else None, steps=steps,
                    minutes=None if steps is not None else minutes, settings=settings, test_audio=False,
                    row=plan.row)
            for plan in plans for seed in seeds]


@dataclass
class _Corpus:
    """What one corpus contributes before training: its planned runs, reference and floor row."""

    name: str
    instrument: str | None
    specs: list
    corpus_stats: object
    floor: dict


def _prepare_corpus(home, corpus_name: str, emb: Embedder, *, seeds: list[int], minutes, steps, features: dict,
                    diagonal: bool, overrides: dict, notes: list[str], progress: ProgressFn | None) -> _Corpus:
    from ddx7.data.corpus import open_or_build
    from ddx7.data.examples import load_examples
    from ddx7.evaluate.score import corpus_reference, original_row

    corpus, _ = open_or_build(home, corpus_name, progress=(lambda d, t: progress(f"building corpus {corpus_name}", d,
                                                                                  t)) if progress else None)
    plans, skipped = plan_runs(home, corpus_name, corpus.instrument, minutes, steps)
    notes += skipped
    data = load_examples(home, corpus_name, runs.FitConfig(corpus=corpus_name, **features),
                         progress=(lambda d, t: progress(f"features {corpus_name}", d, t)) if progress else None)
    if not data["test"]:
        raise DX7Error(f"corpus {corpus_name!r} has no test segments")
    corpus_stats, per_segment, _ = corpus_reference(home, corpus_name, emb, diagonal=diagonal, progress=progress)
    floor = original_row(per_segment, corpus_stats, [e.name for e in data["test"]], emb, corpus_name, diagonal)
    return _Corpus(corpus_name, corpus.instrument,
                   run_specs(plans, corpus_name, seeds, minutes, steps, features, overrides), corpus_stats, floor)


def _model_row(home, prepared: _Corpus, specs: list[RunSpec], results: dict, emb: Embedder, diagonal: bool,
               progress: ProgressFn | None) -> dict | None:
    """One table row over the seeds of a planned row: the FAD of each finished run, summarized."""
    from ddx7.evaluate.score import fad_row, run_stats

    done = [(s, results[s.name]) for s in specs if not results[s.name]["error"]]
    if not done:
        return None
    fads = []
    for spec, _ in done:
        stats, _ = run_stats(runs.Run.at(runs.runs_dir(home) / spec.name), home, emb, diagonal=diagonal,
                             progress=progress)
        fads.append(fad_row(spec.name, stats, prepared.corpus_stats))
    info = {**runs.read_record(runs.runs_dir(home) / done[0][0].name),
            "reused": all(r["status"] == "reused" for _, r in done)}
    row = _table_row(specs[0].row, {"fad": fads[0]["fad"], "n_frames": fads[0]["n_frames"]}, info,
                     prepared.instrument)
    summary = spread.summarize([f["fad"] for f in fads])
    row.update(fad=summary["mean"], fad_spread=summary["spread"], n=summary["n"], fads=summary["values"],
               mean=summary["mean"], spread=summary["spread"], seeds=[s.seed for s, _ in done],
               runs=[s.name for s, _ in done], retried=[s.name for s, r in done if r["retried"]])
    return row


def paper_table(home, corpora=("violin", "flute", "trumpet"), *, minutes: float | None = 4.0,
                steps: int | None = None, crepe: str | None = None, f0: str | None = None,
                embedding: str = DEFAULT_EMBEDDING,
                weights=None, diagonal: bool = False, out_dir=None, embedder: Embedder | None = None,
                fit_overrides: dict | None = None, seeds: int = 1, workers: int | None = 1,
                address: str | None = None, progress: ProgressFn | None = None) -> dict:
    """Train/reuse, evaluate and tabulate (see the module notes).

    Args:
        home: data home (corpora named violin/flute/trumpet are built there if missing).
        corpora: corpus names.
        minutes / steps: training budget per model (steps, if given, wins).
        crepe, f0: the f0 tracker of the training features, as ``dx7tools paper-table --crepe/--f0``
            (:func:`ddx7.data.f0.resolve_tracker`); neither: :data:`ddx7.data.f0.DEFAULT_F0`.
        embedding, weights, diagonal: the FAD embedding (one for the whole table).
        out_dir: where ``paper-table.md`` / ``.csv`` / ``.json`` go (default ``<home>/paper-table``).
        fit_overrides: other :class:`ddx7.fit.train.FitConfig` fields for new runs (e.g. a smaller batch).
        seeds: seeds per row (0..N-1); with more than one, each row's FAD is mean ± spread (n).
        workers, address: how the runs train (:func:`ddx7.fit.sweep.train_specs`): 1 worker and no
            address, one after another in this process; more, or an address, as Ray tasks.

    Returns:
        ``{"embedding", "embedding_description", "rows": [...], "notes": [...], "failed": [...],
        "markdown", "csv", "files": [...]}``.

    Raises:
        SweepFailed: every training run failed (nothing is written).
    """
    if not corpora:
        raise DX7Error("no corpus given")
    if steps is None and not (minutes and minutes > 0):
        raise DX7Error("--minutes must be > 0")
    seed_list = parse_seeds(seeds)
    features = resolve_tracker(f0, crepe, None, crepe_default="tiny")
    emb = embedder if embedder is not None else get_embedding(embedding, weights=weights)
    notes: list[str] = []
    started = time.perf_counter()
    with engine.connection(address, workers, on_ray=address is not None and engine.uses_ray(2, address, workers)):
        prepared = [_prepare_corpus(home, c, emb, seeds=seed_list, minutes=minutes, steps=steps, features=features,
                                    diagonal=diagonal, overrides=fit_overrides or {}, notes=notes, progress=progress)
                    for c in corpora]
        specs = [spec for p in prepared for spec in p.specs]
        trained, on_ray = train_specs(home, specs, address=address, workers=workers,
                                      progress=(lambda stage, d, t, note="": progress("training", d, t))
                                      if progress else None)
    failed = require_some(trained)
    results = {r["run"]: r for r in trained}
    rows: list[dict] = []
    for p in prepared:
        base = {"corpus": p.name, "instrument": p.instrument, "embedding": emb.name}
        rows.append({**base, **_table_row("original", p.floor, None, p.instrument)})
        model_rows = [_model_row(home, p, [s for s in p.specs if s.row == row], results, emb, diagonal, progress)
                      for row in dict.fromkeys(s.row for s in p.specs)]
        model_rows = [{**base, **r} for r in model_rows if r is not None]
        spread.mark_against_best(model_rows, group=lambda r: r["corpus"])
        rows += model_rows
    notes += [f"{f['run']} failed ({f['attempts']} attempt(s)): {f['error']}" for f in failed]
    result = {"embedding": emb.name, "embedding_description": emb.describe(), "diagonal": diagonal,
              **features, "budget": {"minutes": None if steps is not None else minutes, "steps": steps},
              "seeds": seed_list, "engine": engine.describe(on_ray, address), "rows": rows, "notes": notes,
              "failed": failed, "retried": [r["run"] for r in trained if r["retried"]],
              "seconds": round(time.perf_counter() - started, 1)}
    result["markdown"] = to_markdown(result)
    result["csv"] = to_csv(rows)
    out = Path(out_dir) if out_dir is not None else runs.runs_dir(home).parent / "paper-table"
    result["files"] = write_tables(result, out, "paper-table")
    return result


def _table_row(row: str, fad_row: dict, info: dict | None, instrument: str | None) -> dict:
    config = info.get("fixed_config") if info else None
    return {
        "row": row, "label": LABELS[row] + (f" ({config['name'].strip()})" if row == "ddx7-top" and config else ""),
        "run": info.get("name") if info else None, "model": info.get("model") if info else None,
        "voice": config["name"].strip() if config else None,
        "fad": fad_row["fad"], "n_frames": fad_row["n_frames"],
        "parameters": info.get("parameters") if info else None,
        "steps": info.get("steps") if info else None,
        "train_minutes": round(info["elapsed_s"] / 60.0, 2) if info and info.get("elapsed_s") is not None else None,
        "reused": info.get("reused") if info else None,
        "paper_fad_urmp_vggish": PAPER_FAD.get(row, {}).get(instrument or ""),
    }


CSV_COLUMNS = ("corpus", "instrument", "row", "label", "run", "model", "voice", "embedding", "fad", "n_frames",
               "parameters", "steps", "train_minutes", "paper_fad_urmp_vggish", "n", "fad_spread", "versus_best")


def to_csv(rows: list[dict]) -> str:
    return spread.rows_csv(rows, CSV_COLUMNS)


def _fmt(value, spec: str = ".3f") -> str:
    return "" if value is None else format(value, spec)


def _cell(r: dict, row: str) -> str:
    """A FAD cell: the value, or mean ± spread (n) and how it stands against the corpus's best model row."""
    text = spread.format_value(r) if r.get("n", 1) > 1 else _fmt(r["fad"])
    if r.get("n", 1) > 1 and r.get("versus_best") in (spread.BEST, spread.SAME):
        text += f", {r['versus_best']}"
    return text + (f" ({r['voice']})" if row == "ddx7-top" else "")


def _features_text(result: dict) -> str:
    """The f0 tracker of a table's runs (tables made before ``f0`` existed name a CREPE model)."""
    tracker = result.get("f0") or f"crepe-{result.get('crepe', 'tiny')}"
    step = result.get("crepe_hop")
    return tracker + (f" every {step} samples" if step else "")


def to_markdown(result: dict) -> str:
    """Our FADs per row and corpus, training cost per run, and the paper's figures, labelled."""
    rows = result["rows"]
    corpora = list(dict.fromkeys(r["corpus"] for r in rows))
    by = {(r["corpus"], r["row"]): r for r in rows}
    present = [row for row in ROWS if any((c, row) in by for c in corpora)]
    budget, seeds = result["budget"], result.get("seeds", [0])
    spent = f"{budget['steps']} steps" if budget["steps"] else f"{budget['minutes']:g} minutes"
    lines = [f"FAD, lower is better. Embedding: **{result['embedding_description']}**"
             + (" (diagonal covariances)" if result.get("diagonal") else "")
             + f"; training budget {spent} per model on this machine's CPU, features by {_features_text(result)}; "
             "resynthesised test split vs the complete corpus."
             + (f" Each model row: mean ± sample standard deviation over seeds {', '.join(map(str, seeds))} (n runs); "
                f"'{spread.BEST}' is the corpus's lowest mean, '{spread.SAME}' a row within the larger spread of it."
                if len(seeds) > 1 else ""), ""]
    lines.append("| model | parameters | " + " | ".join(f"{c} FAD" for c in corpora) + " |")
    lines.append("|---|---:|" + "---:|" * len(corpora))
    for row in present:
        params = next((by[(c, row)]["parameters"] for c in corpora if (c, row) in by and by[(c, row)]["parameters"]),
                      None)
        label = LABELS[row]
        cells = [_cell(by[(c, row)], row) if (c, row) in by else "—" for c in corpora]
        lines.append(f"| {label} | {_fmt(params, ',') if params else '—'} | " + " | ".join(cells) + " |")
    lines += ["", f"Training per run ({result.get('engine', 'one run after another')}; steps in the budget, "
              "minutes of training; retried: its worker died and Ray ran it again, resuming from its checkpoint):",
              "", "| corpus | model | runs | steps | minutes | retried |", "|---|---|---|---:|---:|---|"]
    for r in rows:
        if r["run"]:
            lines.append(f"| {r['corpus']} | {r['label']} | {', '.join(r.get('runs') or [r['run']])} | {r['steps']} | "
                         f"{_fmt(r['train_minutes'], '.1f')} | {', '.join(r.get('retried') or []) or '—'} |")
    paper_corpora = [c for c in corpora if any(by.get((c, row), {}).get("paper_fad_urmp_vggish") is not None
                                                for row in PAPER_FAD)]
    if paper_corpora:
        lines += ["", "The paper's published FADs -- **a different corpus (URMP recordings) and embedding (VGGish), "
                  "~120k GPU training steps: compare the ranking of the rows, not the numbers**:", "",
                  "| model | " + " | ".join(f"{c} (paper)" for c in paper_corpora) + " |",
                  "|---|" + "---:|" * len(paper_corpora)]
        for row in PAPER_FAD:
            cells = [_fmt(by.get((c, row), {}).get("paper_fad_urmp_vggish")) for c in paper_corpora]
            lines.append(f"| {LABELS[row]} | " + " | ".join(cells) + " |")
    if result["notes"]:
        lines += [""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"
