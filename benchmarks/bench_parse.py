"""Parse throughput: dx7tools' reader against dexed-py's ``Patch.load_bank``, same run, same files.

Makes 1,000 distinct 32-voice cartridges (random valid voices, plus hexter's factory banks when
DX7TOOLS_HEXTER_DIR points at them), writes them to a temporary folder, and times
- from disk: ``dx7tools.read_file(path)`` vs ``dexed.Patch.load_bank(path)``;
- from memory: ``dx7tools.parse_bytes(data)`` vs ``dexed.Patch.from_packed`` for each of the 32
  voices of the same dumps (dexed-py has no in-memory bank reader).
Prints cartridges/s and the ratio ours/dexed (goal: >= 0.5). Best of ``--repeat`` runs.

    python benchmarks/bench_parse.py [--cartridges 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import best_of  # noqa: E402

from dx7tools import Voice, params, parse_bytes, read_file, vmem_message  # noqa: E402


def make_cartridges(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    dumps: list[bytes] = []
    hexter = os.environ.get("DX7TOOLS_HEXTER_DIR")
    if hexter:
        for path in sorted(Path(hexter).glob("*.dx7")):
            data = path.read_bytes()
            for i in range(len(data) // 4096):
                voices = [Voice.from_vmem(data[i * 4096 + j * 128 : i * 4096 + (j + 1) * 128]) for j in range(32)]
                dumps.append(vmem_message(voices))
    while len(dumps) < n:
        vced = rng.integers(0, params.MAXIMUM.astype(np.int64) + 1, size=(32, params.VCED_SIZE)).astype(np.uint8)
        vced[:, params.NAME_SLICE] = rng.integers(32, 127, size=(32, params.NAME_LENGTH))
        dumps.append(vmem_message([Voice(row) for row in vced]))
    return dumps[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cartridges", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    try:
        import dexed
    except ImportError:
        print("dexed-py is not installed (pip install -e '.[dexed]'): nothing to compare against")
        return 1

    dumps = make_cartridges(args.cartridges)
    n = len(dumps)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, dump in enumerate(dumps):
            path = Path(tmp) / f"cart{i:04d}.syx"
            path.write_bytes(dump)
            paths.append(path)

        # sanity: both readers see the same voices
        for path in paths[:20]:
            ours = [r.voice.to_vmem() for r in read_file(path).voices]
            theirs = [bytes(p.to_packed()) for p in dexed.Patch.load_bank(str(path))]
            assert ours == theirs, path

        def ours_disk():
            for path in paths:
                read_file(path)

        def dexed_disk():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for path in paths:
                    dexed.Patch.load_bank(str(path))

        def ours_memory():
            for dump in dumps:
                parse_bytes(dump)

        def dexed_memory():
            for dump in dumps:
                for j in range(32):
                    dexed.Patch.from_packed(dump[6 + j * 128 : 6 + (j + 1) * 128])

        rows = [
            ("from disk", best_of(args.repeat, ours_disk), best_of(args.repeat, dexed_disk)),
            ("from memory", best_of(args.repeat, ours_memory), best_of(args.repeat, dexed_memory)),
        ]
    print(f"parsing {n} cartridges of 32 voices ({n * 32} voices), best of {args.repeat}")
    print(f"{'':12} {'dx7tools cart/s':>16} {'dexed-py cart/s':>16} {'ratio':>7}")
    for label, ours, theirs in rows:
        print(f"{label:12} {n / ours:16.0f} {n / theirs:16.0f} {theirs / ours:7.2f}x")
    worst = min(theirs / ours for _, ours, theirs in rows)
    print(f"goal: ratio >= 0.5 of dexed-py's speed -> {'met' if worst >= 0.5 else 'NOT met'} (worst {worst:.2f}x)")
    return 0 if worst >= 0.5 else 2


if __name__ == "__main__":
    sys.exit(main())
