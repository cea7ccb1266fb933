"""The DX7 engine (:class:`ddx7.synth.dx7.DX7`): fidelity to dexed-py, render speed, memory over a long stream.

1. Fidelity: every distinct voice of Debian hexter's banks (DX7 ROM1-4, TX7, FB-01 conversions;
   duplicates by ``content_hash`` once) and ``--random`` seeded random voices (every LFO wave with
   LFO KEY SYNC off and on, the pitch EG in some, all four keyboard level-scaling curves,
   fixed-frequency operators, feedback, velocity and rate scaling, AMS/PMS) are rendered by the
   engine and by dexed-py at MIDI 36, 60 and 84, velocities 64 and 127 (1.0 s held, 0.5 s tail,
   44.1 kHz; the engine is a fresh ``DX7`` per note, so its LFO starts at phase 0 as dexed-py's
   does, and at 1/2 with LFO KEY SYNC in both). Per render: the median frame-wise log-spectral
   distance (:func:`ddx7.synth.fidelity.spectral_distance_db`), the long-term spectrum distance
   (:func:`ddx7.synth.fidelity.long_term_distance_db`, bins within 60 dB of the loudest) and the
   same over 40 dB (less swayed by Dexed's fixed-point noise floor); per voice the worst of its six
   renders. Prints median / 90th percentile / max over voices per group (factory without
   modulation, factory with LFO or pitch EG, random), and the 10 worst voices by each distance,
   each diagnosed at its worst render: near-silent (dexed-py peak below -40 dBFS); feedback chaos
   (the engine's float32 and float64 renders already differ); fine structure only (long-term
   agrees); Dexed's noise floor (most of the long-term distance from bins where dexed-py is
   > 20 dB above the engine); and, re-rendering both engines with one feature taken out of the
   voice at a time (LFO, pitch EG, feedback, level scaling, rate scaling, velocity, fixed
   operators -> ratio 1), the feature whose removal brings the distance below 60 %.
2. Speed, one thread (``torch.set_num_threads(1)``): real-time factor (audio seconds per wall
   second, best of ``--repeat``, engine construction included) of one note held 10 s at 44.1 kHz,
   engine and dexed-py on the same eight factory voices (five with feedback 6-7), and their ratio
   (goal >= 0.5x); sixteen notes held together for 10 s (dexed-py plays one note per call: sixteen
   calls, timed together, stand in for it); a dense performance (chords, CC 2 and pitch bend
   every 10 ms, CC 1 every 50 ms; the engine only, dexed-py takes no MIDI) and the same notes
   without the controller lanes.
3. Memory: a synthetic performance (a note every ~0.25 s, sustain pedal, CC 1, CC 2 and bend
   lanes), generated lazily and streamed through ``DX7.stream`` into a 16-bit WAV written chunk
   by chunk, 1 minute and ``--minutes`` (10) minutes, each in a fresh subprocess, measured from a
   baseline taken after imports and a warm-up stream. Peak RSS growth (everything, torch's tensor
   storage included): the kernel's peak mark VmHWM, reset at the baseline through
   ``/proc/self/clear_refs`` (Linux); elsewhere ``resource.getrusage().ru_maxrss``, which cannot be
   reset, so an import-time peak can hide growth. Also the RSS peak per minute of audio
   (``/proc/self/statm`` after every chunk) and the tracemalloc peak per minute (Python objects and
   numpy arrays, which numpy reports to tracemalloc; torch's CPU allocator does not, so tensors
   show in the RSS figures only). For scale, ``render`` (the whole song in one array) of 1 minute;
   and sixteen notes held together for 10 s, streamed: the largest chunk against the engine's
   ``CHUNK_SLOT_BLOCKS`` bound on blocks x sounding slots. Constant memory: the 10-minute
   stream's peaks match the 1-minute one's, minute after minute.

    DX7TOOLS_HEXTER_DIR=.cache/hexter python benchmarks/bench_engine.py [--only fidelity,speed,memory]
        [--limit N] [--random 60] [--seed 0] [--seconds 10] [--repeat 3] [--minutes 10] [--json OUT]

A quick run: ``--limit 20 --seconds 2 --repeat 1 --minutes 2``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import wave
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import best_of  # noqa: E402

from ddx7.synth.dx7 import DX7  # noqa: E402
from ddx7.synth import dx7 as dx7_module  # noqa: E402
from ddx7.synth.fidelity import long_term_distance_db, long_term_spectrum_db, spectral_distance_db  # noqa: E402
from ddx7.synth.preview import render_dexed  # noqa: E402
from dx7tools.algorithms import ALGORITHMS  # noqa: E402
from dx7tools.midi import Event  # noqa: E402
from dx7tools.sysex import read_file  # noqa: E402
from dx7tools.voice import Voice  # noqa: E402

SR = 44100
NOTES = (36, 60, 84)
VELOCITIES = (64, 127)
HELD, TAIL = 1.0, 0.5
SECTIONS = ("fidelity", "speed", "memory")
SPEED_VOICES = ("BRASS   1", "STRINGS 1", "E.PIANO 1", "GUITAR  1", "BASS    1", "E.ORGAN 1", "MARIMBA", "HARPSICH 1")
CONTROLLER_FUNCTIONS = {"breath_control_range": 99, "breath_control_assign": 7, "mod_wheel_range": 50,
                        "mod_wheel_assign": 1, "pitch_bend_range": 2}
OPS = range(1, 7)
QUIET_DB = -40.0
"""Renders whose dexed-py peak is below this (dBFS) are near-silent: Dexed's fixed-point floors dominate them."""


