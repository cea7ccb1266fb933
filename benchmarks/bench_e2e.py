"""End to end: recording -> exported voice + .mid -> the DX7 engine -> how close to the recording?

For each corpus (default: the three default corpora) a DDX7 run ``CORPUS-ddx7`` in the data home
(trained here with ``--train MINUTES`` when missing: the paper's configuration, CREPE tiny), and
for each test excerpt of its test split, the rows of :func:`ddx7.evaluate.e2e.compare_take`:

  (a) mk1      the mk1 export (voice + .mid), DX7 engine, Mark I receiver
  (b) dexed    the dexed export (live output-level automation), DX7 engine, Dexed receiver
  (c) start    the voice the run was trained from, same notes, velocities and bends (the floor)
  (d) model    the DDX7 model's own resynthesis (the ceiling)

plus an ablation of (a) (:data:`ABLATION`): the held-note voice alone, the kept (phrase-fitted) voice
alone (notes at velocity 100, no bends, no lane), + velocities, + bends, + the controller lane (= (a)). Distances: multi-resolution log-spectral (dB)
and A-weighted loudness envelope (dB RMS), gains matched. Goals: (a) spectral <= 1.1 x (d) and
<= 0.7 x (c); (a) loudness <= (d) + 1.5 dB. Also: bytes per second of each target's stream and
the time to export.

    python benchmarks/bench_e2e.py --home ~/.dx7tools [--train 3] [--corpus violin] [--excerpts 6] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dx7tools.audio import SAMPLE_RATE, read_audio  # noqa: E402
from dx7tools.performance import write_midi_file  # noqa: E402
from ddx7.evaluate import e2e  # noqa: E402
from ddx7.export.mk1 import plan_mk1_and_dexed  # noqa: E402
from ddx7.export.performance import (LEAD_IN_SECONDS, export_performance, performance_features,  # noqa: E402
                                     write_performance)
from ddx7.export.voice import export_voice  # noqa: E402
from ddx7.run import Run  # noqa: E402

ABLATION = (("held-note voice alone (velocity 100)", dict(voice="held", lane=False, bends=False, velocity=100)),
            ("kept voice alone, AMS 0 (velocity 100)", dict(voice="kept", lane=False, bends=False, velocity=100)),
            ("+ velocities", dict(voice="kept", lane=False, bends=False)),
            ("+ bends", dict(voice="kept", lane=False, bends=True)),
            ("+ lane (= mk1)", dict(voice="mk1", lane=True, bends=True)))
"""The rows of the ablation. ``held``: the voice fitted on synthetic held notes (``export --syx``);
``kept``: the voice the mk1 .mid sends (the phrase-fitted voice on every take measured; with the LFO
if the vibrato went there) with AMS 0 everywhere, its levels as with the lane held fully open;
``mk1``: that voice as sent, with its lane."""


def ensure_run(home: Path, corpus: str, minutes: float | None) -> Run | None:
    try:
        return Run.open(home, f"{corpus}-ddx7").require_finished()
    except Exception:  # noqa: BLE001 - missing or unfinished: train it, or skip
        if minutes is None:
            print(f"{corpus}: no finished run {corpus}-ddx7 in {home} (use --train MINUTES)")
            return None
    from ddx7.fit.run_fit import fit_run

    print(f"{corpus}: training {corpus}-ddx7 for {minutes} min (CREPE tiny) ...", flush=True)
    fit_run(home, corpus, run=f"{corpus}-ddx7", minutes=minutes, settings={"crepe": "tiny"})
    return Run.open(home, f"{corpus}-ddx7")


def ablation(mk1_plan, voice_export, reference: np.ndarray) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        mid = Path(tmp) / "mk1.mid"
        write_performance(mk1_plan, mid)
        from dx7tools.midi import KIND_VOICE, message_kind, read_midi_events
        from dx7tools.sysex import parse_bytes

        mk1_voice = next(parse_bytes(e.data).voices[0].voice for e in read_midi_events(mid)
                         if e.data[0] == 0xF0 and message_kind(e.data) == KIND_VOICE)
        voices = {"held": voice_export.voice, "mk1": mk1_voice,
                  "kept": mk1_voice.replace(**{f"op{k}_amp_mod_sensitivity": 0 for k in range(1, 7)})}
        for label, parts in ABLATION:
            parts = dict(parts)
            voice = voices[parts.pop("voice")]
            variant = Path(tmp) / "variant.mid"
            write_midi_file(variant, e2e.variant_events(mid, voice, **parts))
            audio = e2e.play(voice, variant, "mk1", LEAD_IN_SECONDS, len(reference))
            out[label] = {"spectral_db": round(e2e.multires_distance_db(audio, reference), 3),
                          "loudness_db": round(e2e.loudness_error_db(audio, reference), 3)}
    return out


def streams(run: Run, wav: Path, voice_export, features, plans: dict, plan_seconds: float) -> dict:
    """Bytes/s and notes of each target's stream, and the seconds to make it (mk1 and dexed: both
    planned together, from one choice)."""
    out = {}
    for target, plan in plans.items():
        s = plan.sidecar["stream"]
        out[target] = {"mean_bytes_per_second": s["mean_bytes_per_second"],
                       "max_bytes_in_one_second": s["max_bytes_in_one_second"], "notes": plan.sidecar["notes"],
                       "seconds_to_plan_mk1_and_dexed": round(plan_seconds, 3)}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        info = export_performance(run, wav, Path(tmp) / "cc.mid", voice_export=voice_export, target="cc",
                                  features=features)
        s = info["stream"]
        out["cc"] = {"mean_bytes_per_second": s["mean_bytes_per_second"],
                     "max_bytes_in_one_second": s["max_bytes_in_one_second"], "notes": info["notes"],
                     "seconds_to_export": round(time.perf_counter() - t, 3)}
    return out


def choices(plans: dict) -> dict:
    """What the mk1 export chose for one take: the voice and lane, gap edits, vibrato, live levels."""
    mk1, dexed = plans["mk1"].sidecar, plans["dexed"].sidecar
    return {"kept": mk1["level_fit"]["lane_on"], "gap_edits_sent": mk1["gap_edits"]["sent"],
            "gaps": mk1["gap_edits"]["gaps"], "vibrato_in": mk1["vibrato"]["in"],
            "live_levels_sent": dexed["live_levels"]["sent"]}


def corpus_rows(home: Path, corpus: str, minutes: float | None, excerpts: int) -> dict | None:
    run = ensure_run(home, corpus, minutes)
    if run is None:
        return None
    t = time.perf_counter()
    voice_export = export_voice(run, home)
    fit_seconds = time.perf_counter() - t
    takes = sorted((run.path / "test").glob("*-original.wav"))[:excerpts]
    rows, ablations, stream_rows, picked = [], [], [], []
    for wav in takes:
        reference = read_audio(wav)[0].astype(np.float64)
        features = performance_features(run, wav)
        model = read_audio(wav.with_name(wav.name.replace("-original", "-resynth")))[0]
        t = time.perf_counter()
        plans = plan_mk1_and_dexed(run, voice_export, *features, source=str(wav))
        plan_seconds = time.perf_counter() - t
        r = e2e.compare_take(run, wav, home=home, voice_export=voice_export, model_audio=model, plans=plans)
        rows.append(r["rows"])
        ablations.append(ablation(plans["mk1"], voice_export, reference))
        stream_rows.append(streams(run, wav, voice_export, features, plans, plan_seconds))
        picked.append(choices(plans))
        print(f"  {corpus} {wav.name}: " + ", ".join(f"{k} {v['spectral_db']:.2f}/{v['loudness_db']:.2f}"
                                                   for k, v in r["rows"].items()), flush=True)
    if not rows:
        print(f"{corpus}: no test excerpts in {run.path / 'test'}")
        return None

    def mean(table, key, metric):
        return round(float(np.mean([t[key][metric] for t in table])), 3)

    summary = {k: {m: mean(rows, k, m) for m in ("spectral_db", "loudness_db")} for k in e2e.ROWS}
    abl = {k: {m: mean(ablations, k, m) for m in ("spectral_db", "loudness_db")} for k, _ in ABLATION}
    a, c, d = summary["mk1"], summary["start voice"], summary["model"]
    goals = {"spectral_vs_model": round(a["spectral_db"] / d["spectral_db"], 3),
             "spectral_vs_start_voice": round(a["spectral_db"] / c["spectral_db"], 3),
             "loudness_minus_model_db": round(a["loudness_db"] - d["loudness_db"], 3)}
    goals["met"] = (goals["spectral_vs_model"] <= 1.1 and goals["spectral_vs_start_voice"] <= 0.7
                    and goals["loudness_minus_model_db"] <= 1.5)
    targets = {t: {k: round(float(np.mean([s[t][k] for s in stream_rows])), 3) for k in stream_rows[0][t]}
               for t in stream_rows[0]}
    return {"corpus": corpus, "run": run.name, "excerpts": len(rows), "rows": summary, "ablation": abl,
            "goals": goals, "streams": targets, "voice_fit_seconds": round(fit_seconds, 2), "per_take": rows,
            "choices": picked}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--corpus", nargs="+", default=["violin", "flute", "trumpet"])
    ap.add_argument("--train", type=float, default=None, metavar="MINUTES", help="train missing runs this long")
    ap.add_argument("--excerpts", type=int, default=6)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    results = [r for c in args.corpus if (r := corpus_rows(args.home, c, args.train, args.excerpts))]
    for r in results:
        print(f"\n{r['corpus']} ({r['run']}, {r['excerpts']} test excerpts): spectral dB / loudness dB, mean")
        for k in e2e.ROWS:
            print(f"  {e2e.ROW_LABELS[k]:52s} {r['rows'][k]['spectral_db']:6.2f} {r['rows'][k]['loudness_db']:6.2f}")
        print("  ablation of the mk1 export:")
        for k, _ in ABLATION:
            print(f"    {k:50s} {r['ablation'][k]['spectral_db']:6.2f} {r['ablation'][k]['loudness_db']:6.2f}")
        g = r["goals"]
        print(f"  mk1 / model {g['spectral_vs_model']:.2f} (goal <= 1.1), mk1 / start voice "
              f"{g['spectral_vs_start_voice']:.2f} (<= 0.7), loudness mk1 - model {g['loudness_minus_model_db']:+.2f} dB "
              f"(<= 1.5): {'met' if g['met'] else 'not met'}")
        for c in r["choices"]:
            print(f"  kept: {c['kept']}; {c['gaps']} silent gaps, section levels "
                  f"{'kept' if c['gap_edits_sent'] else 'not kept'}; vibrato in the {c['vibrato_in']}; dexed live levels "
                  f"{'sent' if c['live_levels_sent'] else 'not sent'}")
        for t, s in r["streams"].items():
            seconds = s.get("seconds_to_export", s.get("seconds_to_plan_mk1_and_dexed"))
            what = "export" if "seconds_to_export" in s else "plan (mk1 and dexed together)"
            print(f"  stream {t:5s}: {s['notes']:.0f} notes, mean {s['mean_bytes_per_second']:.0f} B/s, "
                  f"max {s['max_bytes_in_one_second']:.0f} B in 1 s, {what} {seconds:.2f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
