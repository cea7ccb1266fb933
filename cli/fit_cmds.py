"""Training commands: fit a run on a corpus, resynthesise recordings with it, list the runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from .common import (F0Option, HomeOption, JsonOption, err, out, print_json, print_rows, progress_bar,
                     stage_progress, warn)


_STAGE_LABELS = {"corpus": "building the corpus", "configuration": "choosing the configuration",
                 "features": "features", "training": "training"}


def fit(
    corpus: Annotated[str, typer.Option("--corpus", help="Corpus name (see `dx7tools corpus list`).")],
    voice: Annotated[Optional[str], typer.Option("--voice", help="Library voice id or name whose fixed configuration "
                                                 "DDX7 uses; auto: the selector's top voice (see `dx7tools rank`); "
                                                 "default: the paper's for violin/flute/trumpet, the selector's "
                                                 "pick for any other corpus.")] = None,
    model: Annotated[str, typer.Option("--model", help="ddx7 or hpn (the DDSP baseline).")] = "ddx7",
    minutes: Annotated[Optional[float], typer.Option("--minutes", help="Training time budget.")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Train this many steps instead of --minutes.")] = None,
    run: Annotated[Optional[str], typer.Option("--run", help="Run name (default: CORPUS-MODEL[-N]).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run named by --run after a stop.")] = False,
    f0: F0Option = None,
    crepe: Annotated[Optional[str], typer.Option("--crepe", help="CREPE model for f0: full or tiny (same as "
                                                 "--f0 crepe-full/crepe-tiny; alone with --crepe-hop, full).")] = None,
    crepe_hop: Annotated[Optional[int], typer.Option("--crepe-hop", help="Run CREPE every N samples and "
                                                     "interpolate to 250 frames/s (faster; default 64).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    segment_seconds: Annotated[float, typer.Option("--segment-seconds")] = 1.0,
    learning_rate: Annotated[float, typer.Option("--learning-rate")] = 5e-3,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    threads: Annotated[Optional[int], typer.Option("--threads", help="torch threads (default: all cores).")] = None,
    valid_every: Annotated[int, typer.Option("--valid-every", min=1, help="Validate every N steps.")] = 50,
    checkpoint_seconds: Annotated[float, typer.Option("--checkpoint-seconds", min=0.0,
                                                      help="Write a checkpoint at most this often.")] = 20.0,
    test_audio: Annotated[bool, typer.Option("--test-audio/--no-test-audio", help="Resynthesise the test split "
                                             "at the end.")] = True,
    feedback_cap: Annotated[bool, typer.Option("--feedback-cap/--no-feedback-cap", help="Hold the feedback "
                                               "operator below the chaotic regime (FEEDBACK 7 above output level "
                                               "91), where training gets stuck.")] = True,
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Train DDX7 (or HpN) on a corpus (Python: ddx7.fit.run_fit.fit_run)."""
    from ddx7.data.f0 import resolve_tracker
    from ddx7.fit.run_fit import fit_run

    settings = dict(segment_seconds=segment_seconds, batch_size=batch_size, learning_rate=learning_rate,
                    seed=seed, threads=threads, valid_every=valid_every,
                    checkpoint_seconds=checkpoint_seconds, feedback_cap=feedback_cap,
                    **resolve_tracker(f0, crepe, crepe_hop, crepe_default="full"))
    with stage_progress(_STAGE_LABELS, time_left=True) as progress:
        info = fit_run(home, corpus, voice=voice, model=model, run=run, resume=resume, steps=steps, minutes=minutes,
                       settings=settings, test_audio=test_audio, progress=progress,
                       say=lambda line: err.print(line, highlight=False, markup=False))
    if json_:
        print_json(info)
        return
    out.print(f"run {info['run']}: {info['model']}, {info['parameters']:,} parameters, {info['steps']} steps in "
              f"{info['seconds'] / 60:.1f} min, best validation loss {info['best_valid_loss']:.4f}", highlight=False)
    if info["test_audio"]:
        level = "" if info["test_level_db"] is None else f", {info['test_level_db']:+.1f} dB against the recordings"
        out.print(f"test split resynthesised: {info['test_audio']} ({info['test_excerpts']} excerpts{level})",
                  highlight=False)


