"""Every factory voice through preview's ddx7 engine against dexed-py: how close, and what the LFO and
pitch EG modelling buys.

For each voice of Debian hexter's banks (DX7 ROM1-4, TX7, FB-01 conversions; duplicates by
content once), one held note (MIDI 60, velocity 100, 1.0 s held, 0.3 s tail, 16 kHz) is rendered
by dexed-py and by ``preview``'s ddx7 engine, and, for voices that use the LFO or the pitch EG,
also by the ddx7 engine with them taken out of the voice (what a synth ignoring them plays).
Distances (:func:`ddx7.synth.fidelity.spectral_distance_db`): the median frame (dB) and the
long-term spectrum (mean absolute dB difference of the power averaged over the note; LFO phase
cannot match Dexed's frame by frame when Dexed's LFO phase differs, the long-term spectrum
can). Prints the median and 90th percentile over voices, per group, and the worst voices.

    DX7TOOLS_HEXTER_DIR=.cache/hexter python benchmarks/bench_voices.py [--limit N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_engine import factory_voices  # noqa: E402 (this folder: the same voices, deduplicated)
from ddx7.synth.fidelity import long_term_distance_db, spectral_distance_db  # noqa: E402
from ddx7.synth.preview import render_ddx7, render_dexed  # noqa: E402

MODULATION_KEYS = ("lfo_pitch_mod_depth", "lfo_amp_mod_depth") + tuple(f"pitch_eg_level_{i}" for i in range(1, 5))


def uses_modulation(voice) -> bool:
    pitch = voice["lfo_pitch_mod_depth"] and voice["pitch_mod_sensitivity"]
    amp = voice["lfo_amp_mod_depth"] and any(voice[f"op{n}_amp_mod_sensitivity"] for n in range(1, 7))
    return bool(pitch or amp or any(voice[f"pitch_eg_level_{i}"] != 50 for i in range(1, 5)))


def without_modulation(voice):
    return voice.replace(lfo_pitch_mod_depth=0, lfo_amp_mod_depth=0,
                         **{f"pitch_eg_level_{i}": 50 for i in range(1, 5)})


def distances(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    return float(np.median(spectral_distance_db(ours, reference))), long_term_distance_db(ours, reference)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="first N distinct voices only")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    folder = Path(os.environ.get("DX7TOOLS_HEXTER_DIR", "/usr/share/hexter"))
    voices = factory_voices(folder)[: args.limit]
    rows, started = [], time.perf_counter()
    for i, (bank, voice) in enumerate(voices):
        reference = render_dexed(voice, 60, 100, 1.0, tail=0.3)
        row = {"bank": bank, "name": voice.name.strip(), "modulated": uses_modulation(voice)}
        row["frame_db"], row["long_term_db"] = distances(render_ddx7(voice, 60, 100, 1.0, tail=0.3), reference)
        if row["modulated"]:
            plain = render_ddx7(without_modulation(voice), 60, 100, 1.0, tail=0.3)
            row["ignored_frame_db"], row["ignored_long_term_db"] = distances(plain, reference)
        rows.append(row)
        if (i + 1) % 50 == 0:
            print(f"  {i + 1}/{len(voices)} voices, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    summary = {}
    for label, group in (("all", rows), ("with LFO or pitch EG", [r for r in rows if r["modulated"]]),
                         ("without", [r for r in rows if not r["modulated"]])):
        keys = ["frame_db", "long_term_db"] + (["ignored_frame_db", "ignored_long_term_db"]
                                              if label.startswith("with ") else [])
        summary[label] = {"voices": len(group), **{f"{k}_{q}": round(float(np.percentile([r[k] for r in group], p)), 2)
                                                   for k in keys for q, p in (("median", 50), ("p90", 90))}}
    print(f"{len(rows)} distinct voices from {folder}, {time.perf_counter() - started:.0f} s")
    print(f"{'group':24s} {'voices':>6s} {'frame dB med/p90':>18s} {'long-term med/p90':>18s} "
          f"{'ignoring them: frame':>22s} {'long-term':>12s}")
    for label, s in summary.items():
        extra = (f"{s['ignored_frame_db_median']:10.2f}/{s['ignored_frame_db_p90']:<6.2f} "
                 f"{s['ignored_long_term_db_median']:6.2f}/{s['ignored_long_term_db_p90']:<6.2f}"
                 if "ignored_frame_db_median" in s else "")
        print(f"{label:24s} {s['voices']:6d} {s['frame_db_median']:9.2f}/{s['frame_db_p90']:<8.2f} "
              f"{s['long_term_db_median']:9.2f}/{s['long_term_db_p90']:<8.2f} {extra}")
    print("worst by long-term distance:")
    for r in sorted(rows, key=lambda r: -r["long_term_db"])[:8]:
        print(f"  {r['bank']:28s} {r['name']:10s} frame {r['frame_db']:6.2f} dB, long-term {r['long_term_db']:6.2f} dB"
              + (" (LFO / pitch EG)" if r["modulated"] else ""))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "voices": rows}, indent=1))


if __name__ == "__main__":
    main()