# -- voices --------------------------------------------------------------------------------------
def factory_voices(folder: Path) -> list[tuple[str, Voice]]:
    voices, seen = [], set()
    for bank in sorted(folder.glob("*.dx7")):
        for rec in read_file(bank).voices:
            if rec.voice.content_hash not in seen:
                seen.add(rec.voice.content_hash)
                voices.append((bank.name, rec.voice))
    return voices


def uses_modulation(voice: Voice) -> bool:
    """The LFO moves pitch or amplitude, or the pitch EG is not flat."""
    pitch = voice["lfo_pitch_mod_depth"] and voice["pitch_mod_sensitivity"]
    amp = voice["lfo_amp_mod_depth"] and any(voice[f"op{n}_amp_mod_sensitivity"] for n in OPS)
    return bool(pitch or amp or any(voice[f"pitch_eg_level_{i}"] != 50 for i in range(1, 5)))


def features(voice: Voice) -> dict:
    """What a voice uses, for the diagnosis columns."""
    return {
        "algorithm": voice.algorithm, "feedback": voice.feedback,
        "fixed_ops": sum(voice[f"op{n}_mode"] for n in OPS),
        "lfo_wave": voice["lfo_waveform"], "lfo_sync": voice["lfo_key_sync"],
        "pmd": voice["lfo_pitch_mod_depth"], "pms": voice["pitch_mod_sensitivity"], "amd": voice["lfo_amp_mod_depth"],
        "pitch_eg": any(voice[f"pitch_eg_level_{i}"] != 50 for i in range(1, 5)),
        "curves": sorted({voice[f"op{n}_{side}_curve"] for n in OPS for side in ("left", "right")
                          if voice[f"op{n}_{side}_depth"]}),
        "transpose": voice["transpose"] - 24,
    }