def resynth(
    run: Annotated[str, typer.Argument(help="Run name (see `dx7tools runs`) or run folder.")],
    input_: Annotated[Path, typer.Argument(metavar="IN", help="Any audio file soundfile reads.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="WAV to write (16 kHz, 32-bit float).")],
    block_seconds: Annotated[float, typer.Option("--block-seconds", min=0.1, help="Block length.")] = 10.0,
    stream: Annotated[bool, typer.Option("--stream", help="Process as a live input: causal features, blocks "
                                         "of --block samples, timed on one thread (DDX7 runs).")] = False,
    block: Annotated[int, typer.Option("--block", help="--stream block in samples (64, 128 or 256; any "
                                       "multiple of 64).")] = 256,
    crepe_every: Annotated[Optional[int], typer.Option("--crepe-every", min=1, help="--stream: run CREPE on every "
                                                       "Nth frame and hold its answer between (default 4, once per "
                                                       "16 ms; 8 halves its cost for about 0.3 dB further from the "
                                                       "recording, docs/live.md).")] = None,
    op: Annotated[Optional[List[str]], typer.Option("--op", help="Operator level: OP=-6dB (decibels), OP=-6 (DX7 "
                                                    "output-level steps), OP=off, OP=on. Repeatable.")] = None,
    ratio: Annotated[Optional[List[str]], typer.Option("--ratio", help="Operator frequency: OP=COARSE or "
                                                       "OP=COARSE/FINE. Repeatable.")] = None,
    feedback: Annotated[Optional[int], typer.Option("--feedback", help="FEEDBACK 0-7 instead of the voice's.")] = None,
    transpose: Annotated[int, typer.Option("--transpose", help="Semitones (model and synth).")] = 0,
    brightness: Annotated[Optional[str], typer.Option("--brightness", help="Level offset of every modulator: "
                                                      "-3dB or -3 (output-level steps).")] = None,
    controls: Annotated[Optional[Path], typer.Option("--controls", help="Standard MIDI File of controller "
                                                     "changes played over time (CC map: docs/live.md).")] = None,
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Resynthesise any recording with a trained run, in blocks or streaming, with live DX7 controls
    (Python: ddx7.resynth.resynthesize_file, ddx7.stream.stream_file)."""
    from ddx7.live import mapped_ccs, read_controls_mid, settings_controls, timeline_from
    from ddx7.resynth import resynthesize_file
    from ddx7.run import run_path
    from ddx7.stream import check_block, stream_file

    run_dir = run_path(home, run)
    if stream:
        check_block(block)
    fixed = settings_controls(op=op or (), ratio=ratio or (), feedback=feedback, transpose=transpose,
                              brightness=brightness)
    take = read_controls_mid(controls) if controls is not None else None
    live = timeline_from(fixed, take) if (fixed.describe() or take) else None
    if take is not None and take.ignored_cc:
        numbers = ", ".join(map(str, sorted(take.ignored_cc)))
        warn([f"{controls}: {sum(take.ignored_cc.values())} controller change(s) outside the CC map ignored "
              f"(CC {numbers}; mapped: {mapped_ccs()})"])
    with progress_bar("resynthesis") as bar:
        task = bar.add_task("resynth", total=1)
        report = lambda done, total: bar.update(task, completed=done, total=total)  # noqa: E731
        if stream:
            rate = {} if crepe_every is None else {"crepe_every": crepe_every}
            info = stream_file(run_dir, input_, output, block=block, controls=live, progress=report, **rate)
        else:
            info = resynthesize_file(run_dir, input_, output, block_seconds=block_seconds, controls=live,
                                     progress=report)
    info["controls"] = {"settings": fixed.describe(), **({"file": take.report()} if take else {})}
    if json_:
        print_json(info)
    elif stream:
        ms = info["block_ms"]
        out.print(f"wrote {info['seconds']:.1f} s -> {output} (streamed: latency {info['latency_ms']:.0f} ms, block "
                  f"{info['block_budget_ms']:.0f} ms computed in {ms['median']:.2f} ms median, {ms['p99']:.2f} p99, "
                  f"{ms['max']:.2f} max on one thread)", highlight=False)
    else:
        out.print(f"wrote {info['seconds']:.1f} s -> {output}", highlight=False)


def runs(json_: JsonOption = False, home: HomeOption = None) -> None:
    """Training runs in the data home (Python: ddx7.run.list_runs)."""
    from ddx7.run import list_runs

    def cells(r: dict) -> list[str]:
        return [str(r["name"]), str(r["corpus"]), str(r["model"]), str(r["status"]), str(r.get("steps") or ""),
                f"{r['best_valid_loss']:.4f}" if r.get("best_valid_loss") is not None else "",
                f"{r['parameters']:,}" if r.get("parameters") else ""]

    print_rows(list_runs(home), ("name", "corpus", "model", "status", "steps", "best valid", "parameters"),
               cells, json_)


def register(app: typer.Typer) -> None:
    """Add fit, resynth and runs to ``app``."""
    app.command("fit")(fit)
    app.command("resynth")(resynth)
    app.command("runs")(runs)
