"""Evaluation commands: eval (FAD of a run), paper-table (the paper's comparison), report (an HTML page)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from .common import AddressOption, F0Option, HomeOption, JsonOption, out, print_json, stage_progress

EmbeddingOption = Annotated[str, typer.Option("--embedding", help="FAD embedding: crepe-tiny (default, offline) or "
                                              "vggish (needs --weights).")]
WeightsOption = Annotated[Optional[Path], typer.Option("--weights", help="VGGish weights (.safetensors or a "
                                                       "PyTorch state dict); default $DX7TOOLS_VGGISH_WEIGHTS.")]
DiagonalOption = Annotated[bool, typer.Option("--diagonal", help="Diagonal covariances, for sets too small for a "
                                              "full one (not comparable with full FADs).")]


def eval_(
    run: Annotated[str, typer.Argument(help="Run name (see `dx7tools runs`) or run folder.")],
    embedding: EmbeddingOption = "crepe-tiny",
    weights: WeightsOption = None,
    diagonal: DiagonalOption = False,
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """FAD of a run's resynthesised test split against its complete corpus, with the floor (original test
    split) and the HpN run of the same corpus as reference rows (Python: ddx7.evaluate.evaluate_run)."""
    from ddx7.evaluate import evaluate_run

    with stage_progress() as progress:
        result = evaluate_run(home, run, embedding=embedding, weights=weights, diagonal=diagonal, progress=progress)
    if json_:
        print_json(result)
        return
    from rich.table import Table

    table = Table(title=f"FAD vs the complete corpus {result['corpus']} (lower is better)", title_justify="left")
    for col in ("row", "FAD", "frames"):
        table.add_column(col, justify="left" if col == "row" else "right")
    table.add_row(f"{result['run']} ({result['model']})", f"{result['fad']:.4f}", str(result["n_frames"]))
    for r in result["reference"]:
        label = "original test split (floor)" if r["row"] == "original" else f"HpN ({r.get('run')})"
        table.add_row(label, f"{r['fad']:.4f}", str(r["n_frames"]))
    out.print(table)
    out.print(f"embedding: {result['embedding_description']}" + (", diagonal covariances" if diagonal else ""),
              highlight=False)
    out.print(f"corpus: {result['corpus_frames']} frames from {result['audio_seconds'] / 60:.1f} min; "
              f"{result['seconds']:.1f} s", highlight=False)


def paper_table_cmd(
    more: Annotated[Optional[List[str]], typer.Argument(metavar="[CORPUS]...", help="More corpus names (so "
                                                        "`--corpus violin flute trumpet` works).")] = None,
    corpus: Annotated[Optional[List[str]], typer.Option("--corpus", help="Corpora (repeat the option or list "
                                                       "names after it); default violin flute trumpet, "
                                                       "built if missing.")] = None,
    minutes: Annotated[float, typer.Option("--minutes", help="Training minutes per model.")] = 4.0,
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="Train this many steps per model "
                                                 "instead of --minutes.")] = None,
    f0: F0Option = None,
    crepe: Annotated[Optional[str], typer.Option("--crepe", help="CREPE model for the training features (same as "
                                                 "--f0 crepe-tiny/crepe-full).")] = None,
    embedding: EmbeddingOption = "crepe-tiny",
    weights: WeightsOption = None,
    diagonal: DiagonalOption = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Folder for paper-table.md/.csv/.json "
                                                   "(default HOME/paper-table).")] = None,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Seeds per model row (0..N-1): FADs as mean ± "
                                       "spread (n).")] = 1,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Runs at once, as Ray tasks (one torch thread "
                                         "each); 1: one after another in this process.")] = 1,
    address: AddressOption = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Training batch size of new "
                                                      "runs (fit's default: 8).")] = None,
    segment_seconds: Annotated[Optional[float], typer.Option("--segment-seconds", min=0.1, help="Training crop "
                                                             "length of new runs (fit's default: 1.0).")] = None,
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Train (or reuse) HpN, DDX7 6-op, DDX7 2-op and DDX7 on the selector's top voice per corpus, evaluate all
    with one embedding and write the table beside the paper's figures (Python: ddx7.evaluate.paper_table.paper_table)."""
    from ddx7.evaluate.paper_table import paper_table

    corpora = list(dict.fromkeys([*(corpus or []), *(more or [])])) or ["violin", "flute", "trumpet"]
    with stage_progress() as progress:
        result = paper_table(home, corpora, minutes=minutes, steps=steps, crepe=crepe, f0=f0, embedding=embedding,
                             weights=weights, diagonal=diagonal, out_dir=output, seeds=seeds, workers=workers,
                             address=address, progress=progress,
                             fit_overrides={k: v for k, v in (("batch_size", batch_size),
                                                              ("segment_seconds", segment_seconds)) if v is not None})
    if json_:
        print_json({k: v for k, v in result.items() if k not in ("markdown", "csv")})
        return
    out.print(result["markdown"], highlight=False, markup=False)
    out.print("wrote " + ", ".join(result["files"]), highlight=False)


def report(
    run: Annotated[str, typer.Argument(help="Run name (see `dx7tools runs`) or run folder.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write (self-contained).")],
    excerpts: Annotated[int, typer.Option("--excerpts", min=1, max=20, help="Test excerpts shown.")] = 3,
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """One self-contained HTML page: loss curves, spectrograms, operator envelopes, f0 and loudness, the
    algorithm, FAD rows and audio players (Python: ddx7.evaluate.report.write_report)."""
    from ddx7.evaluate.report import write_report

    with stage_progress() as progress:
        path = write_report(home, run, output, excerpts=excerpts, progress=progress)
    info = {"run": run, "output": str(path), "bytes": path.stat().st_size}
    if json_:
        print_json(info)
    else:
        out.print(f"wrote {path} ({info['bytes'] / 1e6:.1f} MB)", highlight=False)


def register(app: typer.Typer) -> None:
    """Add eval, paper-table and report to ``app``."""
    app.command("eval")(eval_)
    app.command("paper-table")(paper_table_cmd)
    app.command("report")(report)
