"""Many training runs at once: corpora x voices x models x seeds, each an ordinary ``fit`` run.

    result = sweep(home, ["violin", "flute"], voices=["STRINGS 1", "auto"], models=["ddx7", "hpn"],
                   seeds=3, minutes=4)
    print(result["markdown"])      # also written to <home>/sweep/sweep.md, .csv and .json

Stages:

1. **plan** (:func:`plan_sweep`): one :class:`RunSpec` per run, named
   ``sweep-CORPUS-MODEL[-VOICE]-sSEED-BUDGET`` so that the same command finds its runs again;
2. **prepare** (:func:`prepare`, here): default corpora built, features computed once per corpus,
   every voice resolved once to its fixed configuration (``auto`` ranks the library if needed);
3. **train** (:func:`train_specs`): each run is :func:`ddx7.fit.run_fit.fit_run` — the same run
   folder, checkpoints and resume as ``dx7tools fit`` — executed by :mod:`ddx7.fit.engine` as Ray
   tasks (one torch thread each) or one after another. A finished run with the same settings
   (:func:`other_settings`: every feature and training field) is reused, a run of that name trained
   otherwise is an error naming the differing fields, an unfinished one resumes from its
   checkpoint (after Ctrl-C, the same command goes on where it stopped), and a run whose worker
   was killed is run again by Ray and resumes too;
4. **tabulate**: per (corpus, model, voice), the best validation loss over the seeds as
   mean ± spread with n (:mod:`ddx7.evaluate.spread`), which rows differ by less than their
   spread, which runs were retried, and a table of the runs that failed.

Workers read the corpora and write the runs in the data home: on a cluster it must be the same
folder on every machine (see docs/sweeps.md).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Sequence

from dx7tools.errors import DX7Error
from dx7tools.files import atomic_write_bytes
from dx7tools.fixed_config import FixedConfig

from ddx7 import run as runs
from ddx7.fit import engine

Progress = Callable[[str, float, float, str], None]
METRIC = "best_valid_loss"
"""What a sweep's table compares: each run's best validation loss (multi-scale spectral loss, lower is better)."""
DEFAULT_VOICE_LABEL = "default"
"""A row's voice when none was asked for: the paper's configuration (or the selector's pick on other corpora)."""
FIT_FIELDS = frozenset(f.name for f in fields(runs.FitConfig))
SETTING_FIELDS = FIT_FIELDS - {"corpus", "model", "voice", "steps", "minutes"}
"""The :class:`ddx7.run.FitConfig` fields a sweep's ``settings`` may hold (``seed`` is the run's own)."""
NOT_COMPARED = frozenset({"threads", "checkpoint_seconds", "steps", "minutes", "voice", "f0", "crepe"})
"""FitConfig fields a run of the same name may differ in and still be reused: how it ran (torch
threads, checkpoint interval), its budget (part of the name) and the voice as asked (the fixed
configuration it resolved to is compared instead). ``f0`` and ``crepe`` are compared as the one
tracker they name (:attr:`ddx7.run.FitConfig.tracker`), so records from before ``f0`` existed read
as CREPE ``crepe``."""
TRACKER_FIELDS = frozenset({"f0", "crepe", "crepe_hop"})
"""Settings that choose the f0 tracker; with none of them, :data:`ddx7.data.f0.DEFAULT_F0` (as ``fit``)."""
LEDGER_DIR = "sweep-attempts"
"""``<home>/sweep-attempts/<id>/``: the attempts ledger of a sweep while it runs (removed at the end)."""


class SweepFailed(DX7Error):
    """Every run of a sweep failed; ``failures`` holds ``{"run", "attempts", "error"}`` per run."""

    def __init__(self, message: str, failures: list[dict]):
        super().__init__(message)
        self.failures = failures


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: where it trains, on what, and how long.

    ``voice`` is as asked (a library voice, ``auto``, or None for the default); ``config`` is the
    :meth:`FixedConfig.to_dict` it was resolved to (None for HpN); ``settings`` are other
    :class:`ddx7.run.FitConfig` fields (``crepe``, ``batch_size``, ``threads``, ...)."""

    name: str
    corpus: str
    model: str
    seed: int
    voice: str | None = None
    config: dict | None = None
    steps: int | None = None
    minutes: float | None = None
    settings: dict = field(default_factory=dict)
    test_audio: bool = True
    row: str = ""

    def payload(self, home) -> dict:
        return {"home": str(home), **asdict(self)}

    @classmethod
    def from_payload(cls, payload: dict) -> "RunSpec":
        return cls(**{f.name: payload[f.name] for f in fields(cls) if f.name in payload})


def fit_config(spec: RunSpec) -> runs.FitConfig:
    """The :class:`ddx7.run.FitConfig` ``spec`` trains with, as :func:`ddx7.fit.run_fit.fit_run`
    makes it (the f0 tracker :data:`ddx7.data.f0.DEFAULT_F0` when the settings name none).

    Raises:
        DX7Error: a setting that is not a FitConfig field (not yet :meth:`FitConfig.check`).
    """
    from ddx7.data.f0 import DEFAULT_F0

    unknown = sorted(set(spec.settings) - SETTING_FIELDS)
    if unknown:
        raise DX7Error(f"unknown fit setting(s): {', '.join(unknown)}")
    settings = spec.settings if TRACKER_FIELDS & set(spec.settings) else {**DEFAULT_F0, **spec.settings}
    return runs.FitConfig(corpus=spec.corpus, model=spec.model, voice=spec.voice, steps=spec.steps,
                          minutes=spec.minutes, **{**settings, "seed": spec.seed})


# -- 1. plan --------------------------------------------------------------------------------------
def budget_tag(minutes: float | None, steps: int | None) -> str:
    """``4m``, ``0p5m`` or ``300steps``: the budget as a run-name part."""
    return f"{steps}steps" if steps is not None else f"{minutes:g}m".replace(".", "p")


def _seed_values(seeds: int | str | Sequence[int | str]) -> tuple[list[int], bool]:
    """``(values, listed)``: the integers ``seeds`` holds and whether they are a list of seeds
    (several values, or a value written with a comma) rather than a count."""
    items = [seeds] if isinstance(seeds, (int, str)) else list(seeds)
    values, listed = [], len(items) > 1
    for item in items:
        parts = [item] if isinstance(item, int) else [p.strip() for p in str(item).split(",")]
        listed = listed or len(parts) > 1
        for part in parts:
            if part == "":
                continue
            try:
                values.append(int(part))
            except ValueError:
                raise DX7Error(f"--seeds: {part!r} is not a whole number") from None
    return values, listed


def parse_seeds(seeds: int | str | Sequence[int | str]) -> list[int]:
    """The seeds a sweep trains.

    ``N`` alone (or ``[N]``, ``"N"``): a count, seeds 0..N-1. Several values, or values written with
    a comma (``"3,"``, ``"0,4,7"``): those seeds, in that order, no duplicates, none negative; so
    ``"3,"`` (``--seeds 3,``) is seed 3 only.

    Raises:
        DX7Error: no value, a count below 1, a value that is not a whole number, a repeated or
            negative seed.
    """
    values, listed = _seed_values(seeds)
    if not values:
        raise DX7Error("--seeds needs a count or a list of seeds")
    if not listed:
        if values[0] < 1:
            raise DX7Error(f"--seeds {values[0]}: the number of seeds must be >= 1 (seed {values[0]} alone: "
                           f"--seeds {values[0]},)")
        return list(range(values[0]))
    repeated = sorted({s for s in values if values.count(s) > 1})
    if repeated:
        raise DX7Error(f"--seeds lists seed(s) {', '.join(map(str, repeated))} more than once")
    if min(values) < 0:
        raise DX7Error("--seeds: seeds must be >= 0")
    return values


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "voice"


def run_name(corpus: str, model: str, voice: str | None, seed: int, tag: str) -> str:
    """``sweep-CORPUS-MODEL[-VOICE]-sSEED-TAG``, hashed when longer than a run name may be."""
    middle = f"{corpus}-{model}" + (f"-{_slug(voice or DEFAULT_VOICE_LABEL)}" if model == "ddx7" else "")
    name = f"sweep-{middle}-s{seed}-{tag}"
    if len(name) > 60:
        name = f"sweep-{hashlib.sha1(middle.encode()).hexdigest()[:12]}-s{seed}-{tag}"
    return runs.check_name(name)


def plan_sweep(corpora: Sequence[str], voices: Sequence[str | None], models: Sequence[str],
               seeds: int | Sequence[int], *, minutes: float | None = 4.0, steps: int | None = None,
               settings: dict | None = None, test_audio: bool = True) -> list[RunSpec]:
    """Every run of the sweep (HpN once per corpus and seed: it has no voice), configurations unresolved."""
    seed_list = parse_seeds(seeds)
    corpora, models = list(dict.fromkeys(corpora)), list(dict.fromkeys(models))
    voices = list(dict.fromkeys(voices)) or [None]
    if not corpora:
        raise DX7Error("no corpus given (--corpus NAME ...)")
    if steps is None and not (minutes and minutes > 0):
        raise DX7Error("--minutes must be > 0")
    for model in models:
        fit_config(RunSpec("check", corpora[0], model, seed_list[0], steps=steps,
                           minutes=None if steps is not None else minutes, settings=dict(settings or {}))).check()
    tag = budget_tag(minutes, steps)
    specs = []
    for corpus in corpora:
        runs.check_name(corpus, "corpus")
        for model in models:
            for voice in (voices if model == "ddx7" else [None]):
                for seed in seed_list:
                    specs.append(RunSpec(run_name(corpus, model, voice, seed, tag), corpus, model, seed, voice,
                                         steps=steps, minutes=None if steps is not None else minutes,
                                         settings=dict(settings or {}), test_audio=test_audio,
                                         row=(voice or DEFAULT_VOICE_LABEL) if model == "ddx7" else ""))
    return specs


# -- 2. prepare -----------------------------------------------------------------------------------
def prepare(home, specs: list[RunSpec], *, progress: Progress | None = None,
            say: Callable[[str], None] | None = None) -> list[RunSpec]:
    """Build missing default corpora, compute features once per corpus, resolve each voice once."""
    from dataclasses import replace

    from ddx7.data.corpus import open_or_build
    from ddx7.data.examples import load_examples
    from ddx7.rank.choose import choose_config

    report, tell = progress or (lambda *a: None), say or (lambda line: None)
    configs: dict = {}
    for corpus in dict.fromkeys(s.corpus for s in specs):
        built, is_new = open_or_build(home, corpus, progress=lambda d, t: report("corpus", d, t, corpus))
        if is_new:
            tell(f"corpus {corpus!r} did not exist: built the default one (as `dx7tools corpus build {corpus}`)")
        first = fit_config(next(s for s in specs if s.corpus == corpus))
        load_examples(home, corpus, first, progress=lambda d, t: report("features", d, t, corpus))
        for voice in dict.fromkeys(s.voice for s in specs if s.corpus == corpus and s.model == "ddx7"):
            config, _, message = choose_config(home, corpus, voice, built.instrument, feedback_cap=first.feedback_cap,
                                               progress=lambda stage, d, t: report("configuration", d, t, stage))
            if message:
                tell(f"{corpus}, voice {voice or DEFAULT_VOICE_LABEL}: {message}")
            configs[(corpus, voice)] = config.to_dict()
    return [replace(s, config=configs[(s.corpus, s.voice)]) if s.model == "ddx7" and s.config is None else s
            for s in specs]


# -- 3. train -------------------------------------------------------------------------------------
def _require_corpus(home, corpus: str) -> None:
    from ddx7.data.corpus import Corpus

    try:
        Corpus.open(home, corpus)
    except DX7Error:
        raise DX7Error(f"corpus {corpus!r} is missing on worker {socket.gethostname()} (data home {home}): "
                       "workers need the shared data home") from None


def _compared(cfg: runs.FitConfig) -> dict:
    """The settings of ``cfg`` a reused run must share (``f0``: the tracker, as :attr:`FitConfig.tracker`)."""
    values = {k: v for k, v in asdict(cfg).items() if k not in NOT_COMPARED}
    values["f0"] = cfg.tracker
    return values


def other_settings(record: dict, spec: RunSpec) -> list[str]:
    """How the run recorded in ``record`` differs from ``spec``: ``"FIELD THERE there, HERE here"``
    per differing :class:`ddx7.run.FitConfig` field (every feature and training field, read as
    :meth:`FitConfig.from_saved` reads them, but those in :data:`NOT_COMPARED`; ``model`` among
    them) and the fixed configuration (when ``spec`` has one resolved); empty when the run may be
    reused."""
    there, here = _compared(runs.FitConfig.from_saved(record["config"])), _compared(fit_config(spec))
    differ = [f"{k} {there[k]!r} there, {here[k]!r} here" for k in here if there[k] != here[k]]
    if spec.config is not None:
        saved, wanted = record.get("fixed_config"), FixedConfig.from_dict(spec.config)
        if not saved or FixedConfig.from_dict(saved).key != wanted.key:
            differ.append(f"configuration {(saved or {}).get('name')!r} there, {wanted.name!r} here")
    return differ


def _checkpoint_step(run_dir: Path) -> int:
    """The step the run's checkpoint holds (0 without one)."""
    from safetensors import safe_open

    path = run_dir / runs.CHECKPOINT_FILE
    if not path.exists():
        return 0
    with safe_open(str(path), framework="pt") as fh:
        return int(json.loads((fh.metadata() or {}).get("meta", "{}")).get("step", 0))


def _summary(record: dict, spec: RunSpec, status: str, resumed_from: int | None, cpu_seconds: float = 0.0) -> dict:
    return {"run": spec.name, "status": status, "steps": record.get("steps"),
            "best_valid_loss": record.get("best_valid_loss"), "train_seconds": record.get("elapsed_s"),
            "resumed_from_step": resumed_from, "cpu_seconds": round(cpu_seconds, 2), "host": socket.gethostname()}


def finished_run(home, spec: RunSpec) -> dict | None:
    """:func:`train_spec`'s answer for a run already trained with these settings (``reused``), else None.

    Raises:
        DX7Error: a run of that name exists with other settings.
    """
    run_dir = runs.runs_dir(home) / spec.name
    if not (run_dir / runs.RECORD_FILE).exists():
        return None
    run = runs.Run.at(run_dir)
    differ = other_settings(run.record, spec)
    if differ:
        raise DX7Error(f"run {spec.name!r} exists with other settings ({'; '.join(differ)}); remove it or use "
                       "another --home", str(run_dir))
    return _summary(run.record, spec, "reused", None) if run.finished else None


def train_spec(payload: dict) -> dict:
    """Train, resume or reuse one run (a :meth:`RunSpec.payload`); what a worker runs.

    Returns:
        ``{"run", "status": "trained"|"reused", "steps", "best_valid_loss", "train_seconds",
        "resumed_from_step", "cpu_seconds" (this process's CPU time in the fit, all threads), "host"}``.

    Raises:
        DX7Error: the corpus missing here, a run of that name with other settings, training errors.
    """
    from ddx7.fit.run_fit import fit_run

    home, spec = payload["home"], RunSpec.from_payload(payload)
    _require_corpus(home, spec.corpus)
    done = finished_run(home, spec)
    if done is not None:
        return done
    run_dir = runs.runs_dir(home) / spec.name
    resume = (run_dir / runs.RECORD_FILE).exists()
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)       # stopped before its record was written: nothing to keep
    resumed_from = _checkpoint_step(run_dir) if resume else None
    cpu = time.process_time()
    try:
        cfg = fit_config(spec)       # what finished_run compared is what trains
        fit_run(home, spec.corpus, voice=spec.voice, model=spec.model, run=spec.name, resume=resume,
                steps=spec.steps, minutes=spec.minutes, settings={k: getattr(cfg, k) for k in SETTING_FIELDS},
                test_audio=spec.test_audio,
                fixed_config=FixedConfig.from_dict(spec.config) if spec.config else None)
    except Exception:
        if run_dir.exists() and not (run_dir / runs.RECORD_FILE).exists():
            shutil.rmtree(run_dir)   # failed before its record: leave no empty run folder behind
        raise
    return _summary(runs.read_record(run_dir), spec, "trained", resumed_from, time.process_time() - cpu)


