"""The ``dx7tools`` command line: a thin typer layer over library calls.

Every command maps to a function a user can call from Python (named in each docstring). Bad
input ends in one ``error:`` line on stderr naming the file and the problem, and exit code 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dx7tools import DX7Error, params
from dx7tools.algorithms import get_algorithm
from dx7tools.envelope import operator_levels
from dx7tools.library import HOME_ENV, Library, LibraryVoice
from dx7tools.sysex import write_cartridge, write_single

app = typer.Typer(
    name="dx7tools",
    help="DX7 patch-aware sound design: import cartridges, browse voices, write banks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output keeps whole table rows (rich would otherwise wrap them at 80 columns).
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True)

HomeOption = Annotated[
    Optional[Path],
    typer.Option(
        "--home",
        help=f"Data home for the library, corpora and runs (default: ${HOME_ENV}, else the user data folder).",
        envvar=HOME_ENV,
        show_envvar=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _warn(lines: List[str]) -> None:
    for line in lines:
        err.print(f"[yellow]warning:[/] {line}", markup=True, highlight=False)


def _format_operator_frequency(ratio: Optional[float], fixed_hz: Optional[float]) -> str:
    if ratio is None:
        return f"{fixed_hz:.4g}Hz"
    return f"{ratio:g}"


# ---------------------------------------------------------------------------------------------
# import
# ---------------------------------------------------------------------------------------------


@app.command("import")
def import_(
    files: Annotated[List[Path], typer.Argument(help="SysEx cartridges (.syx), single voices, raw banks (.dx7).")],
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Import every file under folders.")] = False,
    repair_names: Annotated[
        bool, typer.Option("--repair-names", help="Replace control characters in voice names by spaces.")
    ] = False,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Import the readable files and list the others, instead of stopping.")
    ] = False,
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Import every voice of the given files into the library (Python: Library.import_files)."""
    library = Library(home)
    show_progress = not json_ and err.is_terminal and (len(files) > 1 or recursive)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not show_progress,
    ) as progress:
        task = progress.add_task("reading", total=None)

        def step(path: Path) -> None:
            progress.update(task, advance=1, description=f"reading {path.name}")

        report = library.import_files(
            files, recursive=recursive, repair_names=repair_names, skip_bad=skip_bad, progress=step
        )
    if json_:
        _print_json(report.to_dict())
    else:
        _warn(report.warnings)
        for line in report.failed:
            err.print(f"[red]skipped:[/] {line}", markup=True, highlight=False)
        out.print(
            f"{report.files} file(s): {report.voices_read} voices read, {report.new} new, "
            f"{report.duplicates} duplicates, {len(report.warnings)} warnings"
            + (f", {len(report.failed)} file(s) skipped" if report.failed else "")
            + f" -> {library.path}",
            highlight=False,
        )


# ---------------------------------------------------------------------------------------------
# list
# ---------------------------------------------------------------------------------------------


