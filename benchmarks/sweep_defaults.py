"""How the training defaults were chosen: short DDX7 runs on one corpus, same time budget each.

    python benchmarks/sweep_defaults.py --home HOME [--corpus violin] [--minutes 2] [--crepe tiny]

Prints the best validation spectral loss and the number of steps for each (batch size, crop
length, learning rate) combination.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddx7.fit import train  # noqa: E402
from ddx7.data.corpus import build_corpus  # noqa: E402
from ddx7.rank.choose import paper_config  # noqa: E402

GRID = [  # batch, crop seconds, learning rate
    (8, 1.0, 2e-3), (16, 1.0, 2e-3), (4, 2.0, 2e-3), (8, 1.0, 5e-4), (8, 1.0, 5e-3), (4, 0.5, 2e-3),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--corpus", default="violin")
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--crepe", default="tiny")
    args = ap.parse_args()
    try:
        build_corpus(args.home, args.corpus)
    except Exception as exc:
        if "exists" not in str(exc):
            raise
    data = train.load_examples(args.home, args.corpus, train.FitConfig(corpus=args.corpus, crepe=args.crepe))
    print(f"{args.corpus}, {args.minutes:g} min per run, CREPE {args.crepe}")
    print(f"{'batch':>5} {'crop s':>6} {'lr':>7} {'steps':>6} {'best valid':>10}")
    for batch, crop, lr in GRID:
        cfg = train.FitConfig(corpus=args.corpus, batch_size=batch, segment_seconds=crop, learning_rate=lr,
                              minutes=args.minutes, crepe=args.crepe, threads=2)
        run = args.home / "runs" / f"sweep-{batch}-{crop}-{lr}-{int(time.time())}"
        res = train.fit(args.home, run, cfg, paper_config(args.corpus), data=data)
        print(f"{batch:>5} {crop:>6.1f} {lr:>7.0e} {res.steps:>6} {res.best_valid:>10.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