def random_voice(i: int, rng: np.random.Generator) -> Voice:
    """A random valid voice; ``i`` picks the LFO wave (i % 6), LFO KEY SYNC ((i // 6) % 2) and
    whether the pitch EG moves ((i // 12) % 2); all else is drawn."""
    algorithm = int(rng.integers(0, 32))
    carriers = ALGORITHMS[algorithm].carriers
    peg = (i // 12) % 2 == 1
    ch: dict[str, int] = {
        "algorithm": algorithm, "feedback": int(rng.integers(0, 8)), "osc_key_sync": int(rng.integers(0, 2)),
        "lfo_waveform": i % 6, "lfo_key_sync": (i // 6) % 2, "lfo_speed": int(rng.integers(0, 100)),
        "lfo_delay": int(rng.integers(0, 70)), "lfo_pitch_mod_depth": int(rng.integers(0, 100)),
        "lfo_amp_mod_depth": int(rng.integers(0, 100)), "pitch_mod_sensitivity": int(rng.integers(0, 8)),
        "transpose": int(rng.integers(18, 31)),
    }
    for k in range(1, 5):
        ch[f"pitch_eg_rate_{k}"] = int(rng.integers(20, 100))
        ch[f"pitch_eg_level_{k}"] = int(rng.integers(25, 76)) if peg else 50
    for n in OPS:
        fixed = rng.random() < 0.2 or (i % 3 == 0 and n == 6)
        if fixed:
            coarse, fine, detune = int(rng.integers(0, 4)), int(rng.integers(0, 100)), int(rng.integers(0, 15))
        else:
            coarse, fine, detune = int(rng.integers(0, 9)), int(rng.choice([0, 0, 0, int(rng.integers(0, 100))])), \
                int(rng.integers(0, 15))
        ch.update({
            f"op{n}_mode": int(fixed), f"op{n}_coarse": coarse, f"op{n}_fine": fine, f"op{n}_detune": detune,
            f"op{n}_output_level": int(rng.integers(85, 100)) if n in carriers else int(rng.integers(30, 90)),
            f"op{n}_velocity_sensitivity": int(rng.integers(0, 8)),
            f"op{n}_amp_mod_sensitivity": int(rng.integers(0, 4)),
            f"op{n}_rate_scaling": int(rng.integers(0, 8)),
            f"op{n}_breakpoint": int(rng.integers(0, 100)),
            f"op{n}_left_depth": int(rng.integers(0, 100)), f"op{n}_right_depth": int(rng.integers(0, 100)),
            f"op{n}_left_curve": int(rng.integers(0, 4)), f"op{n}_right_curve": int(rng.integers(0, 4)),
            f"op{n}_eg_rate_1": int(rng.integers(40, 100)), f"op{n}_eg_rate_2": int(rng.integers(20, 100)),
            f"op{n}_eg_rate_3": int(rng.integers(20, 100)), f"op{n}_eg_rate_4": int(rng.integers(30, 100)),
            f"op{n}_eg_level_1": int(rng.integers(80, 100)), f"op{n}_eg_level_2": int(rng.integers(50, 100)),
            f"op{n}_eg_level_3": int(rng.integers(40, 100)), f"op{n}_eg_level_4": 0,
        })
    return Voice.init().replace(**ch).with_name(f"RND {i:02d} W{i % 6}")


# -- renders ---------------------------------------------------------------------------------------
def render_engine(voice: Voice, note: int, velocity: int, *, dtype=torch.float32) -> np.ndarray:
    """A held note through the engine: key-up at the first block at or after HELD, exactly
    (HELD + TAIL) * SR samples (dexed-py's key-up falls on the same block)."""
    engine = DX7(voice, sample_rate=SR, dtype=dtype)
    total = int(round((HELD + TAIL) * SR))
    key_up = engine.block_of(HELD)
    engine.receive(bytes([0x90, note, velocity]))
    held = engine.advance(key_up)
    engine.receive(bytes([0x80, note, 0]))
    rest = engine.advance(max(0, -(-total // 64) - key_up))
    return np.concatenate([held, rest])[:total]


def distances(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    return float(np.median(spectral_distance_db(ours, reference))), long_term_distance_db(ours, reference)


def measure_voice(voice: Voice) -> dict:
    renders = []
    for note in NOTES:
        for vel in VELOCITIES:
            ref = render_dexed(voice, note, vel, HELD, tail=TAIL, sample_rate=SR)
            ours = render_engine(voice, note, vel)
            frame, lt = distances(ours, ref)
            renders.append({"note": note, "velocity": vel, "frame_db": round(frame, 3), "long_term_db": round(lt, 3),
                            "long_term_40_db": round(long_term_distance_db(ours, ref, range_db=40.0), 3),
                            "dexed_peak_db": round(float(20 * np.log10(np.abs(ref).max() + 1e-12)), 1)})
    worst_f = max(renders, key=lambda r: r["frame_db"])
    worst_l = max(renders, key=lambda r: r["long_term_db"])
    return {"frame_db": worst_f["frame_db"], "long_term_db": worst_l["long_term_db"],
            "long_term_40_db": max(r["long_term_40_db"] for r in renders),
            "quiet_renders": sum(r["dexed_peak_db"] < QUIET_DB for r in renders),
            "frame_worst_at": [worst_f["note"], worst_f["velocity"]],
            "long_term_worst_at": [worst_l["note"], worst_l["velocity"]], "renders": renders}


ABLATIONS = {
    "LFO": lambda v: v.replace(lfo_pitch_mod_depth=0, lfo_amp_mod_depth=0, pitch_mod_sensitivity=0,
                               **{f"op{n}_amp_mod_sensitivity": 0 for n in OPS}),
    "pitch EG": lambda v: v.replace(**{f"pitch_eg_level_{i}": 50 for i in range(1, 5)}),
    "feedback": lambda v: v.replace(feedback=0),
    "level scaling": lambda v: v.replace(**{f"op{n}_{s}_depth": 0 for n in OPS for s in ("left", "right")}),
    "rate scaling": lambda v: v.replace(**{f"op{n}_rate_scaling": 0 for n in OPS}),
    "velocity": lambda v: v.replace(**{f"op{n}_velocity_sensitivity": 0 for n in OPS}),
    "fixed ops": lambda v: v.replace(**{k: x for n in OPS if v[f"op{n}_mode"]
                                        for k, x in ((f"op{n}_mode", 0), (f"op{n}_coarse", 1))}),
}


def floor_share(ours: np.ndarray, reference: np.ndarray) -> float:
    """Share of the long-term distance from bins where dexed-py is more than 20 dB above the engine
    (before flooring). Dexed's fixed-point sine/exp tables and output quantisation leave a noise and
    distortion floor that a float engine does not have; sparse or quiet spectra bring it within the
    60 dB range."""
    lt_ours, lt_ref = long_term_spectrum_db(ours), long_term_spectrum_db(reference)
    floor = lt_ref.max() - 60.0
    a, b = np.maximum(lt_ours, floor), np.maximum(lt_ref, floor)
    active = (lt_ours > floor) | (lt_ref > floor)
    diff = np.abs(a - b)[active]
    return float(diff[(lt_ref - lt_ours)[active] > 20.0].sum() / max(diff.sum(), 1e-12))


def diagnose(voice: Voice, row: dict, metric: str) -> dict:
    """Re-render the voice's worst note for ``metric`` and say what it comes from: a near-silent
    render, feedback chaos (the engine's float32 and float64 renders already differ), Dexed's
    noise floor, or a feature (re-rendered in both engines with it taken out of the voice; the
    one whose removal brings the distance below 60 % is named)."""
    key = 1 if metric == "long_term_db" else 0
    note, vel = row["long_term_worst_at" if key else "frame_worst_at"]
    ours, ref = render_engine(voice, note, vel), render_dexed(voice, note, vel, HELD, tail=TAIL, sample_rate=SR)
    base = distances(ours, ref)
    chaos = distances(ours, render_engine(voice, note, vel, dtype=torch.float64))
    peak = float(20 * np.log10(np.abs(ref).max() + 1e-12))
    share = floor_share(ours, ref)
    drops = {}
    for label, strip in ABLATIONS.items():
        stripped = strip(voice)
        if stripped.content_hash == voice.content_hash:
            continue
        d = distances(render_engine(stripped, note, vel),
                      render_dexed(stripped, note, vel, HELD, tail=TAIL, sample_rate=SR))
        drops[label] = {"frame_db": round(d[0], 2), "long_term_db": round(d[1], 2)}
    best = min(drops, key=lambda k: drops[k][metric], default=None)
    feature = best if best is not None and drops[best][metric] < 0.6 * base[key] else None
    if peak < QUIET_DB:
        cause = f"near-silent render ({peak:.0f} dBFS)"
    elif key == 0 and chaos[0] > 0.5 * base[0]:
        cause = "feedback chaos"
    elif key == 0 and base[1] < 1.0:
        cause = "fine structure only (long-term agrees)"
    elif share > 0.5:
        cause = "Dexed noise floor"
    else:
        cause = feature or "-"
    return {"metric": metric, "at": [note, vel], "frame_db": round(base[0], 2), "long_term_db": round(base[1], 2),
            "dexed_peak_db": round(peak, 1), "f32_vs_f64_frame_db": round(chaos[0], 2),
            "f32_vs_f64_long_term_db": round(chaos[1], 2), "floor_share": round(share, 2),
            "without": drops, "feature": feature, "cause": cause}


def percentile_row(values) -> dict:
    a = np.asarray(values, dtype=float)
    return {"median": round(float(np.median(a)), 2), "p90": round(float(np.percentile(a, 90)), 2),
            "max": round(float(a.max()), 2)}


def fidelity(args) -> dict:
    folder = Path(os.environ.get("DX7TOOLS_HEXTER_DIR", "/usr/share/hexter"))
    factory = factory_voices(folder)[: args.limit]
    rng = np.random.default_rng(args.seed)
    n_random = args.random if args.limit is None else min(args.random, args.limit)
    randoms = [random_voice(i, rng) for i in range(n_random)]
    entries = [(bank, i, v, "LFO or pitch EG" if uses_modulation(v) else "no modulation")
               for i, (bank, v) in enumerate(factory)]
    entries += [("random", i, v, "random") for i, v in enumerate(randoms)]
    print(f"1. Fidelity to dexed-py: {len(factory)} distinct factory voices from {folder} + {len(randoms)} random "
          f"(seed {args.seed}); notes {NOTES}, velocities {VELOCITIES}, {HELD} s held + {TAIL} s tail, {SR} Hz")
    rows, started = [], time.perf_counter()
    for k, (bank, index, voice, group) in enumerate(entries):
        row = {"bank": bank, "index": index, "name": voice.name.strip(), "hash": voice.content_hash, "group": group,
               "features": features(voice), **measure_voice(voice)}
        rows.append(row)
        if (k + 1) % 50 == 0:
            print(f"  {k + 1}/{len(entries)} voices, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    groups = {"factory, no modulation": [r for r in rows if r["group"] == "no modulation"],
              "factory, LFO or pitch EG": [r for r in rows if r["group"] == "LFO or pitch EG"],
              "factory, all": [r for r in rows if r["group"] != "random"],
              "random": [r for r in rows if r["group"] == "random"]}
    summary = {label: {"voices": len(g), "frame_db": percentile_row([r["frame_db"] for r in g]),
                       "long_term_db": percentile_row([r["long_term_db"] for r in g]),
                       "long_term_40_db": percentile_row([r["long_term_40_db"] for r in g]),
                       "quiet_renders": sum(r["quiet_renders"] for r in g)}
               for label, g in groups.items() if g}
    print(f"   {len(rows)} voices in {time.perf_counter() - started:.0f} s; per voice the worst of its 6 renders, dB "
          f"(long-term 40: the long-term distance over bins within 40 dB of the loudest instead of 60; "
          f"quiet: renders whose dexed-py peak is below {QUIET_DB:.0f} dBFS)")
    print(f"   {'group':26s} {'voices':>6s}   {'frame: median':>13s} {'p90':>6s} {'max':>6s}   "
          f"{'long-term: median':>17s} {'p90':>6s} {'max':>6s}   {'long-term 40: med':>17s} {'p90':>6s} {'max':>6s}"
          f" {'quiet':>6s}")
    for label, s in summary.items():
        f, lt, l4 = s["frame_db"], s["long_term_db"], s["long_term_40_db"]
        print(f"   {label:26s} {s['voices']:6d}   {f['median']:13.2f} {f['p90']:6.2f} {f['max']:6.2f}   "
              f"{lt['median']:17.2f} {lt['p90']:6.2f} {lt['max']:6.2f}   {l4['median']:17.2f} {l4['p90']:6.2f} "
              f"{l4['max']:6.2f} {s['quiet_renders']:6d}")
    by_voice = {id(r): v for r, (_, _, v, _) in zip(rows, entries)}
    worst = {"long_term_db": sorted(rows, key=lambda r: -r["long_term_db"])[:10],
             "frame_db": sorted(rows, key=lambda r: -r["frame_db"])[:10]}
    print("   cause: a near-silent render; feedback chaos (the engine's float32 and float64 renders differ by more "
          "than half the distance); fine structure only (frame distance high, long-term below 1 dB); Dexed noise "
          "floor (over half the long-term distance from bins where dexed-py is > 20 dB above the engine); else the "
          "feature whose removal from the voice, in both engines, brings the distance below 60 %")
    for metric, label in (("long_term_db", "long-term"), ("frame_db", "frame")):
        print(f"   10 worst by {label} distance:")
        for r in worst[metric]:
            d = r.setdefault("diagnosis", {})[metric] = diagnose(by_voice[id(r)], r, metric)
            ft = r["features"]
            feat = (f"alg {ft['algorithm']:2d} fb {ft['feedback']} fixed {ft['fixed_ops']} wave {ft['lfo_wave']} "
                    f"sync {ft['lfo_sync']} pmd/pms {ft['pmd']:2d}/{ft['pms']} amd {ft['amd']:2d} "
                    f"peg {int(ft['pitch_eg'])} kls {''.join(map(str, ft['curves'])) or '-'}")
            print(f"   {r['bank'][:22]:22s} {r['name']:10s} frame {r['frame_db']:5.2f} "
                  f"long-term {r['long_term_db']:5.2f} @{d['at'][0]}/{d['at'][1]:<3d} | {feat} | {d['cause']} "
                  f"(f32/f64 {d['f32_vs_f64_frame_db']:.2f}, "
                  f"floor {d['floor_share']:.2f}, feature {d['feature'] or '-'})")
    return {"summary": summary, "voices": rows,
            "worst_long_term": [r["name"] for r in worst["long_term_db"]],
            "worst_frame": [r["name"] for r in worst["frame_db"]]}


# -- speed -----------------------------------------------------------------------------------------
def held_events(notes, seconds: float, velocity: int = 100) -> list[Event]:
    return ([Event(0.0, bytes([0x90, n, velocity])) for n in notes]
            + [Event(seconds, bytes([0x80, n, 0])) for n in notes])


def dense_events(seconds: float, controllers: bool = True, seed: int = 1) -> list[Event]:
    """Chords of 3 notes every 0.25 s, each held 0.5 s; CC 2 and pitch bend every 10 ms, CC 1 every 50 ms."""
    rng = np.random.default_rng(seed)
    ev = []
    for t in np.arange(0.0, seconds - 0.5, 0.25):
        for n in rng.choice(np.arange(40, 90), 3, replace=False):
            ev += [Event(float(t), bytes([0x90, int(n), int(rng.integers(40, 128))])),
                   Event(float(t + 0.5), bytes([0x80, int(n), 0]))]
    if controllers:
        for t in np.arange(0.0, seconds, 0.01):
            breath = int(63.5 + 63.5 * np.sin(2 * np.pi * 0.7 * t))
            bend = int(8192 + 4000 * np.sin(2 * np.pi * 0.3 * t))
            ev += [Event(float(t), bytes([0xB0, 2, breath])),
                   Event(float(t + 0.005), bytes([0xE0, bend & 0x7F, bend >> 7]))]
        for t in np.arange(0.0, seconds, 0.05):
            ev.append(Event(float(t), bytes([0xB0, 1, int(64 + 63 * np.sin(2 * np.pi * 0.1 * t))])))
    return sorted(ev, key=lambda e: e.time)


def speed(args, factory) -> dict:
    named = {v.name: v for _, v in factory}
    voices = [named[n] for n in SPEED_VOICES if n in named] or [v for _, v in factory[:8]]
    seconds, rep = args.seconds, args.repeat
    print(f"2. Speed, one thread, {SR} Hz; real-time factor = audio seconds / wall seconds, best of {rep}")
    t0 = time.perf_counter()
    DX7(voices[0], sample_rate=SR).render(held_events([60], 0.5), tail=0.0)
    cold = time.perf_counter() - t0
    warm = "; the fidelity section ran first, so no setup was left" if "fidelity" in args.sections else ""
    print(f"   first engine render of this section: {cold:.2f} s (0.5 s of audio, one-time setup included{warm})")
    rows = []
    print(f"   one note held {seconds:.0f} s:")
    print(f"   {'voice':12s} {'alg':>3s} {'fb':>2s} {'engine RTF':>10s} {'dexed RTF':>10s} {'engine/dexed':>12s}")
    for v in voices:
        ev = held_events([60], seconds)
        t_engine = best_of(rep, lambda: DX7(v, sample_rate=SR).render(ev, tail=0.0))
        t_dexed = best_of(rep, lambda: render_dexed(v, 60, 100, seconds, tail=0.0, sample_rate=SR))
        row = {"name": v.name.strip(), "algorithm": v.algorithm, "feedback": v.feedback,
               "engine_rtf": seconds / t_engine, "dexed_rtf": seconds / t_dexed}
        row["ratio"] = row["engine_rtf"] / row["dexed_rtf"]
        rows.append(row)
        print(f"   {row['name']:12s} {v.algorithm:3d} {v.feedback:2d} {row['engine_rtf']:10.1f} "
              f"{row['dexed_rtf']:10.1f} {row['ratio']:11.3f}x")
    ratio = float(np.exp(np.mean(np.log([r["ratio"] for r in rows]))))
    print(f"   geometric mean engine/dexed: {ratio:.3f}x (goal >= 0.5x: {'met' if ratio >= 0.5 else 'NOT met'})")
    v = voices[0]
    notes = list(range(36, 84, 3))
    t_poly = best_of(rep, lambda: DX7(v, sample_rate=SR).render(held_events(notes, seconds), tail=0.0))
    t_poly_dexed = best_of(rep, lambda: [render_dexed(v, n, 100, seconds, tail=0.0, sample_rate=SR) for n in notes])
    poly = {"voice": v.name.strip(), "notes": len(notes), "engine_rtf": seconds / t_poly,
            "dexed_16_calls_rtf": seconds / t_poly_dexed}
    poly["ratio"] = poly["engine_rtf"] / poly["dexed_16_calls_rtf"]
    print(f"   16 notes held together {seconds:.0f} s ({poly['voice']}): engine RTF {poly['engine_rtf']:.1f}, "
          f"dexed-py 16 calls {poly['dexed_16_calls_rtf']:.1f}, ratio {poly['ratio']:.3f}x")
    dense = {"voice": v.name.strip(), "seconds": seconds}
    for label, ctl in (("with_controllers", True), ("notes_only", False)):
        ev = dense_events(seconds, ctl)
        t = best_of(rep, lambda: DX7(v, sample_rate=SR, functions=CONTROLLER_FUNCTIONS).render(ev, tail=0.0))
        dense[label] = {"events": len(ev), "rtf": seconds / t}
    print(f"   dense stream {seconds:.0f} s ({dense['voice']}, chords of 3 every 0.25 s): "
          f"{dense['with_controllers']['events']} events (CC 2 + bend every 10 ms, CC 1 every 50 ms) RTF "
          f"{dense['with_controllers']['rtf']:.1f}; the notes alone ({dense['notes_only']['events']} events) RTF "
          f"{dense['notes_only']['rtf']:.1f}; dexed-py takes no MIDI stream")
    return {"cold_first_render_s": cold, "held": rows, "held_ratio_geomean": ratio, "polyphony": poly, "dense": dense}


# -- memory ----------------------------------------------------------------------------------------
def performance(seconds: float, seed: int = 7):
    """A synthetic performance, generated lazily in time order: a note every ~0.25 s (held 0.1-1.5 s),
    sustain pedal down 2 s of every 8, CC 2 every 10 ms, bend every 20 ms, CC 1 every 50 ms."""
    rng = np.random.default_rng(seed)
    heap: list = []
    seq = 0

    def push(t, data):
        nonlocal seq
        heapq.heappush(heap, (t, seq, data))
        seq += 1

    t_note, t_cc = 0.0, 0.0
    while True:
        horizon = min(t_note, t_cc)
        while heap and heap[0][0] <= horizon:
            t, _, data = heapq.heappop(heap)
            yield Event(t, data)
        if horizon >= seconds:
            break
        if t_note <= t_cc:
            n = int(rng.integers(36, 97))
            push(t_note, bytes([0x90, n, int(rng.integers(30, 128))]))
            push(t_note + float(rng.uniform(0.1, 1.5)), bytes([0x80, n, 0]))
            t_note += float(rng.uniform(0.2, 0.3))
        else:
            k = int(round(t_cc * 100))
            push(t_cc, bytes([0xB0, 2, int(63.5 + 63.5 * np.sin(0.05 * k))]))
            if k % 2 == 0:
                b = int(8192 + 3000 * np.sin(0.013 * k))
                push(t_cc, bytes([0xE0, b & 0x7F, b >> 7]))
            if k % 5 == 0:
                push(t_cc, bytes([0xB0, 1, int(64 + 63 * np.sin(0.002 * k))]))
            if k % 800 == 0:
                push(t_cc, bytes([0xB0, 64, 127]))
            if k % 800 == 200:
                push(t_cc, bytes([0xB0, 64, 0]))
            t_cc = (k + 1) / 100
    while heap:
        t, _, data = heapq.heappop(heap)
        yield Event(t, data)


def current_rss_mb() -> float | None:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def maxrss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024


def reset_hwm() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0: ``5`` to ``/proc/self/clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def hwm_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def memory_child(minutes: float, mode: str) -> dict:
    """Runs in a fresh process: warm up, then stream (or render) ``minutes`` of the performance.

    Peak RSS growth is measured from a baseline taken after imports and a 5-second warm-up
    stream: the kernel's peak mark (VmHWM) is reset there where Linux allows it; elsewhere
    ``ru_maxrss`` is used, which cannot be reset (so a higher peak during imports hides any
    growth smaller than it). tracemalloc runs from the baseline on (it slows Python down)."""
    import gc
    torch.set_num_threads(1)
    folder = Path(os.environ.get("DX7TOOLS_HEXTER_DIR", "/usr/share/hexter"))
    named = {v.name: v for _, v in factory_voices(folder)} if folder.exists() else {}
    voice = named.get("BRASS   1", Voice.init())
    for _ in DX7(voice, sample_rate=SR, functions=CONTROLLER_FUNCTIONS).stream(performance(5.0)):
        pass
    gc.collect()
    base_now, base_max = current_rss_mb(), maxrss_mb()
    hwm = reset_hwm() and hwm_mb() is not None
    base_peak = hwm_mb() if hwm else base_max
    tracemalloc.start()
    engine = DX7(voice, sample_rate=SR, functions=CONTROLLER_FUNCTIONS)
    samples, chunks, largest, started = 0, 0, 0, time.perf_counter()
    rss_minute, traced_minute, sampled_max = [], [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        if mode in ("stream", "poly16"):
            source = (performance(minutes * 60) if mode == "stream"
                      else iter(held_events(list(range(36, 84, 3)), minutes * 60)))
            with wave.open(str(Path(tmp) / "out.wav"), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(SR)
                for chunk in engine.stream(source, tail=2.0):
                    w.writeframes((np.clip(chunk * 0.25, -1, 1) * 32767).astype("<i2").tobytes())
                    before = samples // (60 * SR)
                    samples += len(chunk)
                    chunks += 1
                    largest = max(largest, len(chunk))
                    sampled_max = max(sampled_max, current_rss_mb() or 0.0)
                    if samples // (60 * SR) > before:       # a minute of audio done
                        rss_minute.append(round(sampled_max - (base_now or 0.0), 1))
                        traced_minute.append(round(tracemalloc.get_traced_memory()[1] / 2**20, 2))
                        tracemalloc.reset_peak()
                        sampled_max = 0.0
        else:
            audio = engine.render(performance(minutes * 60), tail=2.0)
            samples, chunks, largest = len(audio), 1, len(audio)
    wall = time.perf_counter() - started
    traced_peak = max(traced_minute + [tracemalloc.get_traced_memory()[1] / 2**20])
    tracemalloc.stop()
    peak = hwm_mb() if hwm else maxrss_mb()
    return {"minutes": minutes, "mode": mode, "audio_s": round(samples / SR, 1), "chunks": chunks,
            "largest_chunk_samples": largest, "wall_s": round(wall, 1),
            "rtf_with_tracemalloc": round(samples / SR / wall, 1),
            "summary": {k: v for k, v in engine.summary.items() if k != "ignored"},
            "peak_measure": "VmHWM reset at the baseline" if hwm else "ru_maxrss (not resettable)",
            "baseline_rss_mb": round(base_now or 0.0, 1), "baseline_peak_mb": round(base_peak, 1),
            "peak_rss_growth_mb": round(peak - base_peak, 1),
            "rss_peak_growth_per_minute_mb": rss_minute, "tracemalloc_peak_per_minute_mb": traced_minute,
            "tracemalloc_peak_mb": round(traced_peak, 2)}


def memory(args) -> dict:
    runs = [(1.0, "stream"), (args.minutes, "stream"), (1.0, "render"), (10 / 60, "poly16")]
    print("3. Memory: a synthetic performance (BRASS 1, breath/wheel assigned) streamed through DX7.stream into a "
          "16-bit WAV, chunk by chunk; a fresh subprocess each; growth over a warmed-up baseline")
    out = []
    for minutes, mode in runs:
        proc = subprocess.run([sys.executable, __file__, "--memory-child", str(minutes), mode],
                              capture_output=True, text=True, env=os.environ)
        if proc.returncode:
            print(proc.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"memory child failed ({minutes} min {mode})")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        out.append(r)
        what = f"{minutes:4.0f} min" if mode != "poly16" else "16 notes held together"
        print(f"   {mode:6s} {what}: {r['summary'].get('notes')} notes, {r['audio_s']:.0f} s audio in "
              f"{r['chunks']} chunks (largest {r['largest_chunk_samples']} samples), {r['wall_s']:.0f} s wall "
              f"(RTF {r['rtf_with_tracemalloc']} with tracemalloc on)")
        print(f"          peak RSS growth {r['peak_rss_growth_mb']:.1f} MB ({r['peak_measure']}; baseline RSS "
              f"{r['baseline_rss_mb']:.0f} MB), tracemalloc peak {r['tracemalloc_peak_mb']:.2f} MB")
        if r["rss_peak_growth_per_minute_mb"]:
            print(f"          per minute of audio: RSS peak growth {r['rss_peak_growth_per_minute_mb']} MB, "
                  f"tracemalloc peak {r['tracemalloc_peak_per_minute_mb']} MB")
    one, many = out[0], out[1]
    print(f"   {args.minutes:.0f}-minute stream vs 1-minute stream: peak RSS growth "
          f"{many['peak_rss_growth_mb']:.1f} vs {one['peak_rss_growth_mb']:.1f} MB, "
          f"tracemalloc peak {many['tracemalloc_peak_mb']:.2f} vs "
          f"{one['tracemalloc_peak_mb']:.2f} MB (render() of 1 minute, for scale: "
          f"{out[2]['peak_rss_growth_mb']:.1f} MB RSS, {out[2]['tracemalloc_peak_mb']:.2f} MB traced)")
    poly = out[3]
    print(f"   polyphony: 16 notes held together stream in chunks of up to "
          f"{poly['largest_chunk_samples'] // 64} blocks "
          f"({poly['largest_chunk_samples'] // 64 * 16} block-slots; CHUNK_SLOT_BLOCKS says "
          f"{getattr(dx7_module, 'CHUNK_SLOT_BLOCKS', '?')}), peak RSS growth {poly['peak_rss_growth_mb']:.1f} MB")
    return {"runs": out}


def code_state() -> dict:
    """The commit and whether the engine's files differ from it (the engine changes under active work)."""
    root = Path(__file__).resolve().parent.parent
    files = ["ddx7/synth/dx7.py", "ddx7/synth/core.py", "ddx7/synth/feedback.py", "dx7tools/instrument.py",
             "dx7tools/envelope.py", "dx7tools/modulation.py"]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *files], cwd=root, capture_output=True,
                               text=True).stdout.split("\n")
        return {"commit": head, "engine_files_modified": [ln[3:] for ln in dirty if ln.strip()]}
    except OSError:
        return {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(SECTIONS), help="sections, comma-separated: " + ", ".join(SECTIONS))
    ap.add_argument("--limit", type=int, default=None, help="first N distinct factory voices (and at most N random)")
    ap.add_argument("--random", type=int, default=60, help="random voices in the fidelity section")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=10.0, help="audio per speed measurement")
    ap.add_argument("--repeat", type=int, default=3, help="best of N for the speed figures")
    ap.add_argument("--minutes", type=float, default=10.0, help="the long stream of the memory section")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--memory-child", nargs=2, metavar=("MINUTES", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.memory_child:
        print(json.dumps(memory_child(float(args.memory_child[0]), args.memory_child[1])))
        return
    only = args.sections = [s.strip() for s in args.only.replace("|", ",").split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    folder = Path(os.environ.get("DX7TOOLS_HEXTER_DIR", "/usr/share/hexter"))
    result = {"sample_rate": SR, "torch_threads": torch.get_num_threads(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "code": code_state(), "argv": sys.argv[1:]}
    if "fidelity" in only:
        result["fidelity"] = fidelity(args)
    if "speed" in only:
        result["speed"] = speed(args, factory_voices(folder))
    if "memory" in only:
        result["memory"] = memory(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
