"""The project's own cartridge: rebuilt by our writer, carrying the paper's configurations."""

from __future__ import annotations

import importlib.util
import json

from dx7tools import read_file
from tests.conftest import PATCHES


def load_build():
    spec = importlib.util.spec_from_file_location("patches_build", PATCHES / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_cartridge_is_what_build_writes(tmp_path):
    from dx7tools import vmem_message

    build = load_build()
    assert (PATCHES / "dx7tools-starters.syx").read_bytes() == vmem_message(build.build_voices())
    assert json.loads((PATCHES / "paper_configs.json").read_text()) == build.PAPER_CONFIGS


def test_paper_configurations():
    # the DDX7 paper (Caspe, McPherson and Sandler, ISMIR 2022): algorithm and OP1..OP6 ratios of its three voices
    voices = {r.voice.name: r.voice for r in read_file(PATCHES / "dx7tools-starters.syx").voices}
    configs = json.loads((PATCHES / "paper_configs.json").read_text())
    expected = {
        "violin": (2, [1, 1, 1, 1, 3, 14]),
        "flute": (16, [1, 1, 1, 2, 2, 1.53]),
        "trumpet": (18, [1, 1, 1, 1, 3.18, 8.47]),
    }
    for instrument, (algorithm, ratios) in expected.items():
        voice = voices[configs[instrument]["voice"]]
        assert voice.algorithm == algorithm == configs[instrument]["algorithm"]
        assert voice.ratios == ratios
        assert voice.feedback > 0
