"""The FM synth: fidelity to Dexed per algorithm, render speed against dexed-py, training cost.

1. Fidelity: for every algorithm 1-32 and every feedback value 0-7 a probe voice
   (:func:`ddx7.synth.fidelity.probe_voice`: random ratios, ~15 % fixed-frequency operators, levels,
   envelopes; no LFO, pitch EG, velocity or key scaling) is rendered by ``preview``'s ddx7 engine
   and by Dexed (0.6 s held, MIDI 48-60, 16 kHz); log-magnitude spectra are compared frame by frame
   (:func:`ddx7.synth.fidelity.compare_with_dexed`). Prints mean and worst distance (dB) per algorithm
   for the attack (first 0.15 s) and the sustain, the share of chaotic frames (strong feedback,
   where even our float32 and float64 renders part) and the long-term spectrum distance.
2. Render speed, one thread: our synth alone (controls ready, 10 s of audio) and dexed-py's
   ``render`` of the same voice and length; real-time factors and their ratio (goal: ours at
   least 0.5x dexed-py's speed with the feedback loop active).
3. Training step, two threads: forward + backward of a batch of 16 x 4 s at 16 kHz, with the
   feedback loop active (feedback 7) and without it (feedback 0), and the peak memory of each
   (measured in a fresh subprocess); and the sample-by-sample torch loop that the compiled kernel
   replaces, on one second, for scale.

    python benchmarks/bench_synth.py [--quick] [--speed-only]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import best_of  # noqa: E402

from ddx7.synth.feedback import feedback_beta  # noqa: E402
from ddx7.synth.fidelity import compare_with_dexed, probe_voice  # noqa: E402
from ddx7.synth import FMSynth  # noqa: E402
from dx7tools import Voice  # noqa: E402
from dx7tools.audio import FRAME_RATE, SAMPLE_RATE  # noqa: E402
from dx7tools.envelope import operator_levels  # noqa: E402
from dx7tools.fixed_config import FixedConfig  # noqa: E402


def violin_voice(feedback: int = 7) -> Voice:
    """The paper's violin configuration (STRINGS 1: algorithm 2, ratios 1,1,1,1,3,14)."""
    changes = {"algorithm": 1, "feedback": feedback}
    for n, coarse in zip(range(1, 7), (1, 1, 1, 1, 3, 14)):
        changes.update({f"op{n}_coarse": coarse, f"op{n}_output_level": 90})
    return Voice.init().replace(**changes)


def fidelity(seed: int, feedbacks) -> dict:
    rng = np.random.default_rng(seed)
    print("1. Fidelity to Dexed (dB; attack = first 0.15 s; chaotic = share of frames left out)")
    print(f"{'alg':>4} {'attack mean':>11} {'worst':>6} {'sustain mean':>12} {'worst':>6} "
          f"{'worst frame':>11} {'chaotic':>8} {'long-term':>9}")
    rows = {}
    for alg in range(1, 33):
        rs = []
        for fb in feedbacks:
            note = int(rng.integers(48, 61))
            r = compare_with_dexed(probe_voice(alg, rng, fb, note=note), note=note, seconds=0.6)
            rs.append([r["attack_db"], r["sustain_db"], r["worst_db"], r["chaotic"], r["long_term_db"]])
        a = np.array(rs)
        rows[alg] = a
        print(f"{alg:>4} {np.nanmean(a[:, 0]):>11.2f} {np.nanmax(a[:, 0]):>6.2f} {np.nanmean(a[:, 1]):>12.2f} "
              f"{np.nanmax(a[:, 1]):>6.2f} {np.nanmax(a[:, 2]):>11.2f} {np.mean(a[:, 3]):>8.1%} "
              f"{np.nanmean(a[:, 4]):>9.2f}")
    allr = np.concatenate(list(rows.values()))
    print(f" all {np.nanmean(allr[:, 0]):>11.2f} {np.nanmax(allr[:, 0]):>6.2f} {np.nanmean(allr[:, 1]):>12.2f} "
          f"{np.nanmax(allr[:, 1]):>6.2f} {np.nanmax(allr[:, 2]):>11.2f} {np.mean(allr[:, 3]):>8.1%} "
          f"{np.nanmean(allr[:, 4]):>9.2f}   ({len(allr)} voices)")
    print(f"     95th percentile: attack {np.nanpercentile(allr[:, 0], 95):.2f}, sustain "
          f"{np.nanpercentile(allr[:, 1], 95):.2f}, long-term {np.nanpercentile(allr[:, 4], 95):.2f} dB")
    by_fb = {fb: np.nanmean(allr[i::len(feedbacks), 1]) for i, fb in enumerate(feedbacks)}
    print("     sustain mean by feedback: " + ", ".join(f"{fb}: {v:.2f}" for fb, v in by_fb.items()))
    return rows


