"""f0 trackers side by side: accuracy against f0 known by construction, agreement with CREPE full on
the default corpora, and the time to compute the features of a 5-minute default corpus.

    python benchmarks/bench_f0.py [--seconds 20] [--corpus-seconds 60] [--threads 2] [--skip-speed]

Sets whose f0 is known by construction (every frame's truth is the f0 the signal was made with):

``fm``
    the project's differentiable DX7 (:class:`ddx7.synth.FMSynth`) through the paper's three
    fixed configurations (violin, flute, trumpet; modulators at whole-number frequency ratios
    only, at random levels, so that the sound is harmonic), notes MIDI 45-88 with chosen bends: glides
    into notes, vibrato (5-6.5 Hz, 10-40 cents), bends of up to 2 semitones and back; silences
    between notes. Controls every 16 samples, so the truth between them is exact to 0.1 cent.
``soundfont``
    phrases of the default-corpus generator (notes, pitch-bend vibrato) rendered with the General
    MIDI soundfont that ships with pretty_midi, seed 1 (the default corpora use seed 0); the truth
    is the held key plus the pitch bend.

Pitch is scored on the frames where the truth is voiced and at least 40 ms from a note's start
or end (raw pitch: whatever the tracker's voicing says): share within 10 and 50 cents, octave
errors (off by a whole number of octaves, within 50 cents). Voicing errors: truth-voiced frames
below the tracker's threshold plus frames 0.4 s or more into a silence at or above it, over
both. The default corpora (violin, flute, trumpet, seed 0): the valid and test segments, against
CREPE full computed every 320 samples, on its own frames (every 5th), where CREPE full is voiced.

Speed: :func:`ddx7.data.features.compute_features` (f0 + loudness) over every segment of the
5-minute default violin corpus (~311 s); CREPE full and pYIN on its first 10 s only, scaled.
The "steady" column scores the frames whose truth stays within 2 cents for 48 ms either side
(no glide, vibrato or bend under the analysis window).
Timings depend on the machine's load, printed with them; compare rows of one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddx7.data import corpus as corpora  # noqa: E402
from ddx7.data.f0 import CONFIDENCE, track_f0  # noqa: E402
from ddx7.data.features import compute_features  # noqa: E402
from dx7tools.audio import HOP, SAMPLE_RATE  # noqa: E402

VARIANTS = [("crepe-full", 320), ("crepe-tiny", None), ("crepe-tiny", 128), ("crepe-tiny", 320),
            ("pesto", None), ("pesto", 320), ("pyin", 160)]
"""(tracker, step) pairs measured; step None = every frame (64 samples)."""
FULL_SECONDS = 10
"""The slow trackers (``SLOW``) are timed on this many seconds of the corpus only, and scaled."""
SLOW = ("crepe-full", "pyin")
EDGE_S = 0.04
SILENCE_S = 0.4
INSTRUMENTS = ("violin", "flute", "trumpet")


# -- sets with known f0 ---------------------------------------------------------------------------
def _note_curve(rng, n: int, key: int, rate: float) -> np.ndarray:
    """(n,) MIDI pitch of one note: a glide in, vibrato, maybe a bend out and back."""
    t = np.arange(n) / rate
    midi = np.full(n, float(key))
    if rng.random() < 0.5:                                   # glide into the note
        midi += rng.uniform(-1.0, 1.0) * np.clip(1 - t / rng.uniform(0.05, 0.15), 0, 1)
    if rng.random() < 0.7:                                   # delayed vibrato
        depth, vib, delay = rng.uniform(10, 40) / 100, rng.uniform(5.0, 6.5), rng.uniform(0.1, 0.3)
        midi += depth * np.clip((t - delay) / 0.3, 0, 1) * np.sin(2 * np.pi * vib * t)
    if rng.random() < 0.4 and t[-1] > 0.8:                   # bend away and back
        size, at = rng.uniform(-2, 2), rng.uniform(0.2, t[-1] - 0.6)
        midi += size * np.clip(np.minimum(t - at, at + 0.5 - t) / 0.15, 0, 1)
    return midi


def fm_set(seconds: float, seed: int = 0):
    """FMSynth notes with chosen bends: ``(audio, truth_hz (T,), clear (T,) bool, silent (T,) bool)``."""
    from ddx7.rank.choose import paper_config
    from ddx7.synth import FMSynth

    rng = np.random.default_rng(seed)
    audio, truth, clear, silent = [], [], [], []
    sub = 16                                                  # control hop of the synth
    rate = SAMPLE_RATE / sub
    for inst in INSTRUMENTS:
        config = paper_config(inst)
        synth = FMSynth(config, SAMPLE_RATE, sub)
        # modulators at whole-number ratios only: the others would make the sound inharmonic
        harmonic = np.array([float(r) == round(r) for r in config.ratios])
        f0, levels = [np.zeros(int(0.3 * rate))], [np.zeros((int(0.3 * rate), 6))]
        while sum(len(x) for x in f0) < seconds / len(INSTRUMENTS) * rate:
            n = int(rng.uniform(0.4, 1.5) * rate)
            f0.append(440.0 * 2 ** ((_note_curve(rng, n, int(rng.integers(45, 89)), rate) - 69) / 12))
            env = np.minimum(1, np.minimum(np.arange(n) / (0.03 * rate), (n - np.arange(n)) / (0.05 * rate)))
            modulators = rng.uniform(0.1, 0.8, 6) * harmonic
            levels.append(env[:, None] * np.where(synth.carrier_mask.numpy() > 0, 1.0, modulators))
            gap = int(rng.uniform(0.5, 0.9) * rate)
            f0.append(np.zeros(gap))
            levels.append(np.zeros((gap, 6)))
        f0_s, lev = np.concatenate(f0), np.concatenate(levels)
        with torch.no_grad():
            y = synth(torch.from_numpy(f0_s)[None].float(), torch.from_numpy(lev)[None].float())[0].numpy()
        y = 0.5 * y / np.abs(y).max()
        # frame k is centred on sample k * HOP; the synth reaches control j at sample (j + 1) * sub - 1
        frames = np.arange(-(-len(y) // HOP)) * HOP
        ctrl = np.clip((frames + 1) // sub - 1, 0, len(f0_s) - 1)
        edge = int(EDGE_S * rate)
        voiced = f0_s > 0
        near_edge = np.convolve(~voiced, np.ones(2 * edge + 1), "same") > 0
        far = np.convolve(voiced, np.ones(2 * int(SILENCE_S * rate) + 1), "same") == 0
        audio.append(y.astype(np.float32))
        truth.append(f0_s[ctrl])
        clear.append(voiced[ctrl] & ~near_edge[ctrl])
        silent.append(far[ctrl])
    return _join(audio, truth, clear, silent)


def _join(audio, truth, clear, silent):
    """Concatenate per-part signals cut to whole frames, with their per-frame arrays."""
    out = [[], [], [], []]
    for a, t, c, s in zip(audio, truth, clear, silent):
        k = len(a) // HOP
        for lst, x in zip(out, (a[: k * HOP], t[:k], c[:k], s[:k])):
            lst.append(x)
    return tuple(np.concatenate(x) for x in out)


def _events_truth(events, frames_s: np.ndarray):
    """Truth MIDI pitch, clear-voiced and silent masks at ``frames_s`` from phrase events."""
    key = np.full(len(frames_s), np.nan)
    bend = np.zeros(len(frames_s))
    start = np.full(len(frames_s), np.nan)
    end = np.full(len(frames_s), np.nan)
    last_off = np.full(len(frames_s), -np.inf)
    for t, kind, a, _b in events:
        later = frames_s >= t
        if kind == "on":
            key[later], start[later], end[later] = a, t, np.inf
        elif kind == "off":
            held = later & (key == a) & np.isinf(end)
            end[held] = t
            last_off[later] = t
        elif kind == "bend":
            bend[later] = (a - 8192) / 8192 * corpora.BEND_RANGE
    sounding = ~np.isnan(key) & (frames_s < end)
    clear = sounding & (frames_s - start >= EDGE_S) & (end - frames_s >= EDGE_S)
    silent = ~sounding & (frames_s - last_off >= SILENCE_S)
    return np.where(sounding, key + bend, np.nan), clear, silent


def soundfont_set(seconds: float, seed: int = 1):
    """Default-corpus phrases rendered with the GM soundfont: ``(audio, truth_hz, clear, silent)``."""
    import soxr

    audio, truth, clear, silent = [], [], [], []
    for i, inst in enumerate(INSTRUMENTS):
        rng = np.random.default_rng([seed, i])
        synth = corpora._new_synth(corpora._PROFILES[inst].program, corpora.RENDER_RATE)
        events, now = [], 0.3
        while now < seconds / len(INSTRUMENTS):
            ev, end = corpora.phrase_events(inst, rng, now)
            events += ev
            now = end + 0.8
        raw = corpora.render_events(synth, events, now, corpora.RENDER_RATE)
        y = np.asarray(soxr.resample(raw, corpora.RENDER_RATE, SAMPLE_RATE), dtype=np.float32)
        y = 0.5 * y / np.abs(y).max()
        frames_s = np.arange(-(-len(y) // HOP)) * HOP / SAMPLE_RATE
        midi, c, s = _events_truth(events, frames_s)
        audio.append(y)
        truth.append(440.0 * 2 ** ((np.nan_to_num(midi, nan=69.0) - 69) / 12))
        clear.append(c)
        silent.append(s)
    return _join(audio, truth, clear, silent)


# -- scoring --------------------------------------------------------------------------------------
def steady_frames(truth: np.ndarray, voiced: np.ndarray, cents: float = 2.0, frames: int = 12) -> np.ndarray:
    """``voiced`` frames whose truth stays within ``cents`` over +-``frames`` frames (48 ms)."""
    c = 1200 * np.log2(np.maximum(truth, 1e-3))
    padded = np.pad(c, frames, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * frames + 1)
    return voiced & (np.abs(windows - c[:, None]).max(axis=1) <= cents)


def score(f0: np.ndarray, conf: np.ndarray, threshold: float, truth: np.ndarray, voiced: np.ndarray,
          silent: np.ndarray, steady: np.ndarray | None = None) -> dict:
    """Pitch accuracy on ``voiced`` (and ``steady``) frames, voicing errors against ``voiced`` / ``silent``."""
    steady = voiced if steady is None else steady
    steady_err = 1200 * np.log2(np.maximum(f0[steady], 1e-3) / truth[steady])
    err = 1200 * np.log2(np.maximum(f0[voiced], 1e-3) / truth[voiced])
    octave = np.round(err / 1200)
    on = conf >= threshold
    wrong = (~on[voiced]).sum() + on[silent].sum()
    return {"c10": np.mean(np.abs(err) <= 10), "c50": np.mean(np.abs(err) <= 50),
            "octave": np.mean((octave != 0) & (np.abs(err - 1200 * octave) <= 50)),
            "median": np.median(np.abs(err)), "voicing": wrong / max(1, voiced.sum() + silent.sum()),
            "steady10": np.mean(np.abs(steady_err) <= 10)}


def _label(tracker: str, step) -> str:
    return tracker if step is None else f"{tracker}@{step}"


def synthetic_table(seconds: float) -> None:
    sets = {"fm": fm_set(seconds), "soundfont": soundfont_set(seconds)}
    for name, (audio, truth, clear, silent) in sets.items():
        steady = steady_frames(truth, clear)
        print(f"\n{name}: {len(audio) / SAMPLE_RATE:.1f} s, {clear.sum()} scored voiced frames "
              f"({steady.sum()} steady), {silent.sum()} silent frames")
        print(f"{'tracker':16s} {'<=10c':>7s} {'<=50c':>7s} {'octave':>7s} {'med |c|':>8s} {'voicing':>8s} "
              f"{'steady<=10c':>12s} {'x RT':>6s}")
        for tracker, step in VARIANTS:
            t0 = time.perf_counter()
            f0, conf = track_f0(audio, SAMPLE_RATE, hop=HOP, tracker=tracker, step=step)
            dt = time.perf_counter() - t0
            s = score(f0, conf, CONFIDENCE[tracker], truth, clear, silent, steady)
            print(f"{_label(tracker, step):16s} {100 * s['c10']:6.1f}% {100 * s['c50']:6.1f}% "
                  f"{100 * s['octave']:6.2f}% {s['median']:8.1f} {100 * s['voicing']:7.2f}% "
                  f"{100 * s['steady10']:11.1f}% {len(audio) / SAMPLE_RATE / dt:6.1f}")


def corpus_table(home: Path, seconds: float) -> None:
    print(f"\nagreement with CREPE full (every 320 samples, its own frames) on the default corpora's "
          f"valid+test segments (up to {seconds:g} s each)")
    print(f"{'tracker':16s} " + " ".join(f"{inst + ' <=10c/<=50c/oct/voicing':>34s}" for inst in INSTRUMENTS))
    refs = {}
    for inst in INSTRUMENTS:
        corpus = corpora.build_corpus(home, inst)
        segs = [s for s in corpus.segments() if s["split"] != "train"]
        audio = np.concatenate([corpus.load(s)[: len(corpus.load(s)) // 320 * 320] for s in segs])
        audio = audio[: int(seconds * SAMPLE_RATE) // 320 * 320]
        f0, conf = track_f0(audio, SAMPLE_RATE, hop=320, tracker="crepe-full")
        refs[inst] = (audio, f0, conf >= CONFIDENCE["crepe-full"])
    for tracker, step in VARIANTS[1:]:
        cells = []
        for inst in INSTRUMENTS:
            audio, ref, voiced = refs[inst]
            f0, conf = track_f0(audio, SAMPLE_RATE, hop=HOP, tracker=tracker, step=step)
            f0, on = f0[::5], conf[::5] >= CONFIDENCE[tracker]
            s = score(f0, conf[::5], CONFIDENCE[tracker], ref.astype(np.float64), voiced, np.zeros_like(voiced))
            disagree = np.mean(on != voiced)
            cells.append(f"{100 * s['c10']:6.1f}/{100 * s['c50']:5.1f}/{100 * s['octave']:4.1f}/{100 * disagree:4.1f}%")
        print(f"{_label(tracker, step):16s} " + " ".join(f"{c:>34s}" for c in cells))


def speed_table(home: Path) -> None:
    corpus = corpora.build_corpus(home, "violin") if not (home / "corpora" / "violin").exists() \
        else corpora.Corpus.open(home, "violin")
    segs = [corpus.load(s) for s in corpus.segments()]
    total = sum(len(a) for a in segs) / SAMPLE_RATE
    print(f"\nfeatures (f0 + loudness) of the default violin corpus, {total:.0f} s, "
          f"{torch.get_num_threads()} threads; load average before: {os.getloadavg()[0]:.2f}")
    for tracker, step in VARIANTS + [("crepe-full", None)]:
        sampled = tracker in SLOW                # timed on the first FULL_SECONDS of audio, scaled
        audio = [np.concatenate(segs)[: FULL_SECONDS * SAMPLE_RATE]] if sampled else segs
        seconds = sum(len(a) for a in audio) / SAMPLE_RATE
        t0 = time.perf_counter()
        for a in audio:
            compute_features(a, SAMPLE_RATE, hop=HOP, tracker=tracker, crepe_hop=step)
        dt = (time.perf_counter() - t0) * total / seconds
        print(f"{_label(tracker, step):16s} {dt:7.1f} s for the corpus ({total / dt:5.2f}x real time)"
              f"{'  <= 60 s' if dt <= 60 else ''}{f'  (timed on {seconds:.0f} s, scaled)' if sampled else ''}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="seconds of each known-f0 set")
    ap.add_argument("--corpus-seconds", type=float, default=30.0, help="seconds of each default corpus compared")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-corpora", action="store_true")
    ap.add_argument("--skip-synthetic", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()[0]:.2f}")
    if not args.skip_synthetic:
        synthetic_table(args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_corpora:
            corpus_table(Path(tmp), args.corpus_seconds)
        if not args.skip_speed:
            speed_table(Path(tmp))


if __name__ == "__main__":
    main()