def train_specs(home, specs: list[RunSpec], *, address: str | None = None, workers: int | None = None,
                progress: Progress | None = None) -> tuple[list[dict], bool]:
    """Run every spec (:func:`train_spec`) through :mod:`ddx7.fit.engine`, finished runs reused here.

    On Ray, new runs train with one torch thread each.

    Returns:
        ``(results, on_ray)``: one dict per spec, in order: :func:`train_spec`'s (``error`` None) or
        ``{"run", "error"}``, each with ``attempts``, ``retried``, ``hosts`` and ``wall_seconds``;
        whether Ray ran them.
    """
    from dataclasses import replace

    from dx7tools.library import resolve_home

    home = resolve_home(home).absolute()
    reused = {s.name: finished_run(home, s) for s in specs}
    todo = [s for s in specs if reused[s.name] is None]
    on_ray = bool(todo) and engine.uses_ray(len(todo), address, workers)
    if on_ray:
        todo = [replace(s, settings={**s.settings, "threads": 1}) for s in todo]
    ledger = home / LEDGER_DIR / uuid.uuid4().hex
    ledger.mkdir(parents=True)
    try:
        outcomes = engine.execute(train_spec, [engine.Call(s.name, s.payload(home)) for s in todo],
                                  address=address, workers=workers, ledger=ledger, progress=progress)
    finally:
        shutil.rmtree(ledger, ignore_errors=True)
        if ledger.parent.exists() and not any(ledger.parent.iterdir()):
            ledger.parent.rmdir()
    by_key = {o.key: o for o in outcomes}
    results = []
    for s in specs:
        o = by_key.get(s.name) or engine.Outcome(s.name, result=reused[s.name], attempts=0,
                                                 hosts=[socket.gethostname()])
        results.append({"run": o.key, **(o.result or {}), "error": o.error, "attempts": o.attempts,
                        "retried": o.attempts > 1, "hosts": sorted(set(o.hosts)), "wall_seconds": o.seconds})
    return results, on_ray


