"""Build ``patches/dx7tools-starters.syx``: the project's own cartridge, written by our writer.

Voices 1-3 carry the DDX7 paper's fixed configurations (algorithm, ratios, feedback as in the
factory voices STRINGS 1, FLUTE 1 and BRASS 3 that the paper copied); their envelopes and levels
are our own starting points. The rest are further instrument and ablation starting points.
Run ``python patches/build.py`` to rebuild; a test checks the committed file matches this script.

Operator rows are OP1..OP6: (coarse, fine, output_level, (rate 1-4), (level 1-4)).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dx7tools import Voice, write_cartridge

HERE = Path(__file__).resolve().parent
CARTRIDGE = HERE / "dx7tools-starters.syx"
CONFIGS = HERE / "paper_configs.json"

SLOW = (45, 30, 20, 50), (99, 95, 90, 0)
BREATH = (62, 40, 30, 55), (99, 92, 88, 0)
BLOWN = (70, 45, 35, 55), (99, 94, 86, 0)
PLUCK = (95, 40, 25, 45), (99, 80, 0, 0)
ORGAN = (99, 99, 99, 70), (99, 99, 99, 0)
SILENT = (99, 99, 99, 99), (0, 0, 0, 0)

# name, algorithm (1-32), feedback, operators OP1..OP6
VOICES = [
    ("DDX7 VIOLN", 2, 7, [(1, 0, 99, *SLOW), (1, 0, 80, *SLOW), (1, 0, 99, *SLOW),
                          (1, 0, 78, *SLOW), (3, 0, 82, *SLOW), (14, 0, 55, *SLOW)]),
    ("DDX7 FLUTE", 16, 5, [(1, 0, 99, *BREATH), (1, 0, 72, *BREATH), (1, 0, 74, *BREATH),
                           (2, 0, 40, *BREATH), (2, 0, 58, *BREATH), (1, 53, 80, *BREATH)]),
    ("DDX7 TRUMP", 18, 6, [(1, 0, 99, *BLOWN), (1, 0, 72, *BLOWN), (1, 0, 76, *BLOWN),
                           (1, 0, 78, *BLOWN), (3, 6, 68, *BLOWN), (7, 21, 75, *BLOWN)]),
    ("2OP STACK", 5, 0, [(1, 0, 99, *SLOW), (1, 0, 80, *SLOW), (1, 0, 0, *SILENT),
                         (1, 0, 0, *SILENT), (1, 0, 0, *SILENT), (1, 0, 0, *SILENT)]),
    ("4OP STACK", 1, 0, [(1, 0, 0, *SILENT), (1, 0, 0, *SILENT), (1, 0, 99, *SLOW),
                         (1, 0, 80, *SLOW), (1, 0, 75, *SLOW), (1, 0, 70, *SLOW)]),
    ("2X2 STACKS", 5, 0, [(1, 0, 99, *SLOW), (1, 0, 80, *SLOW), (1, 0, 90, *SLOW),
                          (3, 0, 70, *SLOW), (1, 0, 0, *SILENT), (1, 0, 0, *SILENT)]),
    ("CLARINET", 5, 3, [(1, 0, 99, *BLOWN), (2, 0, 78, *BLOWN), (1, 0, 0, *SILENT),
                        (1, 0, 0, *SILENT), (1, 0, 0, *SILENT), (1, 0, 0, *SILENT)]),
    ("E.PIANO", 5, 6, [(1, 0, 99, *PLUCK), (14, 0, 58, *PLUCK), (1, 0, 92, *PLUCK),
                       (1, 0, 70, *PLUCK), (1, 0, 85, *PLUCK), (1, 0, 60, *PLUCK)]),
    ("ORGAN", 32, 0, [(0, 0, 92, *ORGAN), (1, 0, 99, *ORGAN), (2, 0, 88, *ORGAN),
                      (3, 0, 80, *ORGAN), (4, 0, 78, *ORGAN), (6, 0, 72, *ORGAN)]),
]

# The instrument -> voice map that `fit` uses by default (the paper's configurations).
PAPER_CONFIGS = {
    "violin": {"voice": "DDX7 VIOLN", "paper_patch": "STRINGS 1", "algorithm": 2},
    "flute": {"voice": "DDX7 FLUTE", "paper_patch": "FLUTE 1", "algorithm": 16},
    "trumpet": {"voice": "DDX7 TRUMP", "paper_patch": "BRASS 3", "algorithm": 18},
}


def build_voice(name: str, algorithm: int, feedback: int, operators) -> Voice:
    changes = {"algorithm": algorithm - 1, "feedback": feedback}
    for number, (coarse, fine, level, rates, levels) in enumerate(operators, start=1):
        changes[f"op{number}_coarse"] = coarse
        changes[f"op{number}_fine"] = fine
        changes[f"op{number}_output_level"] = level
        for i in range(4):
            changes[f"op{number}_eg_rate_{i + 1}"] = rates[i]
            changes[f"op{number}_eg_level_{i + 1}"] = levels[i]
    return Voice.init().replace(**changes).with_name(name)


def build_voices() -> list[Voice]:
    return [build_voice(*spec) for spec in VOICES]


def main() -> int:
    write_cartridge(CARTRIDGE, build_voices())
    CONFIGS.write_text(json.dumps(PAPER_CONFIGS, indent=2) + "\n")
    print(f"wrote {CARTRIDGE} and {CONFIGS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
