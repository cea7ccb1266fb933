"""Exporting a trained DDX7 run: the fitted voice (loads in dexed-py, round-trips, closer to the
model than the unfitted voice), the .mid performance (within the wire budget, read back), and the
export / send / render / ports commands through the real console script."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from ddx7 import export
from ddx7 import run as runs
from ddx7.fit import train
from ddx7.data.corpus import add_corpus
from ddx7.rank.choose import resolve_config
from ddx7.synth import FMSynth
from dx7tools import midi, performance as perf
from dx7tools.errors import DX7Error
from dx7tools.library import Library
from dx7tools.sysex import read_file

PATCHES = Path(__file__).parent.parent / "patches" / "dx7tools-starters.syx"


def _phrase(config, midi_notes, seconds_each: float) -> np.ndarray:
    """Notes rendered by our synth with index curves that follow a swell (a learnable corpus)."""
    frames = int(seconds_each * 250)
    env = np.minimum(1, np.minimum(np.arange(frames), frames - np.arange(frames)) / 25.0)
    f0 = np.concatenate([np.full(frames, 440 * 2 ** ((n - 69) / 12)) for n in midi_notes])
    e = np.tile(env, len(midi_notes))
    index = np.stack([e * 1.6, e * 0.6, e * 1.2, e * 0.8, e * 0.3, e * 0.05], -1)
    with torch.no_grad():
        return FMSynth(config)(torch.from_numpy(f0).float()[None], torch.from_numpy(index).float()[None])[0].numpy() * 0.3


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A DDX7 run trained for 3 steps on a 9-second corpus (CREPE tiny): a model, cheaply."""
    home = tmp_path_factory.mktemp("export-home")
    rec = home / "recordings"
    rec.mkdir()
    Library(home).import_files([PATCHES])
    config = resolve_config(home, "DDX7 VIOLN", None)
    silence = np.zeros(4000, np.float32)
    for i, notes in enumerate(([55, 60, 62], [64, 67, 69, 72])):
        soundfile.write(rec / f"take{i}.wav", np.concatenate([_phrase(config, notes, 0.8), silence]), 16000)
    add_corpus(home, "mini", audio_dir=rec)
    cfg = train.FitConfig(corpus="mini", voice="DDX7 VIOLN", steps=3, minutes=None, crepe="tiny", batch_size=1,
                          learning_rate=1e-3,  # 3 steps at the default 5e-3 can saturate a carrier to silence
                          segment_seconds=0.5, valid_every=3, checkpoint_seconds=0)
    run_dir = runs.runs_dir(home) / "mini-violin"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is faster, and immune to a busy machine
    try:
        train.fit(home, run_dir, cfg, config)
    finally:
        torch.set_num_threads(threads)
    return home, run_dir, rec


# one torch thread per test (the suite shares the machine's cores); fixture in conftest.py
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def exported(trained):
    home, run_dir, _ = trained
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return export.export_voice(run_dir, home)
    finally:
        torch.set_num_threads(threads)


def test_exported_voice_loads_in_dexed_and_round_trips(trained, exported, tmp_path, dexed):
    home, run_dir, _ = trained
    voice = exported.voice
    assert voice.name == "MINI-VIOLI" and voice.algorithm == 2 and voice.feedback == 7
    single, bank = tmp_path / "v.syx", tmp_path / "b.syx"
    export.write_voice(single, voice)
    export.write_voice(bank, voice, bank=True)
    assert len(single.read_bytes()) == 163 and single.read_bytes()[3] == 0
    assert len(bank.read_bytes()) == 4104 and bank.read_bytes()[3] == 9
    assert read_file(single).voices[0].voice == voice and read_file(bank).voices[0].voice == voice
    patch = dexed.Patch.load_bank(str(bank))[0]
    assert bytes(patch.to_sysex())[:155] == voice.to_vced()
    audio = dexed.DexedSynth(16000)
    audio.load_patch(patch)
    assert np.abs(audio.render(60, 100, 0.3, 0.5)).max() > 1e-3
    notes = exported.notes
    assert notes[0].note == notes[1].note == notes[2].note and notes[1].velocity < notes[0].velocity < notes[2].velocity
    assert notes[3].note < notes[0].note < notes[4].note


