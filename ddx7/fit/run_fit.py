"""A run trained in one call (``dx7tools fit``): the corpus, the configuration, features, training.

Stages, each reported through ``progress(stage, done, total, note)``:

1. the corpus: opened, or rendered first when it is a missing default one (violin, flute, trumpet);
2. the fixed configuration: ``--voice``, the paper's, or the selector's (:func:`ddx7.rank.choose.choose_config`);
3. features: CREPE f0 and loudness of every segment (cached per corpus);
4. training (:func:`ddx7.fit.train.fit`), then the test split resynthesised into the run folder.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Callable

from dx7tools.errors import DX7Error

from ddx7 import run as runs
from ddx7.fit import train

Progress = Callable[[str, float, float, str], None]
"""``progress(stage, done, total, note)``; stages: ``corpus``, ``configuration``, ``features``, ``training``."""

SETTINGS = tuple(f.name for f in fields(runs.FitConfig) if f.name not in ("corpus", "model", "voice", "steps",
                                                                            "minutes"))
"""The :class:`ddx7.run.FitConfig` fields ``fit_run`` takes as ``settings``."""


LONG_FEATURES_SECONDS = 120.0
"""Feature computations expected to take longer than this are announced with their cost."""


def _quiet(stage: str, done: float, total: float, note: str = "") -> None:
    return None


def _corpus_instrument(home, corpus: str, progress: Progress, say: Callable[[str], None]) -> str | None:
    """The corpus's instrument; a missing default corpus is built first (and said)."""
    from ddx7.data.corpus import INSTRUMENTS, Corpus, open_or_build

    if corpus not in INSTRUMENTS:
        return Corpus.open(home, corpus).instrument
    built, is_new = open_or_build(home, corpus, progress=lambda done, total: progress("corpus", done, total, ""))
    if is_new:
        minutes = sum(built.durations().values()) / 60
        say(f"corpus {corpus!r} did not exist: built the default one ({minutes:.1f} min of General MIDI {corpus} "
            f"phrases, as `dx7tools corpus build {corpus}` does)")
    return built.instrument


def _say_feature_cost(home, cfg: runs.FitConfig, say: Callable[[str], None]) -> None:
    """Warn before a long feature computation (e.g. CREPE full on audio not seen before)."""
    from ddx7.data.corpus import Corpus
    from ddx7.data.examples import uncached_seconds
    from ddx7.data.f0 import DEFAULT_F0, estimate_seconds

    if estimate_seconds(cfg.tracker, sum(Corpus.open(home, cfg.corpus).durations().values()), cfg.crepe_hop) \
            <= LONG_FEATURES_SECONDS:
        return      # short even if nothing is cached: no need to read and hash the corpus twice
    seconds = estimate_seconds(cfg.tracker, uncached_seconds(home, cfg.corpus, cfg), cfg.crepe_hop)
    if seconds > LONG_FEATURES_SECONDS:
        faster = seconds / max(estimate_seconds(DEFAULT_F0["f0"], uncached_seconds(home, cfg.corpus, cfg),
                                                DEFAULT_F0["crepe_hop"]), 1e-9)
        say(f"features: {cfg.tracker} on audio not seen before, about {seconds / 60:.0f} min on 2 cores "
            f"(cached for later runs; the default f0 tracker is about {faster:.0f}x faster)")


def _new_settings(home, corpus: str, *, voice, model, steps, minutes, settings: dict, progress: Progress,
                  say: Callable[[str], None], fixed_config=None):
    """``(FitConfig, FixedConfig | None, extra record keys)`` of a new run (``fixed_config``, when
    given, instead of the one ``voice`` names)."""
    from ddx7.rank.choose import choose_config

    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise DX7Error(f"unknown fit setting(s): {', '.join(unknown)}")
    if not {"f0", "crepe", "crepe_hop"} & set(settings):
        from ddx7.data.f0 import DEFAULT_F0

        settings = {**DEFAULT_F0, **settings}
    cfg = runs.FitConfig(corpus=corpus, model=model, voice=voice, steps=steps,
                         minutes=None if steps is not None else minutes, **settings)
    cfg.check()
    instrument = _corpus_instrument(home, corpus, progress, say)
    if model != "ddx7":
        return cfg, None, {}
    if fixed_config is not None:
        return cfg, fixed_config, {}
    config, selection, message = choose_config(
        home, corpus, voice, instrument, feedback_cap=cfg.feedback_cap,
        progress=lambda stage, done, total: progress("configuration", done, total, stage))
    if selection is None:
        return cfg, config, {}
    say(message)
    return cfg, config, {"selection": selection}


