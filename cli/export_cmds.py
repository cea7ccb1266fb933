"""Export and MIDI commands: export a run's voice and performance, list ports, send to a DX7, render a .mid."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from dx7tools import DX7Error
from dx7tools.midi import WIRE_BYTES_PER_SECOND

from .common import HomeOption, JsonOption, err, out, print_json, print_rows, progress_bar, warn


def _voice_or_file(ref: str, home) -> tuple:
    """``(voice, syx_path, mid_path)`` for a send/render argument: a .mid, a SysEx file, or a library voice."""
    path = Path(ref)
    if path.suffix.lower() in (".mid", ".midi", ".smf"):
        if not path.exists():
            raise DX7Error("no such file", str(path))
        return None, None, path
    if path.exists() and path.is_file():
        return None, path, None
    from dx7tools.library import Library

    return Library(home).get(ref).voice, None, None


@contextmanager
def _stage(label: str):
    """A progress bar for one stage of an export, full when the stage ends."""
    with progress_bar(label) as bar:
        task = bar.add_task(label, total=1)
        yield
        bar.update(task, completed=1)


def _print_syx(info: dict, syx: Path) -> None:
    """The SysEx file written and, when measured, its distance to the model beside the unfitted voice's."""
    out.print(f"wrote {info['syx']['format']} -> {syx}", highlight=False)
    fid = info.get("fidelity")
    if fid:
        out.print(f"distance to the model's notes (multi-resolution spectral loss / mean dB): exported "
                  f"{fid['exported']['spectral_loss']:.2f} / {fid['exported']['spectral_db']:.2f} dB, "
                  f"unfitted {fid['baseline_voice']} {fid['baseline']['spectral_loss']:.2f} / "
                  f"{fid['baseline']['spectral_db']:.2f} dB", highlight=False)


def _print_mid(info: dict, mid: Path) -> None:
    """The .mid written: for a Mark I its notes, bends and controller lane, else its parameter-change stream."""
    if info["mid"].get("target") == "mk1":
        s, lane = info["mid"]["stream"], info["mid"]["controllers"]["lane"]
        fitted = info["mid"]["level_fit"]
        out.print(f"wrote {info['mid']['notes']} notes for a DX7 Mark I -> {mid} (sidecar {info['mid']['sidecar']}): "
                  f"bends, " + (f"a {lane['controller']} lane on EG bias (operator levels RMS "
                                f"{fitted['rms_db_voice_alone']:.1f} dB from the model with the voice alone, "
                                f"{fitted['rms_db_with_lane']:.1f} dB with the lane)" if lane else "no controller lane")
                  + f"; at most {s['max_bytes_in_one_second']} bytes in one second", highlight=False)
    else:
        s = info["mid"]["stream"]
        out.print(f"wrote {info['mid']['notes']} notes, {s['parameter_changes']} parameter changes -> {mid} "
                  f"(sidecar {info['mid']['sidecar']}); at most {s['max_bytes_in_one_second']} bytes in one second "
                  f"(budget {s['budget_bytes_per_second']:.0f}), level error RMS {s['level_rms_levels']:.2f} levels "
                  f"({s['level_rms_db']:.2f} dB)", highlight=False)


def _print_check(info: dict) -> None:
    """The --check table: each row's distances to the recording, and where they are kept."""
    from ddx7.evaluate.e2e import ROW_LABELS

    rows = info["check"]["rows"]
    print_rows([{"row": ROW_LABELS[k], **v} for k, v in rows.items()], ["row", "spectral dB", "loudness dB"],
               lambda r: [r["row"], f"{r['spectral_db']:.2f}", f"{r['loudness_db']:.2f}"], False)
    out.print(f"distances to the recording (lower is better; multi-resolution log spectra and A-weighted loudness "
              f"envelope); kept in {info['check']['json']}", highlight=False)


def _print_export(info: dict, syx: Optional[Path], mid: Optional[Path], check: bool) -> None:
    """What an export wrote, in words: the fit, then the SysEx, the .mid and the check where asked for."""
    out.print(f"voice {info['voice']!r} fitted in {info['fit_seconds']:.1f} s (per-operator RMS error, dB: "
              + ", ".join(f"OP{o['op']} {o['rms_db']:.1f}" for o in info["operators"] if not o["silent"]) + ")",
              highlight=False)
    if syx is not None:
        _print_syx(info, syx)
    if mid is not None:
        _print_mid(info, mid)
    if check:
        _print_check(info)