def test_export_is_closer_to_the_model_than_the_unfitted_voice(trained, exported, dexed):
    home, run_dir, _ = trained
    config = resolve_config(home, "DDX7 VIOLN", None)
    baseline, source = export.baseline_voice(home, config)
    assert baseline.name == "DDX7 VIOLN" and "library" in source
    fid = export.fidelity(exported, baseline)
    assert fid["exported"]["spectral_loss"] < 0.9 * fid["baseline"]["spectral_loss"]
    assert fid["exported"]["spectral_db"] < fid["baseline"]["spectral_db"]


def test_performance_export_stays_within_the_wire_and_reads_back(trained, exported, tmp_path):
    home, run_dir, rec = trained
    out = tmp_path / "perf.mid"
    run = runs.Run.at(run_dir)
    f0, loud = export.performance_features(run, rec / "take1.wav")
    plan = export.plan_performance(run, exported, f0, loud, budget=1200.0, cc_lanes=True)
    info = export.write_performance(plan, out)
    s = info["stream"]
    events = midi.read_midi_events(out)
    sizes = [len(e.data) for e in events]
    assert midi.max_bytes_per_window([e.time for e in events], sizes) <= 1200 == s["budget_bytes_per_second"]
    assert s["max_bytes_in_one_second"] <= 1200
    assert info["notes"] >= 3 and json.loads(out.with_suffix(".json").read_text())["voice"] == "MINI-VIOLI"
    # the voice rides along at the start, and the parameter changes read back as the levels planned
    assert midi.message_kind(events[0].data) == midi.KIND_VOICE
    assert len(plan.times) == len(f0) and plan.times[0] == export.LEAD_IN_SECONDS
    traj = perf.level_trajectories(events, len(plan.times), 250.0, export.LEAD_IN_SECONDS)
    level_lanes = [ln for ln in plan.lanes if ln.name.startswith("op")]
    assert level_lanes and {ln.name for ln in level_lanes} == set(s["per_operator"])
    for ln in level_lanes:
        ok = np.isfinite(ln.sent) & np.isfinite(ln.wanted)
        np.testing.assert_array_equal(traj[ln.name][ok], ln.sent[ok])
        err = np.abs(traj[ln.name][ok] - ln.wanted[ok])
        assert np.sqrt(np.mean(err ** 2)) == pytest.approx(s["per_operator"][ln.name]["rms_levels"], abs=2e-3)
    # send the file end to end against the fake port: every byte in order, on time, no hung notes
    plan_events, advice = midi.send_plan(mid_path=out)
    assert "SYS INFO AVAIL" in advice[0]
    clock = midi.VirtualClock()
    port = midi.FakePort(clock=clock)
    report = midi.send_events(port, plan_events, clock=clock)
    sent = [d for _, d in port.sent]
    assert sent[: len(events)] == [e.data for e in midi.sort_events(events)]
    assert sent[len(events):] == [bytes([0xB0, 64, 0]), bytes([0xB0, 123, 0])] and report.notes_released == 0
    on = sum(1 for d in sent if d[0] == 0x90 and d[2] > 0)
    assert on == info["notes"] == sum(1 for d in sent if d[0] == 0x80)
    lag = np.array([t for t, _ in port.sent[: len(events)]]) - np.array([e.time for e in midi.sort_events(events)])
    assert report.max_lag < 0.045 and lag.max() < 0.045  # the budget keeps send on the file's time


