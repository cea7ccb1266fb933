"""Training commands: fit a run on a corpus, resynthesise recordings with it, list the runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from dx7tools import DX7Error

from .common import HomeOption, JsonOption, TimeLeft, err, out, print_json, print_rows, progress_bar


def _open_or_build(home, corpus: str):
    """The corpus; a missing default one (violin, flute, trumpet) is rendered first, said on stderr."""
    from ddx7.data.corpus import INSTRUMENTS, Corpus, open_or_build

    if corpus not in INSTRUMENTS:
        return Corpus.open(home, corpus)
    with progress_bar(f"building the {corpus} corpus") as bar:
        task = bar.add_task("build", total=1)
        built, is_new = open_or_build(home, corpus,
                                      progress=lambda done, total: bar.update(task, completed=done, total=total))
    if is_new:
        durations = built.durations()
        err.print(f"corpus {corpus!r} did not exist: built the default one ({sum(durations.values()) / 60:.1f} min "
                  f"of General MIDI {corpus} phrases, as `dx7tools corpus build {corpus}` does)", highlight=False)
    return built


def fit(
    corpus: Annotated[str, typer.Option("--corpus", help="Corpus name (see `dx7tools corpus list`).")],
    voice: Annotated[Optional[str], typer.Option("--voice", help="Library voice id or name whose fixed configuration "
                                                 "DDX7 uses; auto: the selector's top voice (see `dx7tools rank`); "
                                                 "default: the paper's for violin/flute/trumpet, the selector's "
                                                 "pick for any other corpus.")] = None,
    model: Annotated[str, typer.Option("--model", help="ddx7 or hpn (the DDSP baseline).")] = "ddx7",
    minutes: Annotated[Optional[float], typer.Option("--minutes", help="Training time budget.")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Train this many steps instead of --minutes.")] = None,
    run: Annotated[Optional[str], typer.Option("--run", help="Run name (default: CORPUS-MODEL[-N]).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run named by --run after a stop.")] = False,
    crepe: Annotated[str, typer.Option("--crepe", help="CREPE model for f0: full or tiny.")] = "full",
    crepe_hop: Annotated[Optional[int], typer.Option("--crepe-hop", help="Run CREPE every N samples and "
                                                     "interpolate to 250 frames/s (faster; default 64).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    segment_seconds: Annotated[float, typer.Option("--segment-seconds")] = 1.0,
    learning_rate: Annotated[float, typer.Option("--learning-rate")] = 5e-3,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    threads: Annotated[Optional[int], typer.Option("--threads", help="torch threads (default: all cores).")] = None,
    valid_every: Annotated[int, typer.Option("--valid-every", min=1, help="Validate every N steps.")] = 50,
    checkpoint_seconds: Annotated[float, typer.Option("--checkpoint-seconds", min=0.0,
                                                      help="Write a checkpoint at most this often.")] = 20.0,
    test_audio: Annotated[bool, typer.Option("--test-audio/--no-test-audio", help="Resynthesise the test split "
                                             "at the end.")] = True,
    feedback_cap: Annotated[bool, typer.Option("--feedback-cap/--no-feedback-cap", help="Hold the feedback "
                                               "operator below the chaotic regime (FEEDBACK 7 above output level "
                                               "91), where training gets stuck.")] = True,
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Train DDX7 (or HpN) on a corpus (Python: ddx7.fit.train.fit)."""
    from ddx7 import run as runs
    from ddx7.fit import train
    from ddx7.rank.choose import choose_config

    if steps is None and minutes is None:
        minutes = runs.FitConfig.minutes
    extra: dict = {}
    if resume and run is None:
        raise DX7Error("--resume needs --run NAME")
    name = runs.check_name(run) if run else runs.default_run_name(home, corpus, model)
    run_dir = runs.runs_dir(home) / name
    if resume:
        runs.start(run_dir, resume=True)
        cfg, config = runs.resume_settings(runs.Run.at(run_dir), steps=steps, minutes=minutes)
    else:
        cfg = runs.FitConfig(corpus=corpus, model=model, voice=voice, steps=steps,
                              minutes=None if steps is not None else minutes, segment_seconds=segment_seconds,
                              batch_size=batch_size, learning_rate=learning_rate, crepe=crepe, crepe_hop=crepe_hop,
                              seed=seed, threads=threads, valid_every=valid_every,
                              checkpoint_seconds=checkpoint_seconds, feedback_cap=feedback_cap)
        cfg.check()
        instrument = _open_or_build(home, corpus).instrument
        config = None
        if model == "ddx7":
            with progress_bar("choosing the configuration") as bar:
                task = bar.add_task("rank", total=1)
                config, selection, message = choose_config(
                    home, corpus, voice, instrument, feedback_cap=feedback_cap,
                    progress=lambda stage, done, total: bar.update(task, completed=done, total=total,
                                                                   description=stage))
            if selection is not None:
                extra = {"selection": selection}
                err.print(message, highlight=False)
    if config is not None:
        err.print(f"fixed configuration: {config.describe()} ({config.name})", highlight=False)
    with progress_bar("features") as bar:
        task = bar.add_task("features", total=1)
        data = train.load_examples(home, cfg.corpus, cfg,
                                   progress=lambda done, total: bar.update(task, completed=done, total=total))
    progress = Progress(TextColumn("[bold]training[/] {task.description}"), BarColumn(),
                        TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(), TextColumn("left"),
                        TimeLeft(), console=err, transient=True)
    with progress:
        total = cfg.steps if cfg.steps is not None else cfg.minutes * 60.0
        task = progress.add_task("", total=total)

        def on_step(ev: dict) -> None:
            done = ev["step"] if cfg.steps is not None else ev["elapsed_s"]
            progress.update(task, completed=min(done, total),
                            description=f"step {ev['step']}  loss {ev['loss']:.3f}  best valid {ev['best_valid']:.3f}")

        result = train.fit(home, run_dir, cfg, config, resume=resume, progress=on_step, data=data, extra=extra)
    files = train.write_test_resynthesis(run_dir, data) if test_audio and data["test"] else []
    info = {"run": name, "path": str(run_dir), "model": cfg.model, "steps": result.steps,
            "best_valid_loss": round(result.best_valid, 6), "parameters": result.parameters,
            "seconds": round(result.elapsed_s, 1), "test_audio": str(run_dir / "test") if files else None,
            "fixed_config": config.to_dict() if config is not None else None}
    if extra.get("selection"):
        info["selection"] = extra["selection"]
    if json_:
        print_json(info)
    else:
        out.print(f"run {name}: {cfg.model}, {result.parameters:,} parameters, {result.steps} steps in "
                  f"{result.elapsed_s / 60:.1f} min, best validation loss {result.best_valid:.4f}", highlight=False)
        if files:
            out.print(f"test split resynthesised: {run_dir / 'test'} ({len(files) // 2} excerpts)", highlight=False)