def export(
    run: Annotated[str, typer.Argument(help="Run name (see `dx7tools runs`) or run folder.")],
    syx: Annotated[Optional[Path], typer.Option("--syx", help="Write the fitted voice as SysEx here.")] = None,
    bank: Annotated[bool, typer.Option("--bank", help="With --syx: a 32-voice cartridge (voice in slot 1, "
                                       "INIT VOICE after) instead of a 163-byte single voice.")] = False,
    mid: Annotated[Optional[Path], typer.Option("--mid", help="Write a Standard MIDI File performance here.")] = None,
    from_: Annotated[Optional[Path], typer.Option("--from", help="With --mid: the recording to perform.")] = None,
    channel: Annotated[int, typer.Option("--channel", min=1, max=16, help="MIDI channel of the .mid.")] = 1,
    target: Annotated[Optional[str], typer.Option("--target", help="With --mid: mk1 (default: what a DX7 Mark I "
                                                  "follows: notes, bends, one controller lane, no parameter "
                                                  "changes while notes sound), dexed (live output-level automation, "
                                                  "Dexed only) or cc (dexed plus per-operator CC 102-107 lanes).")] = None,
    controller: Annotated[str, typer.Option("--controller", help="With --target mk1: the lane's controller: breath "
                                            "(CC 2), foot (CC 4), mod_wheel (CC 1) or aftertouch.")] = "breath",
    breath: Annotated[bool, typer.Option("--breath", help="With --target dexed (implied): modulators follow a breath "
                                         "(CC 2) brightness lane via EG bias instead of parameter changes.")] = False,
    cc_lanes: Annotated[bool, typer.Option("--cc-lanes", help="Same as --target cc.")] = False,
    budget: Annotated[float, typer.Option("--budget", min=100, max=int(WIRE_BYTES_PER_SECOND),
                                          help="Most bytes in any one second of the .mid stream (the wire "
                                          "carries 3,125); wire time, pauses included, is held to the same "
                                          "share.")] = 3000.0,
    check: Annotated[bool, typer.Option("--check", help="With --from: play the export on the DX7 engine and measure "
                                        "how close it comes to the recording, beside the model and the starting "
                                        "voice (kept in the run folder for `report`).")] = False,
    fidelity: Annotated[bool, typer.Option("--fidelity/--no-fidelity", help="With --syx: render with dexed-py and "
                                           "measure the distance to the model (needs the dexed extra).")] = True,
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Fit a DX7 voice to a trained DDX7 run; write it as SysEx and/or a MIDI performance
    (Python: ddx7.export.export_run; its parts export_voice, write_voice, fidelity, export_performance)."""
    from ddx7.export import export_run

    info = export_run(home, run, syx=syx, bank=bank, mid=mid, wav=from_, channel=channel, budget=budget,
                      breath=breath, cc_lanes=cc_lanes, fidelity=fidelity, target=target, controller=controller,
                      check=check, stage=_stage,
                      warn=lambda line: warn([line]))
    if json_:
        print_json(info)
        return
    _print_export(info, syx, mid, check)


def ports(json_: JsonOption = False) -> None:
    """MIDI output ports (Python: dx7tools.midi.output_port_names)."""
    from dx7tools.midi import output_port_names

    names = output_port_names()
    if json_:
        print_json(names)
    elif not names:
        out.print("no MIDI output ports")
    else:
        for n in names:
            out.print(n, highlight=False)


def send(
    target: Annotated[str, typer.Argument(metavar="VOICE|FILE.syx|FILE.mid",
                                          help="A library voice, a SysEx file (voice or cartridge) or a MIDI file.")],
    port: Annotated[Optional[str], typer.Option("--port", help="Output port: its name or a unique part of it.")] = None,
    channel: Annotated[int, typer.Option("--channel", min=1, max=16, help="MIDI channel / SysEx device number.")] = 1,
    dry_run: Annotated[Optional[Path], typer.Option("--dry-run", help="Write the bytes that would be sent to this "
                                                    "file instead of sending.")] = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="voice: whole-voice dumps (default for voices; for "
                                                "a .mid, its parameter changes become dumps between notes); params: "
                                                "parameter changes (default for a .mid).")] = None,
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Send a voice, a cartridge, parameter changes or a .mid to a MIDI port, paced for a real DX7
    (Python: dx7tools.midi.send_plan, send_events)."""
    from dx7tools import midi
    from dx7tools.files import atomic_write_bytes

    if port is None and dry_run is None:
        raise DX7Error("send needs --port NAME (see `dx7tools ports`) or --dry-run OUT.syx")
    voice, syx, mid = _voice_or_file(target, home)
    events, advice = midi.send_plan(voice=voice, syx_path=syx, mid_path=mid, channel=channel, mode=mode)
    plan = midi.schedule(midi.sort_events(events))
    if dry_run is not None:
        data = midi.events_bytes(events)
        atomic_write_bytes(dry_run, data)
        info = {"dry_run": str(dry_run), "messages": len(events), "bytes": len(data),
                "wire_seconds": round(float(plan.times[-1]) if len(plan.times) else 0.0, 3), "advice": advice}
        print_json(info) if json_ else out.print(f"wrote {len(data)} bytes ({len(events)} messages) -> {dry_run}",
                                                 highlight=False)
        return
    out_port = midi.open_output(port)
    for line in advice:
        err.print(f"[cyan]note:[/] {line}", markup=True, highlight=False)
    if plan.max_lag > 0.05 and mid is not None:
        warn([f"the file's stream is denser than the MIDI wire: messages will fall up to {plan.max_lag:.2f} s "
              "behind (thin it, e.g. re-export with a lower --budget)"])
    try:
        with progress_bar(f"sending to {out_port.name}") as bar:
            task = bar.add_task("send", total=len(events))
            report = midi.send_events(out_port, events,
                                      progress=lambda done, total: bar.update(task, completed=done))
    finally:
        out_port.close()
    info = {**report.to_dict(), "advice": advice}
    if json_:
        print_json(info)
    else:
        out.print(f"sent {report.messages} messages ({report.bytes} bytes) to {report.port} in "
                  f"{report.seconds:.2f} s", highlight=False)


EngineOption = Annotated[str, typer.Option("--engine", help="dx7 (the project's DX7 engine) or dexed (dexed-py, "
                                           "one held note at a time; needs the dexed extra).")]
ReceiverOption = Annotated[str, typer.Option("--receiver", help="mk1: voice changes are heard from the next note-on, "
                                             "as on a DX7 Mark I; dexed: they act at once, as in Dexed.")]
FunctionOption = Annotated[Optional[List[str]], typer.Option(
    "--function", metavar="KEY=VALUE", help="A DX7 function parameter, e.g. pitch_bend_range=12 or "
    "breath_control_assign=4 (repeatable; keys: docs/engine.md).")]
RateOption = Annotated[int, typer.Option("--sample-rate", min=8000, max=192000, help="Hz.")]


def _voice_and_bank(voice_ref: str, home) -> tuple:
    """The voice (and, for a 32-voice file, the bank for program changes) of a render/play argument."""
    from dx7tools.sysex import read_file

    path = Path(voice_ref)
    if path.is_file():
        voices = [v.voice for v in read_file(path).voices]
        if not voices:
            raise DX7Error("no DX7 voice in this file", str(path))
        return voices[0], voices if len(voices) > 1 else None
    voice = _voice_or_file(voice_ref, home)[0]
    if voice is None:
        raise DX7Error("the first argument must be a voice or a SysEx file", voice_ref)
    return voice, None


def _render_report(info: dict, output: Path, json_: bool) -> None:
    if json_:
        print_json(info)
        return
    lines = list(info.get("warnings", []))
    ignored = {k: v for k, v in info.get("ignored", {}).items() if v}
    if info["engine"] == "dexed" and ignored:
        lines.append("not heard with dexed-py (one held note at a time): "
                     + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in ignored.items()))
    elif ignored:
        lines.append("not acted on: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in ignored.items()))
    if info.get("stutter_prone"):
        lines.append(f"{info['stutter_prone']} voice change(s) arrived while notes sounded: a DX7 Mark I applies them "
                     "at the next note-on and may stutter (--receiver dexed plays them live, as Dexed does)")
    if info.get("capped"):
        lines.append(f"{info['held_at_end']} note(s) still sounded at the end and were cut (--tail)")
    warn(lines)
    extra = f", {info['receiver']} receiver" if info["engine"] == "dx7" else ""
    out.print(f"wrote {info['seconds']:.1f} s, {info['notes']} notes ({info['engine']} engine{extra}, "
              f"{info['sample_rate']} Hz) -> {output}", highlight=False)


def render(
    voice_ref: Annotated[str, typer.Argument(metavar="VOICE|FILE.syx", help="A library voice or a SysEx file "
                                             "(its first voice; a 32-voice file is also the bank that program "
                                             "changes pick from).")],
    song: Annotated[Path, typer.Argument(metavar="SONG.mid", help="The MIDI file to play.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="WAV to write (32-bit float).")],
    engine: EngineOption = "dx7",
    receiver: ReceiverOption = "mk1",
    sample_rate: RateOption = 44100,
    function: FunctionOption = None,
    tail: Annotated[Optional[float], typer.Option("--tail", min=0.0, help="Seconds rendered after the last "
                                                  "message at most (default 10; dexed: 4 after each note).")] = None,
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Play a MIDI file with a voice as a DX7 would, to hear an export without one
    (Python: ddx7.export.render_midi_to_wav)."""
    from ddx7.export.render import ENGINES, render_midi_to_wav
    from dx7tools.function import parse_assignments
    from dx7tools.instrument import RECEIVERS

    if engine not in ENGINES:
        raise DX7Error(f"unknown engine {engine!r}; choose {', '.join(ENGINES)}")
    if receiver not in RECEIVERS:
        raise DX7Error(f"unknown receiver {receiver!r}; choose {', '.join(RECEIVERS)}")
    functions = parse_assignments(function or [])
    voice, bank = _voice_and_bank(voice_ref, home)
    if not song.is_file():
        raise DX7Error("no such file", str(song))
    options = {"engine": engine, "sample_rate": sample_rate, "max_tail": tail}
    if engine == "dx7":
        options.update(receiver=receiver, functions=functions, bank=bank)
    elif functions or receiver != "mk1":
        warn(["--function and --receiver apply to the dx7 engine only; dexed-py ignores them"])
    with progress_bar(f"rendering with {engine}") as bar:
        task = bar.add_task("render", total=1)
        info = render_midi_to_wav(voice, song, output, **options,
                                  progress=lambda done, total: bar.update(task, completed=done, total=total))
    _render_report({**info, "output": str(output), "voice": voice.name}, output, json_)


def play(
    voice_ref: Annotated[str, typer.Argument(metavar="VOICE|FILE.syx", help="A library voice or a SysEx file.")],
    notes: Annotated[str, typer.Option("--notes", help="Steps played one after another: NOTE[:VELOCITY[:SECONDS]], "
                                       "notes as numbers or names (C4 = 60), + for chords, e.g. "
                                       "\"60:100:1 C5+E5+G5:90:2\".")],
    output: Annotated[Path, typer.Option("--output", "-o", help="WAV to write (32-bit float).")],
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="Sweep a controller from low to high across the "
                                                 "phrase: mod_wheel, breath, foot, aftertouch or bend.")] = None,
    receiver: ReceiverOption = "mk1",
    sample_rate: RateOption = 44100,
    function: FunctionOption = None,
    json_: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Audition a voice with a few notes (and a controller sweep) through the DX7 engine
    (Python: dx7tools.phrase.phrase_events + ddx7.synth.dx7.DX7)."""
    from dx7tools.audio import write_wav
    from dx7tools.function import parse_assignments
    from dx7tools.phrase import phrase_events

    from ddx7.synth.dx7 import DX7

    functions = parse_assignments(function or [])
    events = phrase_events(notes, sweep)
    voice, bank = _voice_and_bank(voice_ref, home)
    engine = DX7(voice, sample_rate=sample_rate, receiver=receiver, functions=functions, bank=bank)
    audio = engine.render(events)
    write_wav(output, audio, sample_rate)
    info = {"engine": "dx7", **engine.summary, "peak": round(float(abs(audio).max(initial=0.0)), 6),
            "output": str(output), "voice": voice.name}
    _render_report(info, output, json_)


def register(app: typer.Typer) -> None:
    """Add export, ports, send, render and play to ``app``."""
    app.command("export")(export)
    app.command("ports")(ports)
    app.command("send")(send)
    app.command("render")(render)
    app.command("play")(play)
