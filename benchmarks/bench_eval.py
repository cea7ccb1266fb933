"""How long `dx7tools eval` takes per minute of audio, against the feature extraction that
training needs, measured on the same audio in the same run.

An evaluation embeds the complete corpus once (cached per segment afterwards), resynthesises the
test split with the run's model and embeds it, then fits two Gaussians and takes the Fréchet
distance. This script times each part on ``--minutes`` of a corpus and a whole ``evaluate_run``
with the corpus embeddings cold (a fresh cache) and warm:

    python benchmarks/bench_eval.py --home HOME --run RUN [--minutes 1] [--threads 1]

Peer: ``ddx7.data.features.compute_features`` with CREPE tiny at 250 frames/s (what `fit --crepe
tiny` computes for every corpus) on the same audio.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddx7.data.corpus import Corpus  # noqa: E402
from ddx7.evaluate.embeddings import get_embedding  # noqa: E402
from ddx7.evaluate import evaluate_run  # noqa: E402
from ddx7.evaluate.fad import fad  # noqa: E402
from ddx7.data.features import compute_features  # noqa: E402
from ddx7.run import Run  # noqa: E402
from dx7tools.audio import HOP, SAMPLE_RATE  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--minutes", type=float, default=1.0, help="audio for the component timings")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--embedding", default="crepe-tiny")
    ap.add_argument("--diagonal", action="store_true", help="for corpora too small for full covariances")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    run = Run.open(args.home, args.run).require_finished()
    run_dir = run.path
    corpus_name = run.corpus
    corpus = Corpus.open(args.home, corpus_name)
    pieces, total = [], 0.0
    for seg in corpus.segments():
        if total >= args.minutes * 60:
            break
        pieces.append(corpus.load(seg))
        total += len(pieces[-1]) / SAMPLE_RATE
    minutes = total / 60
    emb = get_embedding(args.embedding)
    emb(pieces[0][:SAMPLE_RATE])  # load weights, warm up

    t0 = time.perf_counter()
    frames = np.concatenate([emb(p) for p in pieces])
    t_embed = time.perf_counter() - t0
    t0 = time.perf_counter()
    for p in pieces:
        compute_features(p, SAMPLE_RATE, hop=HOP, model="tiny")
    t_features = time.perf_counter() - t0
    half = len(frames) // 2
    t0 = time.perf_counter()
    fad(frames[:half], frames[half:], diagonal=args.diagonal)
    t_fad = time.perf_counter() - t0

    # whole evaluations: a copy of the corpus (audio linked) with an empty embedding cache, twice
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "corpora").mkdir()
        (home / "runs").mkdir()
        dst = home / "corpora" / corpus_name
        dst.mkdir()
        for item in corpus.path.iterdir():
            if item.name != "embeddings":
                (dst / item.name).symlink_to(item)
        shutil.copytree(run_dir, home / "runs" / run_dir.name, ignore=shutil.ignore_patterns("eval-*.json"))
        t0 = time.perf_counter()
        cold = evaluate_run(home, run_dir.name, embedding=args.embedding, reference=False, write=False,
                            diagonal=args.diagonal)
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        evaluate_run(home, run_dir.name, embedding=args.embedding, reference=False, write=False,
                            diagonal=args.diagonal)
        t_warm = time.perf_counter() - t0
    corpus_min = cold["audio_seconds"] / 60
    test_min = corpus.durations()["test"] / 60
    print(f"{args.embedding} on {minutes:.2f} min of {corpus_name}, {args.threads} thread(s):")
    print(f"  embedding          {t_embed / minutes:6.1f} s per minute of audio ({len(frames)} frames)")
    print(f"  peer: features     {t_features / minutes:6.1f} s per minute (CREPE tiny, 250 frames/s, as fit)")
    print(f"  ratio embedding / features: {t_embed / t_features:.2f}")
    print(f"  Fréchet distance   {t_fad * 1000:6.1f} ms ({half} vs {len(frames) - half} frames, {emb.dim}-d)")
    print(f"eval {run_dir.name}: corpus {corpus_min:.1f} min, test split {test_min:.1f} min")
    print(f"  cold cache  {t_cold:6.1f} s = {t_cold / corpus_min:.1f} s per minute of corpus audio")
    print(f"  warm cache  {t_warm:6.1f} s = {t_warm / test_min:.1f} s per minute of test audio")


if __name__ == "__main__":
    main()
