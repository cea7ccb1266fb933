"""Streaming resynthesis: latency, compute per block on one thread, and what causality costs.

1. Per block size (64, 128, 256 samples) and CREPE rate (a window every 4 or 8 frames): the
   algorithmic latency (block + feature lookahead, 0) and the compute time of every block
   (median, 99th percentile, worst) through :class:`ddx7.stream.Streamer` on one thread, against
   the block's duration (goal: latency <= 20 ms, worst block <= 25 % of its duration), and the
   real-time factor.
2. Quality, each render against the recording (multi-resolution log-spectral distance and
   loudness-envelope error, gains matched, :mod:`ddx7.evaluate.e2e`): the offline resynthesis
   (centred windows, CREPE every frame), the causal pipeline with CREPE every 1, 4 and 8 frames;
   and the causal f0 against the offline f0 (share of frames voiced in both within 10 / 50 cents,
   voicing agreement).
3. Where a 256-sample block's time goes: each stage's best of 200 calls, and whole blocks with
   and without a CREPE window (the cost when nothing else wants the CPU).
4. The offline path's speed on one thread: decoder + synth + reverb on ready features, best of 15, x real
   time, each stage's time, and the machine's practical peak MAC rate (:func:`timing.peak_mac_rate`)
   against the decoder's own rate.

The machine's load average is printed before and after (timings on a shared machine vary;
compare rows of one run).

    python benchmarks/bench_stream.py [--run RUN_DIR] [--input WAV] [--seconds 10] [--timing-only]

Without ``--run`` an untrained DDX7 model (violin configuration, seed 0) is used: its timings are
those of any run with the default network size; its quality rows mean little.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import best_of, peak_mac_rate  # noqa: E402

from dx7tools.audio import HOP, SAMPLE_RATE, read_audio  # noqa: E402

from ddx7.data.examples import CONFIDENCE  # noqa: E402
from ddx7.data.features import compute_features  # noqa: E402
from ddx7.evaluate.e2e import loudness_error_db, multires_distance_db  # noqa: E402
from ddx7.live import Timeline, render_frames  # noqa: E402
from ddx7.stream import Streamer, causal_features, render_causal  # noqa: E402

CASES = ((64, 4), (128, 4), (256, 4), (256, 8))


def load(run_dir: str | None):
    if run_dir:
        from ddx7.run import Run

        run = Run.at(run_dir)
        return run, run.model()
    from ddx7.fit.models import DDX7
    from ddx7.rank.choose import paper_config

    torch.manual_seed(0)
    model = DDX7(paper_config("violin")).eval()
    model.decoder.fuse_weight_norm()
    return model, model


def test_signal(path: str | None, seconds: float) -> np.ndarray:
    """The recording (resampled to 16 kHz mono), or a vibrato glide with note gaps; ``seconds`` long at most."""
    if path:
        import soxr

        x, sr = read_audio(path)
        x = soxr.resample(x, sr, SAMPLE_RATE) if sr != SAMPLE_RATE else x
        return x[: int(seconds * SAMPLE_RATE)].astype(np.float32)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f = 196.0 * 2 ** (np.floor(t) % 5 / 12) * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
    env = np.clip(np.minimum(t % 1.0, 0.9 - t % 1.0) / 0.05, 0, 1)
    return (0.3 * env * (np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase))).astype(np.float32)


def block_times(owner, x: np.ndarray, block: int, every: int) -> dict:
    s = Streamer(owner, block=block, crepe_every=every)
    s.process(np.zeros(block, np.float32))
    s.reset()
    x = np.pad(x, (0, -len(x) % block))
    wall, cpu, windows = [], [], []
    for i in range(0, len(x), block):
        windows.append(sum((s.frame + k) % every == 0 for k in range(block // HOP)))
        t0, c0 = time.perf_counter(), time.thread_time()
        s.process(x[i:i + block])
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.thread_time() - c0) * 1000)
    budget = 1000 * block / SAMPLE_RATE
    heaviest = np.asarray(windows) == max(windows)
    row = {"block": block, "crepe_every": every, "latency_ms": s.latency_ms, "budget_ms": budget,
           "real_time": float(len(x) / SAMPLE_RATE / (np.sum(wall) / 1000)),
           "heaviest_best_ms": float(np.asarray(wall)[heaviest].min()), "heaviest_blocks": int(heaviest.sum()),
           "crepe_windows_in_heaviest": int(max(windows))}
    for name, ms in (("wall", np.asarray(wall)), ("cpu", np.asarray(cpu))):
        row[name] = {"median": float(np.median(ms)), "p99": float(np.percentile(ms, 99)), "max": float(ms.max())}
    return row


def components(owner, model, block: int = 256, repeat: int = 200) -> dict:
    """Best of ``repeat`` (ms) for each stage of one block, and whole blocks with and without a
    CREPE window: what a block costs when nothing else wants the CPU."""
    from ddx7.stream import LOUDNESS_FFT, CausalFeatures, DecoderStream, ReverbStream, crepe_frames, loudness_frames

    def best(fn) -> float:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 1000 * min(times)

    n = block // HOP
    x = (0.3 * np.sin(2 * np.pi * 220 * np.arange(block) / SAMPLE_RATE)).astype(np.float32)
    f0, loud = torch.full((1, n), 220.0), torch.full((1, n), -30.0)
    decoder, reverb, s = DecoderStream(model), ReverbStream(model.reverb, block), Streamer(owner, block=block)
    with torch.inference_mode():
        index = decoder(f0, loud)
    quiet = CausalFeatures(crepe_every=10 ** 9)
    quiet.frame = 1  # never on a CREPE frame

    no_crepe = Streamer(owner, block=block, crepe_every=10 ** 9)

    def plain_block():
        no_crepe.features.frame = 1  # never on a CREPE frame
        no_crepe.process(x)

    return {"block": block,
            "crepe_window": best(lambda: crepe_frames(np.zeros((1, 1024), np.float32) + x[:1], "tiny")),
            "loudness": best(lambda: loudness_frames(np.zeros((n, LOUDNESS_FFT), np.float32))),
            "features_without_crepe": best(lambda: quiet(x)),
            "decoder": best(lambda: decoder(f0, loud)),
            "synth": best(lambda: s.live.render(f0, index, 0, None)),
            "reverb": best(lambda: reverb(x)),
            "block_with_crepe": best(lambda: s.process(x)),  # CREPE every 4 frames: one window a block
            "block_without_crepe": best(plain_block)}


def cents_agreement(f0: np.ndarray, ref: np.ndarray) -> dict:
    both = (f0 > 0) & (ref > 0)
    cents = np.abs(1200 * np.log2(np.maximum(f0[both], 1e-3) / ref[both]))
    return {"within_10": float(np.mean(cents <= 10)), "within_50": float(np.mean(cents <= 50)),
            "voicing_agreement": float(np.mean((f0 > 0) == (ref > 0)))}


def quality(owner, model, x: np.ndarray, threshold: float) -> list[dict]:
    feats = compute_features(x, model="tiny")
    f0_off = np.where(feats["confidence"] >= threshold, feats["f0_hz"], 0).astype(np.float32)
    offline = render_frames(model, torch.from_numpy(f0_off)[None], torch.from_numpy(feats["loudness_db"])[None],
                            Timeline())[0].numpy()
    rows = [{"render": "offline (centred windows, CREPE every frame)", "spectral_db": multires_distance_db(offline, x),
             "loudness_db": loudness_error_db(offline, x)}]
    cf = causal_features(x, crepe_every=4)
    f0_causal = np.where(cf["confidence"] >= threshold, cf["f0_hz"], 0).astype(np.float32)
    t = min(len(f0_causal), len(f0_off))
    for name, f0, loud in (("causal f0 (every 4), offline loudness", f0_causal, feats["loudness_db"]),
                           ("offline f0, causal loudness", f0_off, cf["loudness_db"])):
        y = render_frames(model, torch.from_numpy(f0[:t])[None], torch.from_numpy(loud[:t])[None], Timeline())
        y = y[0].numpy()[: len(x)]
        rows.append({"render": name, "spectral_db": multires_distance_db(y, x), "loudness_db": loudness_error_db(y, x),
                     "vs_offline_spectral_db": multires_distance_db(y, offline)})
    for every in (1, 4, 8):
        y = render_causal(owner, x, crepe_every=every)[: len(x)]
        cf = causal_features(x, crepe_every=every)
        f0 = np.where(cf["confidence"] >= threshold, cf["f0_hz"], 0)
        rows.append({"render": f"causal, CREPE every {every} frame(s)", "spectral_db": multires_distance_db(y, x),
                     "loudness_db": loudness_error_db(y, x), "vs_offline_spectral_db": multires_distance_db(y, offline),
                     "f0_vs_offline": cents_agreement(f0, f0_off[: len(f0)])})
    return rows


def decoder_macs_per_frame(model) -> int:
    """Multiply-accumulates of the DDX7 decoder (every Conv1d of its TCN) per frame."""
    return sum(m.out_channels * m.in_channels // m.groups * m.kernel_size[0]
               for m in model.decoder.modules() if isinstance(m, torch.nn.Conv1d))


def offline_speed(model, seconds: float = 10.0, repeat: int = 15) -> dict:
    """Decoder + synth + reverb on ready features, one thread, best of ``repeat``; with the machine's
    peak MAC rate (:func:`timing.peak_mac_rate`) and how close the decoder gets to it."""
    frames = int(seconds * SAMPLE_RATE / HOP)
    f0 = torch.full((1, frames), 220.0) * (1 + 0.01 * torch.sin(torch.arange(frames) / 20.0))
    loud = torch.full((1, frames), -30.0)
    with torch.inference_mode():
        model(f0, loud)
        total = best_of(repeat, lambda: model(f0, loud))
        decoder = best_of(repeat, lambda: model.controls(f0, loud))
        index = model.controls(f0, loud)
        synth = best_of(repeat, lambda: model.synth(f0, index))
        dry = model.synth(f0, index)
        reverb = best_of(repeat, lambda: model.reverb(dry))
    peak = peak_mac_rate()
    macs = decoder_macs_per_frame(model) * frames
    return {"seconds": seconds, "real_time": seconds / total, "decoder_share": decoder / total,
            "stage_ms": {"decoder": 1e3 * decoder, "synth": 1e3 * synth, "reverb": 1e3 * reverb},
            "peak_gmac_s": peak / 1e9, "decoder_gmac_s": macs / decoder / 1e9,
            "decoder_at_peak_real_time": seconds / (macs / peak)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", help="a DDX7 run folder (default: an untrained model)")
    ap.add_argument("--input", help="a recording (default: a synthetic phrase)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--timing-only", action="store_true", help="skip the quality rows")
    args = ap.parse_args()
    torch.set_num_threads(1)
    owner, model = load(args.run)
    x = test_signal(args.input, args.seconds)
    threshold = CONFIDENCE["tiny"]
    load_before = os.getloadavg()
    timing = [block_times(owner, x, b, k) for b, k in CASES]
    load_mid = os.getloadavg()
    print(f"load average before {load_before[0]:.2f}, after timing {load_mid[0]:.2f} (2 cores); "
          f"{len(x) / SAMPLE_RATE:.1f} s of audio, one thread")
    print("block compute in ms, wall clock | thread CPU time (CPU time leaves out waits for a busy CPU)")
    print(f"{'block':>6} {'CREPE every':>11} {'latency ms':>10} {'budget ms':>9} | {'median':>7} {'p99':>7} {'max':>7} "
          f"{'max/budget':>10} | {'median':>7} {'p99':>7} {'max':>7} {'max/budget':>10} | {'x real time':>11} | "
          f"{'heaviest best':>13} {'/budget':>7}")
    for r in timing:
        cells = " | ".join(f"{r[k]['median']:>7.2f} {r[k]['p99']:>7.2f} {r[k]['max']:>7.2f} "
                           f"{r[k]['max'] / r['budget_ms']:>10.0%}" for k in ("wall", "cpu"))
        print(f"{r['block']:>6} {r['crepe_every']:>11} {r['latency_ms']:>10.1f} {r['budget_ms']:>9.1f} | {cells} | "
              f"{r['real_time']:>11.1f} | {r['heaviest_best_ms']:>13.2f} {r['heaviest_best_ms'] / r['budget_ms']:>7.0%}")
    print("heaviest best: the fastest of the blocks that run the most CREPE windows (a floor under the worst "
          "block's cost, robust to other jobs' load)")
    parts = components(owner, model)
    print(f"\none 256-sample block, best of 200 (ms; load average {os.getloadavg()[0]:.2f}): "
          + ", ".join(f"{k} {v:.2f}" for k, v in parts.items() if k != "block" and v is not None))
    rows = [] if args.timing_only else quality(owner, model, x, threshold)
    print(f"\n{'render':<46} {'spectral dB':>11} {'loudness dB':>11} {'vs offline dB':>13} {'f0 <=10c':>8} "
          f"{'<=50c':>6} {'voicing':>7}")
    for r in rows:
        f = r.get("f0_vs_offline")
        print(f"{r['render']:<46} {r['spectral_db']:>11.2f} {r['loudness_db']:>11.2f} "
              f"{r.get('vs_offline_spectral_db', float('nan')):>13.2f} "
              + (f"{f['within_10']:>8.1%} {f['within_50']:>6.1%} {f['voicing_agreement']:>7.1%}" if f else ""))
    speed = offline_speed(model)
    print(f"\noffline decoder + synth + reverb, one thread, best of 15: {speed['real_time']:.0f}x real time "
          f"(goal >= 200x); load average now {os.getloadavg()[0]:.2f}")
    print("  stages (ms for {:g} s): ".format(speed["seconds"])
          + ", ".join(f"{k} {v:.1f}" for k, v in speed["stage_ms"].items()))
    print(f"  machine peak (the fastest float32 256-1024 square matrix product, one thread): "
          f"{speed['peak_gmac_s']:.1f} GMAC/s; "
          f"the decoder runs at {speed['decoder_gmac_s']:.1f} GMAC/s "
          f"({speed['decoder_gmac_s'] / speed['peak_gmac_s']:.0%} of it); the decoder alone at peak would be "
          f"{speed['decoder_at_peak_real_time']:.0f}x real time, the ceiling of this model on this core")
    print(json.dumps({"load": [load_before[0], load_mid[0]], "timing": timing, "components": parts, "quality": rows,
                      "offline": speed}))


if __name__ == "__main__":
    main()
