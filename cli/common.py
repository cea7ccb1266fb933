"""What every command module shares: the consoles, the ``--home`` and ``--json`` options, JSON and table
output, warnings and progress bars. No commands and no typer app here; command modules import this module
and library code only."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Callable, Iterable, Iterator, List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dx7tools.library import HOME_ENV

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
F0Option = Annotated[Optional[str], typer.Option("--f0", help="f0 tracker: crepe-tiny, crepe-full, pesto or pyin "
                                                 "(default: crepe-tiny every 320 samples; see docs/f0.md).")]
AddressOption = Annotated[Optional[str], typer.Option("--address", help="Join a running Ray cluster: auto, "
                                                      "HOST:PORT or ray://HOST:PORT (its workers need this data "
                                                      "home at the same path; see docs/sweeps.md).")]


def print_json(data) -> None:
    """``data`` as indented JSON on stdout (non-ASCII kept as is)."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def warn(lines: List[str]) -> None:
    """One ``warning:`` line on stderr per entry."""
    for line in lines:
        err.print(f"[yellow]warning:[/] {line}", markup=True, highlight=False)


def print_rows(rows: list[dict], columns: Iterable[str], cells: Callable[[dict], list[str]], json_: bool) -> None:
    """``--json``: the rows as they are; else a table of ``cells(row)``."""
    if json_:
        print_json(rows)
        return
    table = Table()
    for col in columns:
        table.add_column(col)
    for r in rows:
        table.add_row(*cells(r))
    out.print(table)


def progress_bar(label: str) -> Progress:
    """A transient stderr bar labelled ``label``, counting ``completed/total``."""
    return Progress(TextColumn(f"[bold]{label}[/]"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f}"),
                    TimeElapsedColumn(), console=err, transient=True)


@contextmanager
def stage_progress(labels: dict[str, str] | None = None,
                   time_left: bool = False) -> Iterator[Callable[..., None]]:
    """A progress callback ``(stage, done, total, note="")`` drawing one bar per stage on stderr.

    Args:
        labels: the text shown for a stage (default: the stage's own name); ``note`` follows it.
        time_left: add a column with the time left at the rate so far (:class:`TimeLeft`).
    """
    columns = [TextColumn("[bold]{task.fields[label]}[/] {task.description}"), BarColumn(),
               TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn()]
    if time_left:
        columns += [TextColumn("left"), TimeLeft()]
    progress = Progress(*columns, console=err, transient=True)
    tasks: dict[str, int] = {}

    def update(stage: str, done: float, total: float, note: str = "") -> None:
        if stage not in tasks:
            for other in tasks.values():
                progress.update(other, visible=False)
            tasks[stage] = progress.add_task("", total=max(total, 1e-9), label=(labels or {}).get(stage, stage))
        progress.update(tasks[stage], completed=done, total=max(total, 1e-9), description=note)

    with progress:
        yield update


class TimeLeft(TextColumn):
    """A progress column: the time left at the rate so far, ``M:SS`` (``?`` before the first step)."""

    def __init__(self):
        super().__init__("")

    def render(self, task):  # type: ignore[override]
        from rich.text import Text

        if not task.total or not task.completed or task.elapsed is None:
            return Text("?")
        left = task.elapsed * (task.total - task.completed) / max(task.completed, 1e-9)
        return Text(f"{int(left // 60)}:{int(left % 60):02d}")
