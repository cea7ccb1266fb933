"""Sweeps on this machine: the paper table's 12 training runs one after another vs as Ray tasks, and
what a worker killed in the middle of a run costs.

1. **Speed-up.** The 12 runs ``dx7tools paper-table`` trains for violin, flute and trumpet (HpN,
   DDX7 6-op, DDX7 2-op, DDX7 on the selector's top voice), each ``--steps`` steps (equal work
   whatever the threads: a minutes budget would give parallel runs fewer steps each), trained by
   :func:`ddx7.fit.sweep.train_specs` twice in two copies of one prepared data home: one after
   another in this process (torch on all cores, then one torch thread: on a machine shared with
   other jobs, two threads per run can be far slower than one), and as Ray tasks with
   ``--workers`` workers (one torch thread each, Ray started and stopped inside the timing). Reported: wall times and
   their ratio, the overhead per run (its wall time minus its training time: worker start,
   imports, features from the cache, model set-up) and the CPU utilisation of the training
   (CPU seconds of the runs over wall time x cores).
2. **A worker killed.** Two runs of one configuration and seed on two Ray workers; the worker of
   one is sent SIGKILL half-way, half a checkpoint interval after a checkpoint (the average
   work lost); Ray runs it again and it resumes from its last checkpoint (written every
   ``--checkpoint-seconds``). Reported: both runs' wall times (the difference is
   the retry's cost), the step it resumed from, and that both end on the same loss curve.

The data home (corpora of ``--corpus-minutes`` minutes rendered like the default ones, CREPE tiny
features, a 30 s ranking per corpus for the top-voice row) is prepared first and not timed.

    python benchmarks/bench_sweep.py [--steps 10] [--batch-size 4] [--segment-seconds 0.5] [--workers 2]
        [--corpus-minutes 1] [--kill-steps 100] [--checkpoint-seconds 20] [--home DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddx7 import run as runs  # noqa: E402
from ddx7.fit import sweep as sw  # noqa: E402

CORPORA = ("violin", "flute", "trumpet")


def load() -> str:
    return "load average " + " / ".join(f"{x:.2f}" for x in os.getloadavg())


def prepare_home(home: Path, corpus_minutes: float, rank_budget: float) -> None:
    """Library, corpora, features and rankings: everything but the runs."""
    from dx7tools.library import Library

    from ddx7.data.corpus import build_corpus
    from ddx7.data.examples import load_examples
    from ddx7.rank.ranking import load_ranking, rank

    Library(home).import_files(sorted(Path(__file__).resolve().parent.parent.glob("patches/*.syx")))
    for name in CORPORA:
        if not (home / "corpora" / name).exists():
            build_corpus(home, name, minutes=corpus_minutes)
        load_examples(home, name, runs.FitConfig(corpus=name, crepe="tiny"))
        if load_ranking(home, name) is None:
            rank(home, name, budget=rank_budget)


def paper_specs(home: Path, steps: int, overrides: dict) -> list:
    from ddx7.data.corpus import Corpus
    from ddx7.evaluate.paper_table import plan_runs, run_specs

    specs = []
    for name in CORPORA:
        plans, notes = plan_runs(home, name, Corpus.open(home, name).instrument, None, steps)
        assert len(plans) == 4, notes    # a caveat about an incomplete ranking is fine: its top row is trained
        specs += run_specs(plans, name, [0], None, steps, {"crepe": "tiny"}, overrides)
    return specs


def timed(home: Path, specs: list, workers: int) -> tuple[float, list[dict]]:
    t0 = time.perf_counter()
    results, _ = sw.train_specs(home, specs, workers=workers)
    wall = time.perf_counter() - t0
    failed = [r for r in results if r["error"]]
    assert not failed, failed
    return wall, results


def speedup(base: Path, steps: int, workers: int, overrides: dict, all_cores: bool = True) -> None:
    specs = paper_specs(base, steps, overrides)
    print(f"\n## {len(specs)} paper-table runs, {steps} steps each, {overrides} ({load()} before)\n")
    print("| engine | wall s | overhead per run s (mean) | training CPU utilisation | load after |")
    print("|---|---:|---:|---:|---|")
    walls = {}
    variants = (("one after another, torch on all cores", 1, None), ("one after another, 1 torch thread", 1, 1),
                (f"Ray, {workers} workers x 1 torch thread", workers, None))[0 if all_cores else 1:]
    for k, (label, n, threads) in enumerate(variants):
        home = base.parent / f"home-{k}"
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(base, home, ignore=shutil.ignore_patterns("runs", "sweep"))
        todo = [replace(s, settings={**s.settings, "threads": threads}) for s in specs] if threads else specs
        wall, results = timed(home, todo, n)
        overhead = sum(r["wall_seconds"] - r["train_seconds"] for r in results) / len(results)
        cpu = sum(r["cpu_seconds"] for r in results)
        walls[label] = wall
        print(f"| {label} | {wall:.1f} | {overhead:.1f} | {cpu / (wall * os.cpu_count()):.0%} | {load()} |")
    ray = walls[variants[-1][0]]
    print("\nwall time over Ray's: " + ", ".join(f"{label} {wall / ray:.2f}x" for label, wall in walls.items())
          + f" ({os.cpu_count()} cores)")


def _pid_of(task: str) -> int | None:
    from ddx7.fit.engine import TASK_PREFIX

    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip() == \
                    f"ray::{TASK_PREFIX}{task}":
                return int(cmdline.parent.name)
        except OSError:
            continue
    return None


def killed_worker(base: Path, steps: int, checkpoint_seconds: float) -> None:
    home = base.parent / "home-kill"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(base, home, ignore=shutil.ignore_patterns("runs", "sweep"))
    settings = {"crepe": "tiny", "checkpoint_seconds": checkpoint_seconds}
    box: dict = {}
    worker = threading.Thread(target=lambda: box.setdefault("r", sw.sweep(
        home, ["violin"], voices=["DDX7 VIOLN", None], seeds=1, steps=steps, settings=settings, test_audio=False,
        workers=2)))
    worker.start()
    victim = sw.run_name("violin", "ddx7", "DDX7 VIOLN", 0, sw.budget_tag(None, steps))
    log = runs.runs_dir(home) / victim / runs.METRICS_FILE
    killed_at = None
    while worker.is_alive() and killed_at is None:
        rows = list(csv.DictReader(open(log))) if log.exists() else []
        if rows and int(rows[-1]["step"]) >= steps // 2 and (pid := _pid_of(victim)):
            time.sleep(checkpoint_seconds / 2)    # metrics.csv is written with each checkpoint: kill between two
            os.kill(pid, signal.SIGKILL)
            killed_at = int(rows[-1]["step"])
        time.sleep(0.2)
    worker.join()
    killed, control = box["r"]["runs"]
    same = [r["train_loss"] for r in csv.DictReader(open(runs.runs_dir(home) / victim / runs.METRICS_FILE))] == \
        [r["train_loss"] for r in csv.DictReader(open(runs.runs_dir(home) / control["run"] / runs.METRICS_FILE))]
    print(f"\n## a worker killed half-way ({steps} steps, checkpoint every {checkpoint_seconds:g} s; {load()})\n")
    print("| run | attempts | resumed from step | wall s | training s |\n|---|---:|---:|---:|---:|")
    for r in (killed, control):
        print(f"| {r['run']} | {r['attempts']} | {r['resumed_from_step'] or '—'} | {r['wall_seconds']:.1f} | "
              f"{r['train_seconds']:.1f} |")
    print(f"\nkilled {checkpoint_seconds / 2:g} s after the checkpoint of step {killed_at}; the retry cost {killed['wall_seconds'] - control['wall_seconds']:.1f} s "
          f"of wall time; same loss curve as the run never killed: {same}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=4, help="for the speed-up runs (the trainer's default is 8)")
    ap.add_argument("--segment-seconds", type=float, default=0.5, help="for the speed-up runs (default 1.0)")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--corpus-minutes", type=float, default=1.0)
    ap.add_argument("--rank-budget", type=float, default=30.0)
    ap.add_argument("--kill-steps", type=int, default=100)
    ap.add_argument("--checkpoint-seconds", type=float, default=20.0)
    ap.add_argument("--home", type=Path, default=None, help="prepared data home to reuse (default: a temp folder)")
    ap.add_argument("--skip-speedup", action="store_true")
    ap.add_argument("--skip-all-cores", action="store_true", help="leave out the run-after-run, all-cores variant")
    ap.add_argument("--skip-kill", action="store_true")
    args = ap.parse_args()
    base = args.home or Path(tempfile.mkdtemp(prefix="dx7tools-bench-sweep-")) / "home"
    t0 = time.perf_counter()
    prepare_home(base, args.corpus_minutes, args.rank_budget)
    print(f"data home {base} prepared in {time.perf_counter() - t0:.0f} s; {os.cpu_count()} cores; {load()}")
    if not args.skip_speedup:
        speedup(base, args.steps, args.workers,
                {"batch_size": args.batch_size, "segment_seconds": args.segment_seconds}, not args.skip_all_cores)
    if not args.skip_kill:
        killed_worker(base, args.kill_steps, args.checkpoint_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