def test_mk1_performance_sends_nothing_a_mark_i_ignores_or_stutters_on(trained, exported, tmp_path):
    from ddx7.synth.dx7 import DX7

    home, run_dir, rec = trained
    run = runs.Run.at(run_dir)
    f0, loud = export.performance_features(run, rec / "take1.wav")
    plan = export.plan_performance(run, exported, f0, loud)  # the default target
    info = export.write_performance(plan, tmp_path / "mk1.mid")
    assert info["target"] == "mk1"
    assert all(c.endswith("(silent gaps only)") for c in info["controllers"]["dx7_parameter_changes"])
    assert ("warnings" in info) == (info["gap_edits"]["gaps"] == 0)  # no silent gap: said
    events = midi.read_midi_events(tmp_path / "mk1.mid")
    assert midi.message_kind(events[0].data) == midi.KIND_VOICE
    voice_sysex = [e for e in events[1:] if e.data[0] == 0xF0 and midi.parse_function_change(e.data) is None]
    # one voice dump, then function parameter changes, and output-level edits only in silent gaps
    assert all(midi.parse_parameter_change(e.data)[0].endswith("_output_level") for e in voice_sysex)
    assert len(voice_sysex) == info["gap_edits"]["edits"] * info["gap_edits"]["sent"]
    assert midi.function_parameter_change("pitch_bend_range", 12) in [e.data for e in events]
    # notes are attacks, not fragments: none shorter than 40 ms, fewer than a pitch-split segmentation
    notes = perf.segment_attacks(f0, loud, bend_range=12)
    assert len(notes) == info["notes"] and min(n.end - n.start for n in notes) >= 10
    assert info["notes"] < len(perf.segment_notes(f0, loud))
    engine = DX7(read_file_bytes_voice(events[0].data), sample_rate=16000)
    audio = engine.render(events)
    assert engine.summary["stutter_prone"] == 0 and engine.summary["notes"] == info["notes"]
    assert np.abs(audio).max() > 0.05
    fit = info["level_fit"]
    assert fit["rms_db_with_lane"] <= fit["rms_db_voice_alone"]


def test_dexed_stream_is_the_mk1_stream_plus_live_levels(trained, exported):
    from ddx7.export.mk1 import plan_mk1_and_dexed

    home, run_dir, rec = trained
    run = runs.Run.at(run_dir)
    plans = plan_mk1_and_dexed(run, exported, *export.performance_features(run, rec / "take1.wav"))
    mk1, dexed = plans["mk1"], plans["dexed"]

    def part(plan, status):
        return [(round(e.time, 6), e.data) for e in plan.events if e.data[0] & 0xF0 == status]

    assert mk1.events[0].data == dexed.events[0].data  # the same voice dump
    assert part(mk1, 0x90) == part(dexed, 0x90) and part(mk1, 0x80) == part(dexed, 0x80)  # notes
    assert part(mk1, 0xE0) == part(dexed, 0xE0)  # bends
    live = dexed.sidecar["live_levels"]
    assert live["sent"] == (live["distance_to_model_db"]["with"] < live["distance_to_model_db"]["without"])
    changes = [midi.parse_parameter_change(e.data) for e in dexed.events if midi.parse_parameter_change(e.data)]
    if not live["sent"]:  # the dexed stream is then exactly the mk1 stream
        assert [e.data for e in dexed.events] == [e.data for e in mk1.events]
    else:
        assert changes and dexed.sidecar["gap_edits"]["sent"] is False


def test_breath_lane(trained, exported, tmp_path, monkeypatch):
    home, run_dir, rec = trained
    # A 3-step model's modulators barely leave the levels the exported voice's envelopes give
    # them; fade them out over the take (down to -20 dB) so that the brightness lane has to move.
    from ddx7.fit.models import DDX7

    controls = DDX7.controls

    def fading(self, f0_hz, loudness_db):
        index = controls(self, f0_hz, loudness_db)
        fade = torch.logspace(0, -1, index.shape[1])[None, :, None]
        return torch.where(self.synth.carrier_mask.bool(), index, index * fade)

    monkeypatch.setattr(DDX7, "controls", fading)
    out = tmp_path / "breath.mid"
    info = export.export_performance(run_dir, rec / "take1.wav", out, voice_export=exported, breath=True)
    events = midi.read_midi_events(out)
    voice = read_file_bytes_voice(events[0].data)
    modulators = info["controllers"]["breath_cc2"]["operators"]
    assert modulators and all(voice[f"op{k}_amp_mod_sensitivity"] == 3 for k in modulators)
    changed = {midi.parse_parameter_change(e.data)[0] for e in events if midi.parse_parameter_change(e.data)}
    assert not changed & {f"op{k}_output_level" for k in modulators}
    cc2 = [e.data[2] for e in events if e.data[0] == 0xB0 and e.data[1] == 2]
    assert len(cc2) > 3 and max(cc2) <= 127 and min(cc2) < 100
    assert midi.function_parameter_change("breath_control_assign", 4) in [e.data for e in events]