@app.command("list")
def list_(
    algorithm: Annotated[Optional[int], typer.Option("--algorithm", "-a", help="Only this algorithm (1-32).")] = None,
    name: Annotated[
        Optional[str], typer.Option("--name", "-n", help="Name substring, or a shell pattern such as 'BRASS*'.")
    ] = None,
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """List library voices (Python: Library.voices)."""
    voices = Library(home).voices(algorithm=algorithm, name=name)
    if json_:
        _print_json([v.to_dict() for v in voices])
        return
    table = Table(title=f"{len(voices)} voice(s)", title_justify="left")
    for col, justify in (("id", "right"), ("name", "left"), ("alg", "right")):
        table.add_column(col, justify=justify, no_wrap=True)
    for n in range(1, 7):
        table.add_column(f"OP{n}", justify="right")
    table.add_column("fb", justify="right")
    table.add_column("source", no_wrap=True)
    for v in voices:
        freqs = [_format_operator_frequency(op.ratio, op.fixed_hz) for op in v.voice.operators]
        src = v.sources[0] if v.sources else None
        where = f"{Path(src.file).name}:{src.bank + 1}:{src.slot + 1}" if src else ""
        table.add_row(str(v.id), v.name, str(v.voice.algorithm), *freqs, str(v.voice.feedback), where)
    out.print(table)


# ---------------------------------------------------------------------------------------------
# show
# ---------------------------------------------------------------------------------------------


def _voice_json(entry: LibraryVoice) -> dict:
    voice = entry.voice
    data = {**entry.to_dict(), "parameters": voice.to_dict()["parameters"]}
    data["operators"] = [dict(number=op.number, **op.to_dict()) for op in voice.operators]
    data["diagram"] = get_algorithm(voice.algorithm).diagram()
    return data


_BARS = " ▁▂▃▄▅▆▇█"


def _envelope_sketch(voice, note: int = 60, held: float = 2.0, total: float = 3.0, width: int = 60) -> str:
    """Each operator's level over a held note (dB, 0 to -60), drawn with block characters."""
    frames = operator_levels(voice, note=note, velocity=100, note_seconds=held, total_seconds=total,
                             frame_rate=width / total)
    db = 20 * np.log10(np.maximum(frames, 1e-9))
    steps = np.clip(np.round((db + 60) / 60 * (len(_BARS) - 1)), 0, len(_BARS) - 1).astype(int)
    key_up = int(round(held / total * width))
    lines = [f"envelopes (note {note}, velocity 100, key held {held:g} s of {total:g} s; 0 to -60 dB)"]
    for n in range(6):
        bars = "".join(_BARS[i] for i in steps[:, n])
        lines.append(f"  OP{n + 1} |{bars[:key_up]}|{bars[key_up:]}|")
    return "\n".join(lines)


@app.command("show")
def show(
    voice: Annotated[str, typer.Argument(help="Voice id or unique name.")],
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Every parameter of one voice, its algorithm diagram and envelopes (Python: Library.get)."""
    entry = Library(home).get(voice)
    if json_:
        _print_json(_voice_json(entry))
        return
    v = entry.voice
    out.print(f"[bold]{entry.id}  {v.name}[/]   algorithm {v.algorithm}, feedback {v.feedback}", highlight=False)
    for src in entry.sources:
        out.print(f"  from {src}", highlight=False)
    out.print(f"  hash {v.content_hash[:16]}", highlight=False)
    out.print(get_algorithm(v.algorithm).diagram(), highlight=False, markup=False)

    ops = Table(title="operators", title_justify="left")
    ops.add_column("parameter")
    for n in range(1, 7):
        ops.add_column(f"OP{n}", justify="right")
    for field in params.OPERATOR_FIELD_NAMES:
        label = params.BY_KEY[f"op1_{field}"].label.removeprefix("OP1 ")
        ops.add_row(label, *(str(v[f"op{n}_{field}"]) for n in range(1, 7)))
    ops.add_row(
        "= frequency", *(_format_operator_frequency(op.ratio, op.fixed_hz) for op in v.operators), style="bold"
    )
    out.print(ops)

    out.print(_envelope_sketch(v), highlight=False, markup=False)

    common = Table(title="voice", title_justify="left")
    common.add_column("parameter")
    common.add_column("value", justify="right")
    for p, value in v.items():
        if p.operator is None and not p.key.startswith("name_"):
            common.add_row(p.label, str(value + p.display_offset))
    out.print(common)


# ---------------------------------------------------------------------------------------------
# bank
# ---------------------------------------------------------------------------------------------


@app.command("bank")
def bank(
    voices: Annotated[List[str], typer.Argument(help="Voice ids or unique names, in slot order (at most 32).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write (.syx).")],
    single: Annotated[bool, typer.Option("--single", help="Write one voice as a single-voice (VCED) dump.")] = False,
    channel: Annotated[int, typer.Option("--channel", min=1, max=16, help="MIDI channel in the header.")] = 1,
    home: HomeOption = None,
) -> None:
    """Write library voices as a 32-voice cartridge, padded with INIT VOICE (Python: write_cartridge)."""
    library = Library(home)
    chosen = [library.get(ref).voice for ref in voices]
    if single:
        if len(chosen) != 1:
            raise DX7Error(f"--single writes one voice, got {len(chosen)}")
        write_single(output, chosen[0], channel)
        out.print(f"wrote single voice {chosen[0].name!r} -> {output}", highlight=False)
    else:
        write_cartridge(output, chosen, channel)
        out.print(f"wrote {len(chosen)} voice(s) + {32 - len(chosen)} INIT VOICE -> {output}", highlight=False)


# ---------------------------------------------------------------------------------------------
# preview
# ---------------------------------------------------------------------------------------------


@app.command("preview")
def preview(
    voice: Annotated[str, typer.Argument(help="Voice id or unique name.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="WAV file to write (32-bit float).")],
    note: Annotated[int, typer.Option("--note", min=0, max=127, help="MIDI note.")] = 60,
    velocity: Annotated[int, typer.Option("--velocity", min=1, max=127, help="MIDI velocity.")] = 100,
    seconds: Annotated[float, typer.Option("--seconds", min=0.0, help="How long the key is held (s).")] = 2.0,
    tail: Annotated[float, typer.Option("--tail", min=0.0, help="Seconds rendered after key-up.")] = 0.5,
    engine: Annotated[str, typer.Option("--engine", help="ddx7 (our synth) or dexed (needs the dexed extra).")] = "ddx7",
    sample_rate: Annotated[int, typer.Option("--sample-rate", min=1000, help="Hz.")] = 16000,
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Render a held note of a library voice to WAV (Python: ddx7.synth.preview.preview)."""
    from dx7tools.audio import write_wav

    if engine not in ("ddx7", "dexed"):
        raise DX7Error(f"unknown engine {engine!r}; choose ddx7 or dexed")
    entry = Library(home).get(voice)
    from ddx7.synth.preview import preview as render, unmodelled_features

    missing = unmodelled_features(entry.voice) if engine == "ddx7" else []
    if missing:
        _warn([f"{entry.voice.name!r} uses {', '.join(missing)}, which the ddx7 engine does not model"])
    audio = render(entry.voice, note, velocity, seconds, engine=engine, tail=tail, sample_rate=sample_rate)
    write_wav(output, audio, sample_rate)
    info = {"file": str(output), "voice": entry.id, "name": entry.voice.name, "engine": engine,
            "note": note, "velocity": velocity, "seconds": round(len(audio) / sample_rate, 6),
            "sample_rate": sample_rate, "peak": round(float(np.max(np.abs(audio))), 6), "unmodelled": missing}
    if json_:
        _print_json(info)
    else:
        out.print(f"wrote {info['seconds']:.2f} s of {entry.voice.name!r} (note {note}, velocity {velocity}, "
                  f"{engine}, {sample_rate} Hz, peak {info['peak']:.2f}) -> {output}", highlight=False)


# ---------------------------------------------------------------------------------------------
# corpus
# ---------------------------------------------------------------------------------------------

corpus_app = typer.Typer(help="Instrument corpora for training: build the defaults, add recordings, list.",
                         no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")


def _print_rows(rows: list[dict], columns, cells, json_: bool) -> None:
    """``--json``: the rows as they are; else a table of ``cells(row)``."""
    if json_:
        _print_json(rows)
        return
    table = Table()
    for col in columns:
        table.add_column(col)
    for r in rows:
        table.add_row(*cells(r))
    out.print(table)


def _progress_bar(label: str):
    return Progress(TextColumn(f"[bold]{label}[/]"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f}"),
                    TimeElapsedColumn(), console=err, transient=True)


def _print_corpus(info: dict) -> None:
    table = Table(title=f"corpus {info['name']}", title_justify="left")
    for col in ("split", "segments", "seconds"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for split in ("train", "valid", "test"):
        table.add_row(split, str(info.get("segments", {}).get(split, "")),
                      f"{info.get('durations', {}).get(split, 0.0):.1f}")
    out.print(table)


def _corpus_info(corpus) -> dict:
    segs = corpus.segments()
    return {"name": corpus.name, "path": str(corpus.path),
            "segments": {s: sum(1 for x in segs if x["split"] == s) for s in ("train", "valid", "test")},
            "durations": {k: round(v, 3) for k, v in corpus.durations().items()}}


@corpus_app.command("build")
def corpus_build(
    instrument: Annotated[str, typer.Argument(help="violin, flute or trumpet.")],
    minutes: Annotated[float, typer.Option("--minutes", min=0.05, help="Minutes of audio to render.")] = 5.0,
    seed: Annotated[int, typer.Option("--seed", help="Phrase generator seed.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing corpus of that name.")] = False,
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Render a default corpus offline with the General MIDI soundfont (Python: ddx7.data.corpus.build_corpus)."""
    from ddx7.data.corpus import build_corpus

    with _progress_bar(f"rendering {instrument}") as bar:
        task = bar.add_task("render", total=1)
        corpus = build_corpus(home, instrument, minutes=minutes, seed=seed, overwrite=overwrite,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
    info = _corpus_info(corpus)
    _print_json(info) if json_ else _print_corpus(info)


@corpus_app.command("add")
def corpus_add(
    name: Annotated[str, typer.Argument(help="Name of the new corpus (lowercase letters, digits, - and _).")],
    audio: Annotated[Optional[Path], typer.Option("--audio", help="Folder of recordings (wav/flac/ogg/mp3).")] = None,
    urmp: Annotated[Optional[Path], typer.Option("--urmp", help="URMP dataset folder (AuSep_* stems).")] = None,
    instrument: Annotated[Optional[str], typer.Option("--instrument", help="URMP instrument code: vn, fl, tpt, ...")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing corpus of that name.")] = False,
    min_seconds: Annotated[float, typer.Option("--min-seconds", help="Leave out sounds shorter than this "
                                               "(0.2 s at least; lower it for short plucked or struck notes).")] = 0.5,
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Make a corpus from your recordings or URMP stems (Python: ddx7.data.corpus.add_corpus)."""
    from ddx7.data.corpus import add_corpus

    if (audio is None) == (urmp is None):
        raise DX7Error("give exactly one of --audio DIR or --urmp DIR")
    with _progress_bar(f"reading {name}") as bar:
        task = bar.add_task("read", total=1)
        corpus = add_corpus(home, name, audio_dir=audio, urmp_dir=urmp, instrument=instrument, overwrite=overwrite,
                            min_seconds=min_seconds,
                            progress=lambda done, total: bar.update(task, completed=done, total=total))
    _warn(list(getattr(corpus, "warnings", []) or []))
    info = _corpus_info(corpus)
    _print_json(info) if json_ else _print_corpus(info)


@corpus_app.command("list")
def corpus_list(json_: JsonOption = False, home: HomeOption = None) -> None:
    """Corpora in the data home with their durations (Python: ddx7.data.corpus.list_corpora)."""
    from ddx7.data.corpus import list_corpora

    def cells(r: dict) -> list[str]:
        d, segs = r.get("durations") or {}, r.get("segments")
        return [r["name"], str(r.get("kind", "")), str(r.get("instrument") or ""),
                *(f"{d.get(s, 0.0):.1f}" for s in ("train", "valid", "test")),
                str(sum(segs.values()) if isinstance(segs, dict) else segs or "")]

    _print_rows(list_corpora(home), ("name", "kind", "instrument", "train s", "valid s", "test s", "segments"),
                cells, json_)


# ---------------------------------------------------------------------------------------------
# fit / resynth / runs
# ---------------------------------------------------------------------------------------------


@app.command("fit")
def fit(
    corpus: Annotated[str, typer.Option("--corpus", help="Corpus name (see `dx7tools corpus list`).")],
    voice: Annotated[Optional[str], typer.Option("--voice", help="Library voice id or name whose fixed configuration "
                                                 "DDX7 uses; auto: the selector's top voice (see `dx7tools rank`); "
                                                 "default: the paper's for violin/flute/trumpet.")] = None,
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
    from ddx7.data.corpus import Corpus
    from ddx7.rank.choose import auto_config, resolve_config

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
        instrument = Corpus.open(home, corpus).to_dict().get("instrument")
        if model == "ddx7" and voice == "auto":
            with _progress_bar("ranking voices") as bar:
                task = bar.add_task("rank", total=1)
                config, selection = auto_config(
                    home, corpus, feedback_cap=feedback_cap, progress=lambda stage, done, total: bar.update(
                        task, completed=done, total=total, description=stage))
            extra = {"selection": selection}
            err.print(f"--voice auto: rank {selection['chosen_rank']} of the selector "
                      f"({'saved ranking' if selection['reused_saved_ranking'] else 'ranked now'})",
                      highlight=False)
        else:
            config = resolve_config(home, voice, instrument) if model == "ddx7" else None
    if config is not None:
        err.print(f"fixed configuration: {config.describe()} ({config.name})", highlight=False)
    with _progress_bar("features") as bar:
        task = bar.add_task("features", total=1)
        data = train.load_examples(home, cfg.corpus, cfg,
                                   progress=lambda done, total: bar.update(task, completed=done, total=total))
    progress = Progress(TextColumn("[bold]training[/] {task.description}"), BarColumn(),
                        TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(), TextColumn("left"),
                        _TimeLeft(), console=err, transient=True)
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
        _print_json(info)
    else:
        out.print(f"run {name}: {cfg.model}, {result.parameters:,} parameters, {result.steps} steps in "
                  f"{result.elapsed_s / 60:.1f} min, best validation loss {result.best_valid:.4f}", highlight=False)
        if files:
            out.print(f"test split resynthesised: {run_dir / 'test'} ({len(files) // 2} excerpts)", highlight=False)


class _TimeLeft(TextColumn):
    def __init__(self):
        super().__init__("")

    def render(self, task):  # type: ignore[override]
        from rich.text import Text

        if not task.total or not task.completed or task.elapsed is None:
            return Text("?")
        left = task.elapsed * (task.total - task.completed) / max(task.completed, 1e-9)
        return Text(f"{int(left // 60)}:{int(left % 60):02d}")


@app.command("resynth")
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
    with _progress_bar("resynthesis") as bar:
        task = bar.add_task("resynth", total=1)
        info = resynthesize_file(run_dir, input_, output, block_seconds=block_seconds,
                                 progress=lambda done, total: bar.update(task, completed=done, total=total))
    if json_:
        _print_json(info)
    else:
        out.print(f"wrote {info['seconds']:.1f} s -> {output}", highlight=False)


@app.command("runs")
def runs(json_: JsonOption = False, home: HomeOption = None) -> None:
    """Training runs in the data home (Python: ddx7.run.list_runs)."""
    from ddx7.run import list_runs

    def cells(r: dict) -> list[str]:
        return [str(r["name"]), str(r["corpus"]), str(r["model"]), str(r["status"]), str(r.get("steps") or ""),
                f"{r['best_valid_loss']:.4f}" if r.get("best_valid_loss") is not None else "",
                f"{r['parameters']:,}" if r.get("parameters") else ""]

    _print_rows(list_runs(home), ("name", "corpus", "model", "status", "steps", "best valid", "parameters"),
                cells, json_)


from . import export_cmds  # noqa: E402,F401  (registers commands)
from . import eval_cmds  # noqa: E402,F401  (registers commands)
from . import rank_cmds  # noqa: E402,F401  (registers commands)


def main() -> None:
    """Console-script entry point: run the app, turning DX7Error into one line and exit 1."""
    try:
        app()
    except DX7Error as exc:
        err.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
        sys.exit(1)
    except OSError as exc:  # disk full, permissions, ...: atomic writes left the previous files intact
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        err.print(f"[red]error:[/] {where}{exc.strerror or exc}", markup=True, highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]", markup=True)
        sys.exit(130)
