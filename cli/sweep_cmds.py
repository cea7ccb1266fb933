"""Sweep command: many fit runs at once (corpora x voices x models x seeds), on Ray or one after another."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer
from typer.core import TyperCommand

from .common import AddressOption, F0Option, HomeOption, JsonOption, err, out, print_json, stage_progress

MANY_VALUES = ("--corpus", "--voice", "--model", "--seeds")
"""Options that take several values after one flag (``--corpus violin flute``)."""



def spread_values(args: list[str], options=MANY_VALUES) -> list[str]:
    """``--corpus violin flute`` -> ``--corpus violin --corpus flute`` for ``options``; other args as given."""
    result: list[str] = []
    current, has_value = None, False
    for arg in args:
        if arg == "--":
            current = None
        elif arg.startswith("-") and not arg.lstrip("-").isdigit():
            current, has_value = (arg if arg in options else None), False
        elif current is not None and has_value:
            result.append(current)
        elif current is not None:
            has_value = True
        result.append(arg)
    return result


class ManyValuesCommand(TyperCommand):
    """A command whose :data:`MANY_VALUES` options each take one or more values."""

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, spread_values(list(args)))


def _print_failures(failures: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="runs that failed", title_justify="left")
    for col in ("run", "attempts", "reason"):
        table.add_column(col)
    for f in failures:
        table.add_row(f["run"], str(f["attempts"]), f["error"])
    err.print(table)


def sweep(
    corpus: Annotated[List[str], typer.Option("--corpus", help="Corpora (names after the option: --corpus violin "
                                              "flute); violin/flute/trumpet are built if missing.")],
    voice: Annotated[Optional[List[str]], typer.Option("--voice", help="DDX7 voices: library voice ids or names, "
                                                       "auto (the selector's top voice), default (the paper's "
                                                       "configuration; the selector's pick on other corpora). "
                                                       "Default: default.")] = None,
    model: Annotated[Optional[List[str]], typer.Option("--model", help="ddx7 and/or hpn (HpN has no voice: one "
                                                       "run per corpus and seed).")] = None,
    seeds: Annotated[Optional[List[str]], typer.Option("--seeds", help="One number N: the N seeds 0..N-1 (--seeds "
                                                       "3 is seeds 0, 1, 2). Several values, or a value with a "
                                                       "comma: those seeds (--seeds 0 4 7, --seeds 0,4,7; --seeds 3, "
                                                       "is seed 3 only). No duplicates. Default: 3.")] = None,
    minutes: Annotated[float, typer.Option("--minutes", help="Training minutes per run (runs sharing the cores "
                                           "each train fewer steps than one alone: --steps gives equal work).")] = 4.0,
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="Train this many steps per run instead "
                                                 "of --minutes.")] = None,
    address: AddressOption = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Runs at once (default: this "
                                                   "machine's cores, or the cluster's CPUs); 1: one after another "
                                                   "in this process.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="torch threads per run one after "
                                                   "another (default: all cores); on Ray always 1.")] = None,
    f0: F0Option = None,
    crepe: Annotated[Optional[str], typer.Option("--crepe", help="CREPE model for f0: full or tiny (same as "
                                                 "--f0 crepe-full/crepe-tiny; alone with --crepe-hop, tiny).")] = None,
    crepe_hop: Annotated[Optional[int], typer.Option("--crepe-hop", help="Run CREPE every N samples and "
                                                     "interpolate to 250 frames/s (faster; default 64).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    segment_seconds: Annotated[float, typer.Option("--segment-seconds")] = 1.0,
    learning_rate: Annotated[float, typer.Option("--learning-rate")] = 5e-3,
    valid_every: Annotated[int, typer.Option("--valid-every", min=1, help="Validate every N steps.")] = 50,
    checkpoint_seconds: Annotated[float, typer.Option("--checkpoint-seconds", min=0.0, help="Write a checkpoint "
                                                      "at most this often.")] = 20.0,
    test_audio: Annotated[bool, typer.Option("--test-audio/--no-test-audio", help="Resynthesise each run's test "
                                             "split at its end.")] = True,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Folder for sweep.md/.csv/.json "
                                                   "(default HOME/sweep).")] = None,
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Train every combination of corpora, voices, models and seeds as ordinary fit runs (reused when finished,
    resumed when stopped), on Ray or one after another, and tabulate the best validation loss as mean ± spread
    (Python: ddx7.fit.sweep.sweep)."""
    from ddx7.data.f0 import resolve_tracker
    from ddx7.fit.sweep import SweepFailed, sweep as run_sweep

    settings = dict(threads=threads, batch_size=batch_size, segment_seconds=segment_seconds,
                    learning_rate=learning_rate, valid_every=valid_every, checkpoint_seconds=checkpoint_seconds,
                    **resolve_tracker(f0, crepe, crepe_hop, crepe_default="tiny"))
    try:
        with stage_progress() as progress:
            result = run_sweep(home, corpus, voices=[None if v == "default" else v for v in voice or [None]],
                               models=model or ["ddx7"], seeds=seeds or 3, minutes=minutes, steps=steps,
                               settings=settings, test_audio=test_audio, address=address, workers=workers,
                               out_dir=output, progress=progress,
                               say=lambda line: err.print(line, highlight=False, markup=False))
    except SweepFailed as exc:
        _print_failures(exc.failures)
        raise
    for f in result["failed"]:
        err.print(f"[yellow]warning:[/] {f['run']} failed: {f['error']}", markup=True, highlight=False)
    if json_:
        print_json({k: v for k, v in result.items() if k not in ("markdown", "csv")})
        return
    out.print(result["markdown"], highlight=False, markup=False)
    out.print(f"{len(result['runs'])} runs in {result['seconds']:.0f} s; wrote " + ", ".join(result["files"]),
              highlight=False)


def register(app: typer.Typer) -> None:
    """Add sweep to ``app``."""
    app.command("sweep", cls=ManyValuesCommand)(sweep)
