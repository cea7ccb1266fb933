"""The ``dx7tools`` command line: a thin typer layer over library calls.

Every command maps to a function a user can call from Python (named in each docstring). Bad input ends
in one ``error:`` line on stderr naming the file and the problem, and exit code 1.

This module only assembles the app: each ``*_cmds`` module defines its commands and a ``register(app)``,
and shares options and output helpers through ``common``; none of them imports this module.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from dx7tools import DX7Error

from . import corpus_cmds, eval_cmds, export_cmds, fit_cmds, library_cmds, rank_cmds, sweep_cmds
from .common import err

app = typer.Typer(
    name="dx7tools",
    help="DX7 patch-aware sound design: import cartridges, browse voices, write banks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# The order `dx7tools --help` lists them in (typer lists the corpus group after the commands).
for module in (library_cmds, fit_cmds, sweep_cmds, export_cmds, eval_cmds, rank_cmds, corpus_cmds):
    module.register(app)


def main() -> None:
    """Console-script entry point: run the app, turning DX7Error into one line and exit 1."""
    try:
        app()
    except DX7Error as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", markup=True, highlight=False)   # '[ray]' stays text
        sys.exit(1)
    except OSError as exc:  # disk full, permissions, ...: atomic writes left the previous files intact
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        err.print(f"[red]error:[/] {where}{exc.strerror or exc}", markup=True, highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]", markup=True)
        sys.exit(130)