def fit_run(home, corpus: str, *, voice: str | None = None, model: str = "ddx7", run: str | None = None,
            resume: bool = False, steps: int | None = None, minutes: float | None = None,
            settings: dict | None = None, test_audio: bool = True, progress: Progress | None = None,
            say: Callable[[str], None] | None = None, fixed_config=None) -> dict:
    """Train a new run on ``corpus`` (or resume ``run``) and resynthesise its test split.

    Args:
        home: data home (library, corpora, runs).
        corpus: corpus name; a missing violin/flute/trumpet corpus is built first.
        voice: a library voice id or name, ``auto`` (the selector's top row), or None (the
            paper's configuration for violin/flute/trumpet, else the selector's pick).
        model: ``ddx7`` or ``hpn``.
        run: run name (default ``CORPUS-MODEL[-N]``); ``resume`` continues it with its own
            settings (``steps``/``minutes`` give it a new budget).
        steps, minutes: the budget (default: :attr:`FitConfig.minutes` minutes).
        settings: other :class:`ddx7.run.FitConfig` fields (:data:`SETTINGS`), for new runs;
            without any of ``f0``, ``crepe``, ``crepe_hop``, the f0 tracker is
            :data:`ddx7.data.f0.DEFAULT_F0`.
        progress: ``progress(stage, done, total, note)`` (see :data:`Progress`).
        say: called with each line worth telling the user (a corpus built, the selector's pick).
        fixed_config: a :class:`~dx7tools.fixed_config.FixedConfig` for a new DDX7 run, chosen
            beforehand (a sweep resolves ``voice`` once for all its seeds); ``voice`` is then only recorded.

    Returns:
        ``{"run", "path", "model", "steps", "best_valid_loss", "parameters", "seconds",
        "test_audio", "test_level_db", "fixed_config", "selection"?}`` — what ``dx7tools fit --json``
        prints; ``test_level_db``: the test resynthesis' level against the recordings (median dB).
    """
    progress, say = progress or _quiet, say or (lambda line: None)
    if steps is None and minutes is None:
        minutes = runs.FitConfig.minutes
    if resume and run is None:
        raise DX7Error("--resume needs --run NAME")
    name = runs.check_name(run) if run else runs.default_run_name(home, corpus, model)
    run_dir = runs.runs_dir(home) / name
    extra: dict = {}
    if resume:
        runs.start(run_dir, resume=True)
        cfg, config = runs.resume_settings(runs.Run.at(run_dir), steps=steps, minutes=minutes)
    else:
        runs.start(run_dir, resume=False)
        cfg, config, extra = _new_settings(home, corpus, voice=voice, model=model, steps=steps, minutes=minutes,
                                           settings=settings or {}, progress=progress, say=say,
                                           fixed_config=fixed_config)
    if config is not None:
        say(f"fixed configuration: {config.describe()} ({config.name})")
    _say_feature_cost(home, cfg, say)
    data = train.load_examples(home, cfg.corpus, cfg, progress=lambda done, total: progress("features", done,
                                                                                            total, ""))
    total = cfg.steps if cfg.steps is not None else cfg.minutes * 60.0

    def on_step(ev: dict) -> None:
        done = ev["step"] if cfg.steps is not None else ev["elapsed_s"]
        progress("training", min(done, total), total,
                 f"step {ev['step']}  loss {ev['loss']:.3f}  best valid {ev['best_valid']:.3f}")

    result = train.fit(home, run_dir, cfg, config, resume=resume, progress=on_step, data=data, extra=extra)
    files, level = train.write_test_resynthesis(run_dir, data) if test_audio and data["test"] else ([], None)
    if level is not None and level <= train.QUIET_DB:
        say(f"warning: the model plays {-level:.0f} dB below the recordings of the test split (median over "
            f"{len(files) // 2} excerpts): listen to {run_dir / runs.TEST_DIR} before using it; another --seed or "
            "--learning-rate may train one that plays (docs/training.md)")
    info = {"run": name, "path": str(run_dir), "model": cfg.model, "steps": result.steps,
            "best_valid_loss": round(result.best_valid, 6), "parameters": result.parameters,
            "seconds": round(result.elapsed_s, 1), "test_audio": str(run_dir / runs.TEST_DIR) if files else None,
            "test_excerpts": len(files) // 2, "test_level_db": None if level is None else round(level, 2),
            "fixed_config": config.to_dict() if config is not None else None}
    if extra.get("selection"):
        info["selection"] = extra["selection"]
    return info
