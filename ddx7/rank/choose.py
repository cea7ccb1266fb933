"""The fixed configuration a run uses: a library voice, or the paper's per instrument."""

from __future__ import annotations

import json
from importlib import resources

from dx7tools.errors import DX7Error
from dx7tools.fixed_config import FixedConfig
from dx7tools.sysex import parse_bytes

PAPER_INSTRUMENTS = ("violin", "flute", "trumpet")


def _patch_file(name: str) -> bytes:
    try:
        return resources.files("dx7tools_patches").joinpath(name).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise DX7Error(f"the project's patches are not installed ({exc})") from None


def paper_config(instrument: str) -> FixedConfig:
    """The paper's configuration for violin (STRINGS 1), flute (FLUTE 1) or trumpet (BRASS 3)."""
    table = json.loads(_patch_file("paper_configs.json"))
    if instrument not in table:
        raise DX7Error(f"no default configuration for {instrument!r} (have {', '.join(table)}); pass --voice")
    wanted = table[instrument]["voice"]
    cart = parse_bytes(_patch_file("dx7tools-starters.syx"), "dx7tools-starters.syx")
    for rec in cart.voices:
        if rec.voice.name.strip() == wanted:
            return FixedConfig.from_voice(rec.voice)
    raise DX7Error(f"voice {wanted!r} missing from dx7tools-starters.syx")


def auto_config(home, corpus: str, *, budget: float = 60.0, progress=None,
                feedback_cap: bool = True) -> tuple[FixedConfig, dict]:
    """``--voice auto``: the selector's top configuration for ``corpus``.

    Uses the saved ranking (``dx7tools rank``) when there is one made for the same
    ``feedback_cap`` as the run (rankings from before that option were made without it), else
    ranks now. A row placed
    an octave away (see :func:`dx7tools.lattice.lattice_cost`) is transposed exactly
    (:meth:`FixedConfig.transposed`); rows that cannot be are passed over.

    Returns:
        ``(config, selection)``: the configuration and what to record in the run (the ranking's
        message, whether it was complete, the chosen rank and the top rows).
    """
    from ddx7.rank.ranking import load_ranking, rank

    ranking = load_ranking(home, corpus)
    if ranking is not None and bool(ranking.stats.get("feedback_cap", False)) != bool(feedback_cap):
        ranking = None
    reused = ranking is not None
    if ranking is None:
        ranking = rank(home, corpus, budget=budget, progress=progress, feedback_cap=feedback_cap)
    config, row = ranking.best()
    # rankings saved before placed copies existed have no ratio_factor: their rows are the voices' own
    selection = {"corpus": corpus, "chosen_rank": row["rank"], "octave": row.get("octave", 0),
                 "ratio_factor": row.get("ratio_factor", 1.0), "reused_saved_ranking": reused,
                 "complete": ranking.complete, "message": ranking.message,
                 "top": [{**{k: r[k] for k in ("rank", "voices", "names", "algorithm", "ratios", "feedback",
                                               "octave", "score", "stage")},
                          "ratio_factor": r.get("ratio_factor", 1.0)} for r in ranking.rows[:10]]}
    return config, selection


def resolve_config(home, voice: str | None, instrument: str | None) -> FixedConfig:
    """``--voice``: a library voice id or name; ``None``: the paper's configuration for the
    corpus's instrument. (``auto`` needs the corpus: :func:`auto_config`.)"""
    if voice is None:
        if instrument not in PAPER_INSTRUMENTS:
            raise DX7Error(f"corpus instrument {instrument!r} has no default configuration; pass --voice VOICE")
        return paper_config(instrument)
    if voice == "auto":
        raise DX7Error("--voice auto needs the corpus: use ddx7.rank.choose.auto_config(home, corpus)")
    from dx7tools.library import Library

    return FixedConfig.from_voice(Library(home).get(voice).voice)
