"""Exporters and MIDI: fidelity of the exported voice, the parameter-change stream, export time,
and the pacing of `send` against the fake port.

Needs a trained DDX7 run: ``--run NAME`` in ``--home`` (default: ``.cache/bench-export-home``,
run ``violin-4min``); if it is missing, the violin corpus is built and DDX7 trained for
``--minutes`` (CREPE tiny) first. The performance input is the corpus's test split (30 s of
phrases the model never trained on), joined into one file.

1. Fidelity: the exported voice and the nearest unfitted library voice with the same
   configuration (DDX7 VIOLN), both rendered by dexed-py, against the model's own dry
   resynthesis of the representative held notes (multi-resolution spectral loss, mean dB).
2. Stream: the performance export at several wire budgets: bytes/s (mean, busiest second),
   output-level error that thinning costs (RMS / max, levels and dB) against quantisation alone,
   and the size of the unthinned stream (every operator, every frame) for comparison.
3. Time to export: ``export_voice`` and ``export_performance`` (features included) against
   ``resynth`` of the same input in the same run.
4. Pacing: a 32-voice bank, a single voice, 300 parameter changes and 8 s of the performance
   sent in real time to :class:`dx7tools.midi.FakePort`: send-time error against the schedule
   and the smallest gap between messages against what the wire needs.

    python benchmarks/bench_export.py [--home DIR] [--run NAME] [--minutes 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ddx7 import export  # noqa: E402
from ddx7 import run as runs  # noqa: E402
from ddx7.fit import train  # noqa: E402
from ddx7.resynth import resynthesize_file  # noqa: E402
from dx7tools import midi  # noqa: E402
from dx7tools.audio import FRAME_RATE, write_wav  # noqa: E402
from dx7tools.sysex import vced_message, vmem_message  # noqa: E402
from timing import best_of  # noqa: E402


def ensure_run(home: Path, run: str, minutes: float) -> Path:
    run_dir = runs.runs_dir(home) / run
    if (run_dir / "model.safetensors").exists():
        return run_dir
    from ddx7.data.corpus import build_corpus
    from ddx7.rank.choose import paper_config
    from dx7tools.library import Library

    Library(home).import_files([ROOT / "patches" / "dx7tools-starters.syx"])
    build_corpus(home, "violin", minutes=5.0, overwrite=True)
    cfg = train.FitConfig(corpus="violin", minutes=minutes, crepe="tiny", threads=1)
    print(f"training {run} for {minutes} min ...", flush=True)
    train.fit(home, run_dir, cfg, paper_config("violin"))
    return run_dir


def test_input(home: Path, run_dir: Path, folder: Path) -> Path:
    from ddx7.data.corpus import Corpus

    corpus = Corpus.open(home, runs.Run.at(run_dir).corpus)
    audio = np.concatenate([corpus.load(s) for s in corpus.segments() if s["split"] == "test"])
    path = folder / "test-split.wav"
    write_wav(path, audio, train.SAMPLE_RATE)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", type=Path, default=ROOT / ".cache" / "bench-export-home")
    ap.add_argument("--run", default="violin-4min")
    ap.add_argument("--minutes", type=float, default=4.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = runs.Run.at(ensure_run(args.home, args.run, args.minutes))
    run_dir, info = run.path, run.record
    print(f"run {args.run}: {info.get('steps')} steps, best validation loss {info.get('best_valid_loss', 0):.3f}; "
          f"{run.fixed_config.describe()}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = test_input(args.home, run_dir, tmp)
        seconds = len(__import__("soundfile").read(src)[0]) / train.SAMPLE_RATE

        # 3: time to export vs resynth of the same input (best of a few: the machine is shared).
        result = {}
        # The model is loaded once (Run.model), before the timing, as one export command loads it.
        run.model()
        t_voice = best_of(3, lambda: result.update(ex=export.export_voice(run, args.home)))
        ex = result["ex"]
        t_perf = best_of(2, lambda: result.update(perf=export.export_performance(run, src, tmp / "perf.mid",
                                                                                  voice_export=ex)))
        perf = result["perf"]
        t_resynth = best_of(2, lambda: resynthesize_file(run_dir, src, tmp / "resynth.wav"))

        # 1: fidelity.
        baseline, source = export.baseline_voice(args.home, run.fixed_config)
        fid = export.fidelity(ex, baseline)
        print("\n1. Fidelity to the model's held notes (dexed-py renders; lower is closer)")
        print("   representative notes: " + ", ".join(f"{n.note}/v{n.velocity}" for n in ex.notes))
        print("   fit RMS error per operator (dB): " + ", ".join(
            f"OP{k + 1} {f.rms_db:.2f}" + (" (silent)" if f.silent else "") for k, f in enumerate(ex.fits)))
        print(f"   {'voice':<40} {'spectral loss':>14} {'mean dB':>9}")
        for tag, name in (("exported", ex.voice.name), ("baseline", f"unfitted {source}")):
            print(f"   {name:<40} {fid[tag]['spectral_loss']:>14.3f} {fid[tag]['spectral_db']:>9.2f}")
        print(f"   unfitted / exported: {fid['baseline']['spectral_loss'] / fid['exported']['spectral_loss']:.2f}x "
              f"(spectral loss), {fid['baseline']['spectral_db'] / fid['exported']['spectral_db']:.2f}x (dB)")
        for row in fid["per_note"]:
            print(f"     note {row['note']} v{row['velocity']}: exported {row['exported']['spectral_loss']:.2f} / "
                  f"{row['exported']['spectral_db']:.2f} dB, unfitted {row['baseline']['spectral_loss']:.2f} / "
                  f"{row['baseline']['spectral_db']:.2f} dB")

        # 2: stream at several budgets.
        print(f"\n2. Parameter-change stream for {seconds:.1f} s of the test split "
              f"({perf['notes']} notes)")
        active_ops = len(perf["controllers"]["dx7_parameter_changes"])
        unthinned = active_ops * 7 * FRAME_RATE  # one 7-byte parameter change per operator per frame
        print(f"   unthinned (every frame, {active_ops} operators): {unthinned:,.0f} bytes/s, "
              f"{unthinned / midi.WIRE_BYTES_PER_SECOND:.1f}x the wire")
        print(f"   {'budget B/s':>10} {'mean B/s':>9} {'max 1 s':>8} {'changes':>8} {'RMS lv':>7} {'RMS dB':>7} "
              f"{'p99 lv':>7} {'max lv':>7} {'quant RMS lv':>13} {'send lag s':>10}")
        feats = export.performance_features(run, src)
        for budget in (3000.0, 1500.0, 750.0, 375.0):
            p = export.export_performance(run, src, tmp / f"perf{int(budget)}.mid", voice_export=ex,
                                          budget=budget, features=feats)
            s = p["stream"]
            lag = midi.schedule(midi.sort_events(midi.read_midi_events(tmp / f"perf{int(budget)}.mid"))).max_lag
            print(f"   {budget:>10.0f} {s['mean_bytes_per_second']:>9.0f} {s['max_bytes_in_one_second']:>8} "
                  f"{s['parameter_changes']:>8} {s['level_rms_levels']:>7.3f} {s['level_rms_db']:>7.3f} "
                  f"{s['level_p99_levels']:>7.2f} {s['level_max_levels']:>7.2f} {s['quantisation_rms_levels']:>13.3f} "
                  f"{lag:>10.3f}")

        print(f"\n3. Time to export ({seconds:.1f} s input, one thread, best of 3 / 2 / 2)")
        print(f"   export --syx (fit the voice):           {t_voice:6.2f} s")
        print(f"   export --mid (features, notes, thinning): {t_perf:6.2f} s = {seconds / t_perf:.1f}x real time")
        print(f"   resynth of the same input (peer):         {t_resynth:6.2f} s; export --mid / resynth = "
              f"{t_perf / t_resynth:.2f}")

        # 4: pacing against the fake port, real clock.
        port = midi.FakePort()
        events = [midi.Event(0.0, vmem_message([ex.voice] * 32)), midi.Event(0.0, vced_message(ex.voice))]
        events += [midi.Event(0.0, midi.parameter_change("op1_output_level", i % 100)) for i in range(300)]
        perf_events = [e for e in midi.read_midi_events(tmp / "perf.mid") if e.time < 8.0]
        offset = midi.schedule(events).times[-1] + 0.5
        events += [midi.Event(e.time + offset, e.data) for e in perf_events]
        plan = midi.schedule(midi.sort_events(events))
        t0 = time.perf_counter()
        report = midi.send_events(port, events)
        wall = time.perf_counter() - t0
        sent = np.array([t for t, _ in port.sent[: len(events)]])
        sent = sent - report.started  # the plan's time 0
        busy = np.array([midi.Pacing().busy_seconds(e.data) for e in plan.events])
        # the sender's own target for each message: its planned time, or the end of the previous
        # message on the wire if that one left late
        target = np.maximum(plan.times, np.r_[0.0, sent[:-1] + busy[:-1]])
        timer = sent - target
        slack = np.diff(sent) - busy[:-1]
        print(f"\n4. Pacing of send against the fake port ({len(events)} messages, {report.bytes} bytes, "
              f"planned {plan.times[-1]:.2f} s, took {wall:.2f} s)")
        print(f"   send time minus target: median {np.median(timer) * 1e3:.3f} ms, 99th percentile "
              f"{np.percentile(timer, 99) * 1e3:.3f} ms, worst {timer.max() * 1e3:.3f} ms")
        print(f"   send time minus plan (drift through back-to-back stretches): median "
              f"{np.median(sent - plan.times) * 1e3:.2f} ms, worst {(sent - plan.times).max() * 1e3:.2f} ms, "
              f"at the end {(sent[-1] - plan.times[-1]) * 1e3:.2f} ms")
        print(f"   gap after each message minus what the wire and pause need: smallest {slack.min() * 1e3:.3f} ms")
        print(f"   wall time / planned time: {wall / plan.times[-1]:.4f}")


if __name__ == "__main__":
    main()
