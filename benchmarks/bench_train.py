"""DDX7 against the HpN baseline on the default corpora, same time budget, same run.

For each instrument (violin, flute, trumpet): build the default corpus (5 minutes, GM soundfont),
compute features (CREPE ``--crepe``), train DDX7 (the paper's configuration) and HpN for
``--minutes`` each, and report parameter counts (and their ratio), steps, time per step and the
best validation spectral loss. Then the inference speed on one core: decoder + synth + reverb
alone (features ready) for both models, and end-to-end ``resynth`` of a 30-second file (features
included) for DDX7.

    python benchmarks/bench_train.py [--minutes 3] [--crepe tiny] [--instruments violin flute trumpet]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddx7 import run as runs  # noqa: E402

from ddx7.fit import train  # noqa: E402
from ddx7.data.corpus import build_corpus  # noqa: E402
from ddx7.rank.choose import paper_config  # noqa: E402
from ddx7.resynth import resynthesize_file  # noqa: E402
from dx7tools.audio import FRAME_RATE, SAMPLE_RATE, write_wav  # noqa: E402


def decoder_rtf(model, example: train.Example, repeat: int = 3) -> float:
    f0 = torch.from_numpy(example.f0_hz)[None]
    loud = torch.from_numpy(example.loudness_db)[None]
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeat):
            t0 = time.perf_counter()
            model(f0, loud)
            best = min(best, time.perf_counter() - t0)
    return example.frames / FRAME_RATE / best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--crepe", default="tiny", choices=("tiny", "full"))
    ap.add_argument("--instruments", nargs="+", default=["violin", "flute", "trumpet"])
    ap.add_argument("--home", type=Path, default=None, help="reuse corpora/features here (default: a temp folder)")
    args = ap.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="dx7tools-bench-"))
    print(f"data home {home}; {args.minutes:g} min per model; CREPE {args.crepe}; torch threads "
          f"{torch.get_num_threads()}")
    rows = []
    for inst in args.instruments:
        t0 = time.perf_counter()
        try:
            build_corpus(home, inst)
        except Exception as exc:  # already built in a reused home
            if "exists" not in str(exc):
                raise
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        cfg0 = train.FitConfig(corpus=inst, crepe=args.crepe)
        data = train.load_examples(home, inst, cfg0)
        t_feat = time.perf_counter() - t0
        seconds = sum(e.frames for split in data.values() for e in split) / FRAME_RATE
        print(f"\n{inst}: corpus built in {t_build:.1f} s, features for {seconds:.0f} s of audio in {t_feat:.1f} s")
        for kind in ("ddx7", "hpn"):
            cfg = train.FitConfig(corpus=inst, model=kind, minutes=args.minutes, crepe=args.crepe, threads=2)
            config = paper_config(inst) if kind == "ddx7" else None
            run_dir = home / "runs" / f"bench-{inst}-{kind}-{int(time.time())}"
            res = train.fit(home, run_dir, cfg, config, data=data)
            model, _ = runs.load_model(run_dir)
            torch.set_num_threads(1)
            rtf = decoder_rtf(model, max(data["test"] or data["valid"], key=lambda e: e.frames))
            torch.set_num_threads(2)
            rows.append((inst, kind, res.parameters, res.steps, res.elapsed_s / max(res.steps, 1), res.best_valid, rtf))
            print(f"  {kind:5s} {res.parameters:>9,} params  {res.steps:>5} steps  {rows[-1][4]:.3f} s/step  "
                  f"best valid loss {res.best_valid:.3f}  decoder+synth {rtf:.0f}x real time (1 thread)")
            if kind == "ddx7":
                clip = np.concatenate([e.audio for e in data["test"] + data["valid"]])[: 30 * SAMPLE_RATE]
                src = home / f"bench-{inst}-30s.wav"
                write_wav(src, clip, SAMPLE_RATE)
                torch.set_num_threads(1)
                t0 = time.perf_counter()
                resynthesize_file(run_dir, src, home / f"bench-{inst}-30s-resynth.wav")
                t_res = time.perf_counter() - t0
                torch.set_num_threads(2)
                print(f"        resynth end to end (CREPE {args.crepe} included), 1 thread: "
                      f"{len(clip) / SAMPLE_RATE / t_res:.1f}x real time")
    print("\nsummary (same time budget per model)")
    for inst in args.instruments:
        d = {k: r for r in rows if r[0] == inst for k in [r[1]]}
        if "ddx7" in d and "hpn" in d:
            print(f"  {inst:8s} valid loss DDX7 {d['ddx7'][5]:.3f} vs HpN {d['hpn'][5]:.3f}; "
                  f"params ratio HpN/DDX7 {d['hpn'][2] / d['ddx7'][2]:.1f}; "
                  f"s/step DDX7 {d['ddx7'][4]:.3f} vs HpN {d['hpn'][4]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
