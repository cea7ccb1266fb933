"""Library commands: import cartridges, list and show voices, write banks, preview a voice as audio."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import numpy as np
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dx7tools import DX7Error, params
from dx7tools.algorithms import get_algorithm
from dx7tools.audio import SAMPLE_RATE
from dx7tools.envelope import operator_levels
from dx7tools.library import Library, LibraryVoice
from dx7tools.sysex import write_cartridge, write_single

from .common import HomeOption, JsonOption, err, out, print_json, warn


def _format_operator_frequency(ratio: Optional[float], fixed_hz: Optional[float]) -> str:
    if ratio is None:
        return f"{fixed_hz:.4g}Hz"
    return f"{ratio:g}"


# ---------------------------------------------------------------------------------------------
# import
# ---------------------------------------------------------------------------------------------


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
        print_json(report.to_dict())
    else:
        warn(report.warnings)
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
        print_json([v.to_dict() for v in voices])
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


def show(
    voice: Annotated[str, typer.Argument(help="Voice id or unique name.")],
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Every parameter of one voice, its algorithm diagram and envelopes (Python: Library.get)."""
    entry = Library(home).get(voice)
    if json_:
        print_json(_voice_json(entry))
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


def preview(
    voice: Annotated[str, typer.Argument(help="Voice id or unique name.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="WAV file to write (32-bit float).")],
    note: Annotated[int, typer.Option("--note", min=0, max=127, help="MIDI note.")] = 60,
    velocity: Annotated[int, typer.Option("--velocity", min=1, max=127, help="MIDI velocity.")] = 100,
    seconds: Annotated[float, typer.Option("--seconds", min=0.0, help="How long the key is held (s).")] = 2.0,
    tail: Annotated[float, typer.Option("--tail", min=0.0, help="Seconds rendered after key-up.")] = 0.5,
    engine: Annotated[str, typer.Option("--engine", help="dx7 (the DX7 engine), ddx7 (the training synth: no "
                                         "controllers) or dexed (needs the dexed extra).")] = "dx7",
    sample_rate: Annotated[int, typer.Option("--sample-rate", min=1000, help="Hz.")] = SAMPLE_RATE,
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Render a held note of a library voice to WAV (Python: ddx7.synth.preview.preview)."""
    from dx7tools.audio import write_wav

    from ddx7.synth.preview import ENGINES, preview as render

    if engine not in ENGINES:
        raise DX7Error(f"unknown engine {engine!r}; choose {', '.join(ENGINES)}")
    entry = Library(home).get(voice)
    missing: list[str] = []  # kept in --json for scripts; every engine plays the LFO and the pitch EG
    audio = render(entry.voice, note, velocity, seconds, engine=engine, tail=tail, sample_rate=sample_rate)
    write_wav(output, audio, sample_rate)
    info = {"file": str(output), "voice": entry.id, "name": entry.voice.name, "engine": engine,
            "note": note, "velocity": velocity, "seconds": round(len(audio) / sample_rate, 6),
            "sample_rate": sample_rate, "peak": round(float(np.max(np.abs(audio))), 6), "unmodelled": missing}
    if json_:
        print_json(info)
    else:
        out.print(f"wrote {info['seconds']:.2f} s of {entry.voice.name!r} (note {note}, velocity {velocity}, "
                  f"{engine}, {sample_rate} Hz, peak {info['peak']:.2f}) -> {output}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add import, list, show, bank and preview to ``app``."""
    app.command("import")(import_)
    app.command("list")(list_)
    app.command("show")(show)
    app.command("bank")(bank)
    app.command("preview")(preview)