def render_speed(seconds: float) -> None:
    import dexed

    torch.set_num_threads(1)
    print(f"\n2. Render speed, one thread, {seconds:g} s of audio, best of 10 (real-time factor = audio s / wall s)")
    for fb in (7, 0):
        voice = violin_voice(fb)
        synth = FMSynth(FixedConfig.from_voice(voice))
        frames = int(seconds * FRAME_RATE)
        index = torch.from_numpy(2 * operator_levels(voice, 60, 100, seconds, total_seconds=seconds)).float()[None]
        f0 = torch.full((1, frames), 261.63)
        with torch.no_grad():
            synth(f0[:, :10], index[:, :10])  # compile / warm up
            ours = best_of(10, lambda: synth(f0, index))
        dx = dexed.DexedSynth(sample_rate=SAMPLE_RATE)
        dx.load_patch(dexed.Patch.from_raw(voice.values))
        theirs = best_of(10, lambda: dx.render(60, 100, seconds, seconds))
        print(f"   violin config, feedback {fb}: ddx7 {seconds / ours:8.0f}x real time, dexed-py "
              f"{seconds / theirs:8.0f}x; ours / dexed = {theirs / ours:.2f} (goal >= 0.5)")


def training_step(feedback: int) -> dict:
    """One forward + backward of 16 x 4 s (run in a fresh process for the memory figure)."""
    torch.set_num_threads(2)
    synth = FMSynth(FixedConfig.from_voice(violin_voice(feedback)))
    f0 = torch.full((16, 1000), 220.0) * torch.linspace(1, 2, 16)[:, None]
    base = torch.rand(16, 1000, 6)
    synth(f0[:, :4], base[:, :4]).sum()  # warm up (numba compile / cache load)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(3):
        index = base.clone().requires_grad_(True)
        t0 = time.perf_counter()
        audio = synth(f0, index)
        audio.pow(2).mean().backward()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": min(times), "peak_mib": peak / 1024, "extra_mib": (peak - before) / 1024}


def naive_loop_second() -> float:
    """The obvious alternative: a torch loop over samples for the feedback operator (1 s, batch 16)."""
    torch.set_num_threads(2)
    n = SAMPLE_RATE
    theta = torch.rand(16, n)
    amp = torch.rand(16, n, requires_grad=True)
    beta = feedback_beta(7, 2)
    t0 = time.perf_counter()
    y1 = y2 = torch.zeros(16)
    outs = []
    for i in range(n):
        y = amp[:, i] * torch.sin(theta[:, i] + beta * (y1 + y2) / 2)
        outs.append(y)
        y1, y2 = y, y1
    torch.stack(outs, 1).pow(2).mean().backward()
    return time.perf_counter() - t0


def training_cost() -> None:
    print("\n3. Training step: forward + backward, batch 16 x 4 s at 16 kHz, 2 threads")
    res = {}
    for fb in (7, 0):
        out = subprocess.run([sys.executable, __file__, "--train-step", str(fb)], capture_output=True, text=True,
                             check=True)
        res[fb] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"   feedback {fb}: {res[fb]['seconds']:.2f} s per step, peak memory {res[fb]['peak_mib']:.0f} MiB "
              f"({res[fb]['extra_mib']:.0f} MiB above the warmed-up process)")
    print(f"   the feedback loop costs {res[7]['seconds'] / res[0]['seconds']:.2f}x the step without it")
    loop = naive_loop_second()
    print(f"   a per-sample torch loop for the feedback operator alone: {loop:.1f} s for 1 s of the batch "
          f"(~{loop * 4:.0f} s for the 4 s step), vs {res[7]['seconds']:.2f} s for the whole synth step")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fidelity on feedback 0, 3 and 7 only")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--speed-only", action="store_true", help="only the render speed (section 2)")
    ap.add_argument("--train-step", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.train_step is not None:
        print(json.dumps(training_step(args.train_step)))
        return 0
    if args.speed_only:
        render_speed(10.0)
        return 0
    fidelity(args.seed, (0, 3, 7) if args.quick else range(8))
    render_speed(10.0)
    training_cost()
    return 0


if __name__ == "__main__":
    sys.exit(main())