def test_export_run_loads_the_model_once_and_goes_on_without_dexed(trained, tmp_path, monkeypatch):
    import sys

    from ddx7.fit import models
    from dx7tools.errors import MissingExtra

    home, run_dir, rec = trained
    built = []
    build_model = models.build_model
    monkeypatch.setattr(models, "build_model", lambda *a, **k: built.append(a) or build_model(*a, **k))
    monkeypatch.setitem(sys.modules, "dexed", None)  # `import dexed` fails as when the extra is missing
    song = tmp_path / "one-note.mid"
    perf.write_midi_file(song, [midi.Event(0.0, bytes([0x90, 60, 100])), midi.Event(0.2, bytes([0x80, 60, 0]))])
    with pytest.raises(MissingExtra) as exc:
        export.render_midi(read_file(PATCHES).voices[0].voice, song, engine="dexed")
    assert exc.value.extra == "dexed"
    warned = []
    info = export.export_run(home, run_dir.name, syx=tmp_path / "v.syx", mid=tmp_path / "p.mid",
                             wav=rec / "take0.wav", warn=warned.append)
    assert len(built) == 1  # voice fit, fidelity and performance share one model
    assert info["fidelity"] is None and any(w.startswith("fidelity not measured: dexed-py") for w in warned)
    assert info["run"] == "mini-violin" and info["syx"]["bytes"] == 163 and info["mid"]["notes"] >= 3
    assert not any(k.startswith("_") for k in info["mid"])
    assert (tmp_path / "p.json").exists() and info["mid"]["sidecar"] == str(tmp_path / "p.json")


def test_replay_plays_each_note_with_the_voice_at_its_note_on():
    from dx7tools import Voice
    from dx7tools.sysex import vced_message

    loud, soft = Voice.init(), Voice.init().replace(op1_output_level=40)
    events = [midi.Event(0.0, bytes([0x90, 60, 100])),
              midi.Event(0.1, midi.parameter_change("op1_output_level", 40)),   # while 60 sounds
              midi.Event(0.2, bytes([0x90, 60, 90])),                            # retrigger: ends the first 60
              midi.Event(0.3, bytes([0x90, 60, 0])),                             # velocity 0 = note-off
              midi.Event(0.35, bytes([0xE0, 0, 80])), midi.Event(0.36, bytes([0xB0, 2, 10])),
              midi.Event(0.4, vced_message(loud)),                               # between notes
              midi.Event(0.5, bytes([0x91, 64, 70])),                            # held to the end
              midi.Event(0.6, midi.function_parameter_change("pitch_bend_range", 2)),
              midi.Event(0.7, bytes([0x81, 65, 0]))]                             # off of a key never on
    played = perf.replay(events, Voice.init())
    assert [(n.start, n.end, n.channel, n.note, n.velocity) for n in played.notes] == \
        [(0.0, 0.2, 0, 60, 100), (0.2, 0.3, 0, 60, 90), (0.5, 0.7, 1, 64, 70)]
    assert [n.voice for n in played.notes] == [Voice.init(), soft, loud]
    assert played.ignored == {"pitch_bend": 1, "control_change": 1, "changes_within_notes": 1, "other": 1}
    assert played.changes[0] == (0.1, "op1_output_level", 40) and len(played.changes) == 1 + 155
    traj = perf.level_trajectories(events, 3, 2.5)  # frames at 0, 0.4, 0.8 s
    np.testing.assert_array_equal(traj["op1_output_level"], [np.nan, 99, 99])
    np.testing.assert_array_equal(perf.level_trajectories(events[:2], 2, 5.0)["op1_output_level"], [np.nan, 40])


def read_file_bytes_voice(dump: bytes):
    from dx7tools.sysex import parse_bytes

    return parse_bytes(dump).voices[0].voice


def test_bad_input(trained, tmp_path):
    home, run_dir, rec = trained
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(16000, np.float32), 16000)
    with pytest.raises(DX7Error, match="no voiced frames"):
        export.export_performance(run_dir, silent, tmp_path / "x.mid")
    assert not (tmp_path / "x.mid").exists() and not (tmp_path / "x.json").exists()
    empty_run = tmp_path / "untrained"
    empty_run.mkdir()
    (empty_run / "run.json").write_text((run_dir / "run.json").read_text())
    with pytest.raises(DX7Error, match="no trained model yet"):
        export.export_voice(empty_run, home)
    with pytest.raises(DX7Error, match="representative notes come from its corpus 'mini'"):
        export.export_voice(run_dir, tmp_path / "elsewhere")
    # an HpN run has no DX7 parameters to export
    from ddx7.fit.models import HpN

    hpn_run = tmp_path / "hpn-run"
    hpn_run.mkdir()
    info = json.loads((run_dir / "run.json").read_text())
    (hpn_run / "run.json").write_text(json.dumps({**info, "model": "hpn", "fixed_config": None}))
    train._save(hpn_run / "model.safetensors", {f"model.{k}": v for k, v in HpN().state_dict().items()}, {})
    with pytest.raises(DX7Error, match="only DDX7 runs map onto DX7 parameters"):
        export.export_voice(hpn_run, home)


