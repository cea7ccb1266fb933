"""Corpus commands: ``dx7tools corpus build|add|list``, the instrument recordings a run trains on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from dx7tools import DX7Error

from .common import HomeOption, JsonOption, out, print_json, print_rows, progress_bar, warn


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

    with progress_bar(f"rendering {instrument}") as bar:
        task = bar.add_task("render", total=1)
        corpus = build_corpus(home, instrument, minutes=minutes, seed=seed, overwrite=overwrite,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
    warn(list(corpus.warnings))
    info = _corpus_info(corpus)
    print_json(info) if json_ else _print_corpus(info)


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
    with progress_bar(f"reading {name}") as bar:
        task = bar.add_task("read", total=1)
        corpus = add_corpus(home, name, audio_dir=audio, urmp_dir=urmp, instrument=instrument, overwrite=overwrite,
                            min_seconds=min_seconds,
                            progress=lambda done, total: bar.update(task, completed=done, total=total))
    warn(list(getattr(corpus, "warnings", []) or []))
    info = _corpus_info(corpus)
    print_json(info) if json_ else _print_corpus(info)


def corpus_list(json_: JsonOption = False, home: HomeOption = None) -> None:
    """Corpora in the data home with their durations (Python: ddx7.data.corpus.list_corpora)."""
    from ddx7.data.corpus import list_corpora

    def cells(r: dict) -> list[str]:
        d, segs = r.get("durations") or {}, r.get("segments")
        return [r["name"], str(r.get("kind", "")), str(r.get("instrument") or ""),
                *(f"{d.get(s, 0.0):.1f}" for s in ("train", "valid", "test")),
                str(sum(segs.values()) if isinstance(segs, dict) else segs or "")]

    print_rows(list_corpora(home), ("name", "kind", "instrument", "train s", "valid s", "test s", "segments"),
               cells, json_)


def register(app: typer.Typer) -> None:
    """Add the ``corpus`` group (build, add, list) to ``app``."""
    corpus_app = typer.Typer(help="Instrument corpora for training: build the defaults, add recordings, list.",
                             no_args_is_help=True)
    corpus_app.command("build")(corpus_build)
    corpus_app.command("add")(corpus_add)
    corpus_app.command("list")(corpus_list)
    app.add_typer(corpus_app, name="corpus")