def require_some(results: list[dict]) -> list[dict]:
    """The failed results; :class:`SweepFailed` (with the reasons) when every run failed."""
    failed = [{"run": r["run"], "attempts": r["attempts"], "error": r["error"]} for r in results if r["error"]]
    if results and len(failed) == len(results):
        reasons = list(dict.fromkeys(f["error"] for f in failed))
        raise SweepFailed(f"all {len(failed)} runs failed ({len(reasons)} reason(s)); first: {reasons[0]}", failed)
    return failed


# -- 4. tabulate ----------------------------------------------------------------------------------
def _row_key(run: dict) -> tuple:
    return run["corpus"], run["model"], run["voice"]


def tabulate(run_rows: list[dict]) -> list[dict]:
    """One row per (corpus, model, voice) over its finished runs: :func:`ddx7.evaluate.spread.summarize`
    of their best validation losses, ``versus_best`` within the corpus, and the retried runs."""
    from ddx7.evaluate import spread     # (the evaluate package imports torch: not needed to plan or fail early)

    groups: dict[tuple, list[dict]] = {}
    for run in run_rows:
        if not run["error"] and run.get(METRIC) is not None:
            groups.setdefault(_row_key(run), []).append(run)
    rows = []
    for (corpus, model, voice), members in groups.items():
        rows.append({"corpus": corpus, "model": model, "voice": voice,
                     "configuration": members[0].get("configuration"),
                     **spread.summarize([m[METRIC] for m in members]),
                     "seeds": [m["seed"] for m in members], "runs": [m["run"] for m in members],
                     "steps": [m["steps"] for m in members],
                     "retried": [m["run"] for m in members if m["retried"]]})
    spread.mark_against_best(rows, group=lambda r: r["corpus"])
    return rows