def test_check_measures_the_export_against_the_recording_and_the_report_shows_it(trained, run_cli, tmp_path):
    from ddx7.evaluate import e2e

    home, run_dir, rec = trained
    r = run_cli("export", str(run_dir), "--mid", tmp_path / "c.mid", "--from", rec / "take0.wav", "--check",
                "--no-fidelity", "--json", use_home=False, env={"DX7TOOLS_HOME": str(home), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    check = r.json()["check"]
    assert set(check["rows"]) == set(e2e.ROWS)
    for row in check["rows"].values():
        assert 0 < row["spectral_db"] < 60 and 0 <= row["loudness_db"] < 60
    saved = json.loads(Path(check["json"]).read_text())
    assert saved["rows"] == check["rows"] and Path(check["json"]).parent == run_dir / "e2e"
    for suffix in ("original", "model", "mk1", "dexed", "start"):
        audio, sr = soundfile.read(run_dir / "e2e" / f"take0-{suffix}.wav")
        assert sr == 16000 and len(audio) > 16000
    # the distances are the recording's: the recording against itself is 0, a silent take is far
    original, _ = soundfile.read(run_dir / "e2e" / "take0-original.wav")
    assert e2e.multires_distance_db(original, original) == 0.0
    assert e2e.multires_distance_db(original * 0 + 1e-4 * np.random.default_rng(0).standard_normal(len(original)),
                                    original) > check["rows"]["mk1"]["spectral_db"]
    html = (tmp_path / "r.html")
    r = run_cli("report", str(run_dir), "-o", html, use_home=False, env={"DX7TOOLS_HOME": str(home)})
    assert r.returncode == 0, r.stderr
    text = html.read_text()
    assert "A DX7 playing the export" in text and text.count("<audio") >= 4 and "mk1 export on a DX7" in text


def test_commands_end_to_end(trained, run_cli, tmp_path, dexed):
    home, run_dir, rec = trained
    syx, mid = tmp_path / "v.syx", tmp_path / "p.mid"
    r = run_cli("export", str(run_dir), "--syx", syx, "--mid", mid, "--from", rec / "take0.wav", "--json",
                use_home=False, env={"DX7TOOLS_HOME": str(home), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    info = r.json()
    assert info["syx"]["bytes"] == 163 and info["fidelity"]["exported"]["spectral_loss"] < \
        info["fidelity"]["baseline"]["spectral_loss"]
    assert info["mid"]["stream"]["max_bytes_in_one_second"] <= 3000
    # send: dry run writes exactly the bytes that would go out
    dry = tmp_path / "dry.syx"
    r = run_cli("send", syx, "--dry-run", dry, "--channel", "3")
    assert r.returncode == 0, r.stderr
    data = dry.read_bytes()
    assert len(data) == 163 and data[2] == 2 and read_file(dry).voices[0].voice == read_file(syx).voices[0].voice
    r = run_cli("send", mid, "--dry-run", dry, "--mode", "voice", "--json")
    assert r.returncode == 0, r.stderr
    assert all(midi.parse_parameter_change(m) is None for m in _sysex_in(dry.read_bytes()))  # voice dumps instead
    # render through dexed-py
    wav = tmp_path / "song.wav"
    r = run_cli("render", syx, mid, "-o", wav, "--sample-rate", "16000", "--json")
    assert r.returncode == 0, r.stderr
    audio, sr = soundfile.read(wav)
    assert sr == 16000 and np.abs(audio).max() > 1e-3 and r.json()["notes"] == info["mid"]["notes"]


def _sysex_in(stream: bytes) -> list[bytes]:
    out, pos = [], stream.find(b"\xF0")
    while pos >= 0:
        end = stream.find(b"\xF7", pos)
        out.append(stream[pos:end + 1])
        pos = stream.find(b"\xF0", end)
    return out


def test_command_errors(trained, tmp_path):
    """Bad input through the typer app in-process (the console script's error line is tested above)."""
    from typer.testing import CliRunner

    from dx7tools_cli.app import app

    home, run_dir, rec = trained
    notmidi = tmp_path / "song.mid"
    notmidi.write_bytes(b"hello")
    cases = [
        (("export", "ghost", "--syx", tmp_path / "a.syx"), "no run named 'ghost'"),
        (("export", str(run_dir)), "nothing to export"),
        (("export", str(run_dir), "--mid", tmp_path / "a.mid"), "--mid needs --from"),
        (("export", str(run_dir), "--syx", tmp_path / "a.syx", "--check"), "--check needs --from"),
        (("export", str(run_dir), "--mid", tmp_path / "a.mid", "--from", rec / "take0.wav", "--target", "mk2"),
         "unknown target 'mk2'"),
        (("export", str(run_dir), "--mid", tmp_path / "a.mid", "--from", rec / "take0.wav", "--target", "mk1",
          "--breath"), "--breath is a variant of --target dexed"),
        (("export", str(run_dir), "--mid", tmp_path / "a.mid", "--from", rec / "take0.wav", "--controller", "volume"),
         "unknown controller 'volume'"),
        (("export", str(run_dir), "--syx", tmp_path / "nope" / "a.syx"), "folder does not exist"),
        (("send", notmidi, "--dry-run", tmp_path / "d.syx"), "not a Standard MIDI File"),
        (("send", "NO SUCH VOICE", "--port", "x"), "no voice"),
        (("send", "DDX7 VIOLN"), "needs --port"),
        (("render", "DDX7 VIOLN", notmidi, "-o", tmp_path / "o.wav"), "not a Standard MIDI File"),
    ]
    runner = CliRunner()
    for args, message in cases:
        r = runner.invoke(app, [*map(str, args), "--home", str(home)])
        assert isinstance(r.exception, DX7Error) and message in str(r.exception), (args, r.exception)
        assert "\n" not in str(r.exception)  # one line
    r = runner.invoke(app, ["send", "DDX7 VIOLN", "--port", "DX7", "--home", str(home)])
    assert str(r.exception).startswith(("no MIDI system available", "no MIDI output port matching 'DX7'"))
    assert not list(tmp_path.glob("*.syx")) and not list(tmp_path.glob("*.wav"))


@pytest.mark.parametrize("engine", ["dx7", "dexed"])
def test_render_applies_changes_from_the_next_note_on(tmp_path, engine, request):
    from dx7tools import Voice
    from dx7tools.sysex import vced_message

    voice = Voice.init()  # OP1 alone, algorithm 1
    events = [midi.Event(0.0, vced_message(voice)),
              midi.Event(0.1, bytes([0x90, 60, 100])), midi.Event(0.4, bytes([0x80, 60, 0])),
              midi.Event(0.45, midi.parameter_change("op1_output_level", 0)),  # silence OP1 ...
              midi.Event(0.6, bytes([0x90, 64, 100])), midi.Event(0.9, bytes([0x80, 64, 0])),
              midi.Event(0.95, midi.parameter_change("op1_output_level", 99)),  # ... and back
              midi.Event(1.0, bytes([0x90, 67, 100])), midi.Event(1.3, bytes([0x80, 67, 0])),
              midi.Event(1.0, bytes([0xE0, 0, 80]))]
    song = tmp_path / "song.mid"
    perf.write_midi_file(song, events)
    if engine == "dexed":
        request.getfixturevalue("dexed")  # skips (visibly) without dexed-py
    audio, info = export.render_midi(Voice.init().replace(op1_output_level=50), song, sample_rate=16000, engine=engine)
    assert info["notes"] == 3
    if engine == "dexed":
        assert info["ignored"]["pitch_bend"] == 1  # one held note at a time: the bend is not heard
    else:
        assert info["stutter_prone"] == 0 and info["voice_changes"] == 3  # changes while nothing sounded
    rms = [float(np.sqrt(np.mean(audio[int(a * 16000): int(b * 16000)] ** 2))) for a, b in
           ((0.15, 0.4), (0.65, 0.9), (1.05, 1.3))]
    assert rms[0] > 0.3 and rms[1] < 1e-4 and rms[2] > 0.3  # the dump in the file replaced the voice given
