"""The fixed configuration a run uses: a library voice, or the paper's per instrument."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from dx7tools.errors import DX7Error
from dx7tools.fixed_config import FixedConfig
from dx7tools.sysex import parse_bytes

from ddx7.data.corpus import INSTRUMENTS

PROJECT_CARTRIDGE = "dx7tools-starters.syx"
"""The project's own cartridge (package ``dx7tools_patches``): the paper's three configurations and
a few simple stacks, always among the selector's choices when a run names no voice."""


def patch_file(name: str) -> bytes:
    """A file of the project's patches (package ``dx7tools_patches``), as bytes."""
    try:
        return resources.files("dx7tools_patches").joinpath(name).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise DX7Error(f"the project's patches are not installed ({exc})") from None


def paper_config(instrument: str) -> FixedConfig:
    """The paper's configuration for violin (STRINGS 1), flute (FLUTE 1) or trumpet (BRASS 3)."""
    table = json.loads(patch_file("paper_configs.json"))
    if instrument not in table:
        raise DX7Error(f"no default configuration for {instrument!r} (have {', '.join(table)}); pass --voice")
    wanted = table[instrument]["voice"]
    cart = parse_bytes(patch_file(PROJECT_CARTRIDGE), PROJECT_CARTRIDGE)
    for rec in cart.voices:
        if rec.voice.name.strip() == wanted:
            return FixedConfig.from_voice(rec.voice)
    raise DX7Error(f"voice {wanted!r} missing from {PROJECT_CARTRIDGE}")


def _row_summary(row: dict) -> dict:
    """What a run records of a ranking row (older rankings may lack octave and ratio_factor)."""
    return {**{k: row[k] for k in ("rank", "voices", "names", "algorithm", "ratios", "feedback", "score", "stage")},
            "octave": row.get("octave", 0), "ratio_factor": row.get("ratio_factor", 1.0)}


def auto_config(home, corpus: str, *, budget: float = 60.0, progress=None,
                feedback_cap: bool = True, reuse: bool = True) -> tuple[FixedConfig, dict]:
    """``--voice auto``: the selector's top configuration for ``corpus``.

    Uses the saved ranking (``dx7tools rank``) when it was made for the library as it is now (the
    same voices, no algorithm filter) and for the run's ``feedback_cap``, unless ``reuse`` is
    False; else ranks now. A row placed an octave away (see :func:`dx7tools.lattice.lattice_cost`)
    is transposed exactly (:meth:`FixedConfig.transposed`); rows that cannot be are passed over.

    Returns:
        ``(config, selection)``: the configuration and what to record in the run (the ranking's
        message, whether it was complete, the chosen rank and row, and the top rows).

    Raises:
        DX7Error: an empty library, a ranking that stopped before its fits
            (:meth:`~ddx7.rank.ranking.Ranking.pick`), ranking errors.
    """
    from dx7tools.library import Library

    from ddx7.rank.ranking import load_ranking, rank

    ranking = load_ranking(home, corpus) if reuse else None
    if ranking is not None and not ranking.made_for([v.id for v in Library(home).voices()],
                                                    feedback_cap=feedback_cap):
        ranking = None
    reused = ranking is not None
    if ranking is None:
        ranking = rank(home, corpus, budget=budget, progress=progress, feedback_cap=feedback_cap)
    config, row = ranking.pick()
    selection = {"corpus": corpus, "chosen_rank": row["rank"], "octave": row.get("octave", 0),
                 "ratio_factor": row.get("ratio_factor", 1.0), "reused_saved_ranking": reused,
                 "complete": ranking.complete, "message": ranking.message, "chosen": _row_summary(row),
                 "top": [_row_summary(r) for r in ranking.rows[:10]]}
    return config, selection


def resolve_config(home, voice: str | None, instrument: str | None) -> FixedConfig:
    """``--voice``: a library voice id or name; ``None``: the paper's configuration for the
    corpus's instrument. (``auto`` needs the corpus: :func:`auto_config`.)"""
    if voice is None:
        if instrument not in INSTRUMENTS:
            raise DX7Error(f"corpus instrument {instrument!r} has no default configuration; pass --voice VOICE")
        return paper_config(instrument)
    if voice == "auto":
        raise DX7Error("--voice auto needs the corpus: use ddx7.rank.choose.auto_config(home, corpus)")
    from dx7tools.library import Library

    return FixedConfig.from_voice(Library(home).get(voice).voice)