def resynth(
    run: Annotated[str, typer.Argument(help="Run name (see `dx7tools runs`) or run folder.")],
    input_: Annotated[Path, typer.Argument(metavar="IN", help="Any audio file soundfile reads.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="WAV to write (16 kHz, 32-bit float).")],
    block_seconds: Annotated[float, typer.Option("--block-seconds", min=0.1, help="Block length.")] = 10.0,
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Resynthesise any recording with a trained run, in blocks (Python: ddx7.resynth.resynthesize_file)."""
    from ddx7.run import run_path
    from ddx7.resynth import resynthesize_file

    run_dir = run_path(home, run)
    with progress_bar("resynthesis") as bar:
        task = bar.add_task("resynth", total=1)
        info = resynthesize_file(run_dir, input_, output, block_seconds=block_seconds,
                                 progress=lambda done, total: bar.update(task, completed=done, total=total))
    if json_:
        print_json(info)
    else:
        out.print(f"wrote {info['seconds']:.1f} s -> {output}", highlight=False)


def runs(json_: JsonOption = False, home: HomeOption = None) -> None:
    """Training runs in the data home (Python: ddx7.run.list_runs)."""
    from ddx7.run import list_runs

    def cells(r: dict) -> list[str]:
        return [str(r["name"]), str(r["corpus"]), str(r["model"]), str(r["status"]), str(r.get("steps") or ""),
                f"{r['best_valid_loss']:.4f}" if r.get("best_valid_loss") is not None else "",
                f"{r['parameters']:,}" if r.get("parameters") else ""]

    print_rows(list_runs(home), ("name", "corpus", "model", "status", "steps", "best valid", "parameters"),
               cells, json_)


def register(app: typer.Typer) -> None:
    """Add fit, resynth and runs to ``app``."""
    app.command("fit")(fit)
    app.command("resynth")(resynth)
    app.command("runs")(runs)