def _describe_voice(row: dict) -> str:
    if row["model"] != "ddx7":
        return "—"
    name = (row.get("configuration") or "").strip()
    return row["voice"] + (f" ({name})" if name and name != row["voice"] else "")


def _features_text(result: dict) -> str:
    """``, features by TRACKER[ every N samples]`` (empty for results from before ``features``)."""
    features = result.get("features")
    if not features:
        return ""
    hop = features.get("crepe_hop")
    return f", features by {features['f0']}" + (f" every {hop} samples" if hop else "")


def to_markdown(result: dict) -> str:
    """The table (mean ± spread, n, the comparison with the best row), the retried and failed runs."""
    from ddx7.evaluate import spread

    budget = result["budget"]
    spent = f"{budget['steps']} steps" if budget["steps"] else f"{budget['minutes']:g} minutes"
    lines = [f"Best validation loss (multi-scale spectral loss, lower is better) over seeds "
             f"{', '.join(map(str, result['seeds']))}: mean ± sample standard deviation (n runs); training budget "
             f"{spent} per run, {result['engine']}{_features_text(result)}. A row within the spread of its "
             f"corpus's best is marked '{spread.SAME}'.", "",
             "| corpus | model | voice | best valid loss | vs best in corpus | steps | retried |",
             "|---|---|---|---:|---|---:|---|"]
    for r in result["rows"]:
        steps = sorted(set(s for s in r["steps"] if s is not None))
        lines.append(f"| {r['corpus']} | {r['model']} | {_describe_voice(r)} | {spread.format_value(r, '.4f')} | "
                     f"{r['versus_best']} | {', '.join(map(str, steps))} | {', '.join(r['retried']) or '—'} |")
    retried = [r for r in result["runs"] if r["retried"]]
    if retried:
        lines += ["", "Runs whose worker died and that Ray ran again (each resumed from its last checkpoint):", ""]
        lines += [f"- {r['run']}: {r['attempts']} attempts, resumed from step {r.get('resumed_from_step') or 0}"
                  + (f" ({r['error']})" if r["error"] else "") for r in retried]
    if result["failed"]:
        lines += ["", "Runs that failed:", "", "| run | attempts | reason |", "|---|---:|---|"]
        lines += [f"| {f['run']} | {f['attempts']} | {f['error']} |" for f in result["failed"]]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ("run", "corpus", "model", "voice", "configuration", "seed", "status", "steps", METRIC,
               "train_seconds", "attempts", "retried", "resumed_from_step", "error")