def add_project_cartridge(home) -> tuple[list[int], int]:
    """Import the project's cartridge (:data:`PROJECT_CARTRIDGE`) into the library of ``home``;
    voices already there are not added twice.

    Returns:
        ``(ids, new)``: the library ids of its voices and how many of them were added now.
    """
    from dx7tools.library import Library

    try:
        with resources.as_file(resources.files("dx7tools_patches").joinpath(PROJECT_CARTRIDGE)) as path:
            report = Library(home).import_files([Path(path)])
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise DX7Error(f"the project's patches are not installed ({exc})") from None
    return sorted(set(report.ids)), report.new


def choose_config(home, corpus: str, voice: str | None, instrument: str | None, *, feedback_cap: bool = True,
                  budget: float = 60.0, progress=None) -> tuple[FixedConfig, dict | None, str]:
    """The fixed configuration a DDX7 run on ``corpus`` trains with, for every ``--voice``.

    * ``voice`` a library voice id or name: that voice's configuration.
    * ``voice == "auto"``: the selector's top configuration (:func:`auto_config`).
    * ``voice`` None, the corpus's ``instrument`` violin, flute or trumpet: the paper's
      configuration (:func:`paper_config`).
    * ``voice`` None, any other corpus (recordings of one's own): the project's cartridge is
      imported into the library where its voices are missing (:func:`add_project_cartridge`),
      the library is ranked for the corpus (:func:`ddx7.rank.ranking.rank`, saved as
      ``rankings/CORPUS.json``; a saved ranking is reused only if made for the same voices) and its
      top configuration is used. A library that held nothing but the project's cartridge gets a
      one-line hint to import more voices.

    Args:
        feedback_cap, budget, progress: for the ranking (see :func:`ddx7.rank.ranking.rank`).

    Returns:
        ``(config, selection, message)``: the configuration; what to record as the run's
        ``selection`` when the selector chose (:func:`auto_config`'s, plus ``project_cartridge``:
        the cartridge's file, its library ids and how many were added now), else None; and what
        to tell the user (one line, a second one for the hint).

    Raises:
        DX7Error: unknown voice, empty library with ``auto``, ranking errors (one line each).
    """
    if voice is not None and voice != "auto":
        config = resolve_config(home, voice, instrument)
        return config, None, f"library voice {voice!r}: {config.name.strip()}"
    if voice == "auto":
        config, selection = auto_config(home, corpus, budget=budget, progress=progress, feedback_cap=feedback_cap)
        how = "saved ranking" if selection["reused_saved_ranking"] else "ranked now"
        return config, selection, f"--voice auto: rank {selection['chosen_rank']} of the selector ({how})"
    if instrument in INSTRUMENTS:
        config = paper_config(instrument)
        return config, None, f"the paper's configuration for {instrument}: {config.name.strip()}"
    from dx7tools.library import Library

    ids, added = add_project_cartridge(home)
    config, selection = auto_config(home, corpus, budget=budget, progress=progress, feedback_cap=feedback_cap)
    selection["project_cartridge"] = {"file": PROJECT_CARTRIDGE, "voices": ids, "added": added}
    top = selection["chosen"]
    label = instrument if instrument else "no instrument"
    cart = (f"{added} voices of the project's cartridge {PROJECT_CARTRIDGE} added to the library" if added
            else f"with the project's cartridge {PROJECT_CARTRIDGE}")
    how = "saved ranking" if selection["reused_saved_ranking"] else "ranked now"
    message = (f"corpus {corpus!r} ({label}) has no default configuration and no --voice was given: the selector "
               f"picked rank {selection['chosen_rank']}, {' / '.join(n.strip() for n in top['names'])} "
               f"(library {'voices' if len(top['voices']) > 1 else 'voice'} "
               f"{', '.join(map(str, top['voices']))}; {how}, {cart})")
    if not selection["complete"]:
        message += f"; the ranking is incomplete: {selection['message']}"
    if not {v.id for v in Library(home).voices()} - set(ids):
        message += ("\nhint: the library holds only the project's cartridge; import your own cartridges "
                    "(dx7tools import FILE.syx) for the selector to choose among more voices")
    return config, selection, message
