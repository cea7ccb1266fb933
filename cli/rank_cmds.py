"""``dx7tools rank``: the patch selector (Python: ddx7.rank.ranking.rank)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .common import F0Option, HomeOption, JsonOption, err, out, print_json, warn


def _ratio_text(ratios: list) -> str:
    return ", ".join(r if isinstance(r, str) else f"{r:g}" for r in ratios)


def rank(
    corpus: Annotated[str, typer.Option("--corpus", help="Corpus name (see `dx7tools corpus list`).")],
    top: Annotated[int, typer.Option("--top", min=0, help="Show the best K configurations (0: all).")] = 10,
    algorithm: Annotated[Optional[int], typer.Option("--algorithm", min=1, max=32,
                                                     help="Rank only voices of this DX7 algorithm.")] = None,
    budget: Annotated[float, typer.Option("--budget", min=0.001, help="Seconds for the ranking once the corpus's "
                                          "features are cached; the fits stop when they are spent.")] = 60.0,
    candidates: Annotated[int, typer.Option("--candidates", min=0,
                                            help="On libraries too large to fit every configuration fully "
                                            "within the budget: the quick fit's best given the full fit.")] = 40,
    f0: F0Option = None,
    crepe: Annotated[Optional[str], typer.Option("--crepe", help="CREPE model for f0: tiny or full (same as "
                                                 "--f0 crepe-tiny/crepe-full; alone with --crepe-hop, tiny).")] = None,
    crepe_hop: Annotated[Optional[int], typer.Option("--crepe-hop", help="Run CREPE every N samples (faster).")] = None,
    feedback_cap: Annotated[bool, typer.Option("--feedback-cap/--no-feedback-cap", help="Score what `dx7tools fit` "
                                               "can train: the feedback operator held below chaos (as fit does by "
                                               "default); --no-feedback-cap ranks for runs trained without it.")] = True,
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Rank library voices by how well their fixed configuration can play a corpus
    (Python: ddx7.rank.ranking.rank)."""
    from ddx7.rank.ranking import STEADY_CENTS, rank as rank_corpus

    progress = Progress(TextColumn("[bold]{task.description}[/]"), BarColumn(),
                        TextColumn("{task.completed:.0f}/{task.total:.0f}"), TimeElapsedColumn(),
                        console=err, transient=True)
    tasks: dict[str, int] = {}

    def on_progress(stage: str, done: float, total: float) -> None:
        if not tasks:
            progress.start()   # only once there is work to show: bad input fails on a clean line
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)

    try:
        result = rank_corpus(home, corpus, algorithm=algorithm, budget=budget, candidates=candidates, crepe=crepe,
                             crepe_hop=crepe_hop, f0=f0, progress=on_progress, feedback_cap=feedback_cap)
    finally:
        if tasks:
            progress.stop()
    if not result.complete or result.stats["excerpt_pitch_spread_cents"] >= STEADY_CENTS[0]:
        warn([result.message])   # a partial ranking, or one on unsteady excerpts
    rows = result.rows[:top] if top else result.rows
    if json_:
        print_json(rows)
        return
    table = Table(title=f"{corpus}: {result.message} in {result.stats['total_s']:.1f} s "
                        f"(score: lower is better)", title_justify="left")
    for col in ("rank", "voices", "algorithm", "ratios OP1..OP6", "fb", "octave", "score", "stage"):
        table.add_column(col, justify="right" if col in ("rank", "algorithm", "fb", "octave", "score", "stage")
                         else "left")
    for r in rows:
        names = ", ".join(f"{i} {n.strip()}" for i, n in zip(r["voices"][:3], r["names"][:3]))
        if len(r["voices"]) > 3:
            names += f" (+{len(r['voices']) - 3})"
        if r.get("ratio_factor", 1.0) != 1.0:
            names += f" (ratios x{r['ratio_factor']:.4g})"
        table.add_row(str(r["rank"]), names, str(r["algorithm"]), _ratio_text(r["ratios"]), str(r["feedback"]),
                      f"{r['octave']:+d}" if r["octave"] else "0", f"{r['score']:.3f}", str(r["stage"]))
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add rank to ``app``."""
    app.command("rank")(rank)