def to_csv(run_rows: list[dict]) -> str:
    """One line per run."""
    from ddx7.evaluate import spread

    return spread.rows_csv(run_rows, CSV_COLUMNS)


def write_tables(result: dict, out_dir: Path, stem: str) -> list[str]:
    """``STEM.md``, ``.csv`` and ``.json`` in ``out_dir``, each written atomically; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = (("md", result["markdown"]), ("csv", result["csv"]),
             ("json", json.dumps({k: v for k, v in result.items() if k not in ("markdown", "csv")}, indent=2)))
    files = []
    for ext, text in texts:
        atomic_write_bytes(out_dir / f"{stem}.{ext}", text.encode())
        files.append(str(out_dir / f"{stem}.{ext}"))
    return files


# -- the whole sweep ------------------------------------------------------------------------------
def _run_rows(specs: list[RunSpec], results: list[dict]) -> list[dict]:
    return [{"run": s.name, "corpus": s.corpus, "model": s.model, "voice": s.row or None, "seed": s.seed,
             "configuration": (s.config or {}).get("name"), "status": "failed" if r["error"] else r["status"],
             **{k: v for k, v in r.items() if k not in ("run", "status")}} for s, r in zip(specs, results)]


def sweep(home, corpora: Sequence[str], *, voices: Sequence[str | None] = (None,), models: Sequence[str] = ("ddx7",),
          seeds: int | Sequence[int] = 3, minutes: float | None = 4.0, steps: int | None = None,
          settings: dict | None = None, test_audio: bool = True, address: str | None = None,
          workers: int | None = None, out_dir=None, progress: Progress | None = None,
          say: Callable[[str], None] | None = None) -> dict:
    """Plan, prepare, train (or reuse/resume) and tabulate a sweep (see the module notes).

    Args:
        home: data home (corpora, library, runs); on a cluster, the same folder on every machine.
        corpora, voices, models: what to cross (HpN ignores voices; a voice None is the default).
        seeds: a count N (seeds 0..N-1) or a list of distinct seeds; ``"3,"``: seed 3 only
            (:func:`parse_seeds`).
        minutes / steps: the budget per run (steps, if given, wins). With minutes, runs sharing the
            cores train fewer steps each than a run alone; steps give every run the same work.
        settings: other :class:`ddx7.run.FitConfig` fields (:data:`SETTING_FIELDS`), checked before
            any work; without ``f0``, ``crepe`` or ``crepe_hop``, the f0 tracker is
            :data:`ddx7.data.f0.DEFAULT_F0`, as for ``fit``. On Ray every new run trains with one
            torch thread.
        test_audio: resynthesise each run's test split at its end, as ``fit`` does.
        address, workers: see :func:`ddx7.fit.engine.execute`.
        out_dir: where ``sweep.md``/``.csv``/``.json`` go (default ``<home>/sweep``).

    Returns:
        ``{"engine", "address", "workers", "seeds", "features": {"f0", "crepe_hop"}, "budget",
        "metric", "runs": [...], "rows": [...], "failed": [...], "retried": [...], "seconds",
        "markdown", "csv", "files"}``.

    Raises:
        SweepFailed: every run failed (nothing is written); DX7Error: bad input, or a run name taken
        by a run trained with other settings (:func:`other_settings`), before any training.
    """
    from dx7tools.library import resolve_home

    from ddx7.data.f0 import DEFAULT_F0

    started = time.perf_counter()
    settings = dict(settings or {})
    if not TRACKER_FIELDS & set(settings):
        settings = {**DEFAULT_F0, **settings}
    specs = plan_sweep(corpora, voices, models, seeds, minutes=minutes, steps=steps, settings=settings,
                       test_audio=test_audio)
    for spec in specs:      # a name taken by a run trained otherwise: refused before any work
        finished_run(home, spec)
    # A cluster is joined (or found unreachable) before any other work; Ray here starts only if there is training.
    with engine.connection(address, workers, on_ray=engine.uses_ray(len(specs), address, workers) and bool(address)):
        specs = prepare(home, specs, progress=progress, say=say)
        results, on_ray = train_specs(home, specs, address=address, workers=workers, progress=progress)
    failed = require_some(results)
    run_rows = _run_rows(specs, results)
    trained = any(r["status"] != "reused" for r in run_rows)
    cfg = fit_config(specs[0])
    result = {"engine": engine.describe(on_ray, address) if trained else "every run reused",
              "address": address, "workers": workers, "seeds": parse_seeds(seeds),
              "features": {"f0": cfg.tracker, "crepe_hop": cfg.crepe_hop},
              "budget": {"minutes": None if steps is not None else minutes, "steps": steps}, "metric": METRIC,
              "runs": run_rows, "rows": tabulate(run_rows), "failed": failed,
              "retried": [r["run"] for r in run_rows if r["retried"]],
              "seconds": round(time.perf_counter() - started, 1)}
    result["markdown"], result["csv"] = to_markdown(result), to_csv(run_rows)
    out = Path(out_dir) if out_dir is not None else resolve_home(home) / "sweep"
    result["files"] = write_tables(result, out, "sweep")
    return result
