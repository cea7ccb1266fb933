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


def resolve_config(home, voice: str | None, instrument: str | None) -> FixedConfig:
    """``--voice``: a library voice id or name; ``auto``: the selector's top voice; ``None``: the
    paper's configuration for the corpus's instrument."""
    if voice is None:
        if instrument not in PAPER_INSTRUMENTS:
            raise DX7Error(f"corpus instrument {instrument!r} has no default configuration; pass --voice VOICE")
        return paper_config(instrument)
    if voice == "auto":
        raise DX7Error("--voice auto needs the patch selector's ranking, which is not available yet; "
                       "pass --voice VOICE")
    from dx7tools.library import Library

    return FixedConfig.from_voice(Library(home).get(voice).voice)
