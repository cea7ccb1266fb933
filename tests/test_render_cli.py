"""`render` and `play` through the real console script: what users see, bad input included."""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile

from dx7tools import midi
from dx7tools.sysex import vced_message
from dx7tools.voice import Voice

PATCHES = Path(__file__).parent.parent / "patches" / "dx7tools-starters.syx"


def write_raw_mid(path: Path, events: list[midi.Event]) -> Path:
    """A .mid written with mido directly, so that it may hold what our writer refuses (a bad dump)."""
    mid = mido.MidiFile(ticks_per_beat=1000)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    t = 0.0
    for e in sorted(events, key=lambda e: e.time):
        ticks = round((e.time - t) * 2000)  # 120 bpm: 2000 ticks per second
        t += ticks / 2000
        track.append(mido.Message.from_bytes(list(e.data)).copy(time=ticks))
    mid.save(path)
    return path


def notes(*spec: tuple[float, float, int]) -> list[midi.Event]:
    out = []
    for start, end, key in spec:
        out += [midi.Event(start, bytes([0x90, key, 100])), midi.Event(end, bytes([0x80, key, 0]))]
    return out


def test_render_plays_the_song_and_reports_what_it_did(run_cli, tmp_path):
    bad = bytearray(vced_message(Voice.init()))
    bad[-2] ^= 1  # checksum off by one
    events = notes((0.0, 0.4, 60), (0.5, 0.9, 64)) + [
        midi.Event(0.0, midi.function_parameter_change("pitch_bend_range", 12)),
        midi.Event(0.2, bytes([0xE0, 0, 0x60])), midi.Event(0.3, bytes(bad)), midi.Event(0.6, bytes([0xB0, 7, 90]))]
    song = write_raw_mid(tmp_path / "song.mid", events)
    out = tmp_path / "song.wav"
    r = run_cli("render", PATCHES, song, "-o", out, "--json")
    assert r.returncode == 0, r.stderr
    info = r.json()
    assert info["engine"] == "dx7" and info["receiver"] == "mk1" and info["notes"] == 2
    assert info["skipped_sysex"] == 1 and "bad checksum" in info["warnings"][0]
    assert info["function_changes"] == 1 and info["ignored"] == {"cc7": 1} and not info["capped"]
    audio, sr = soundfile.read(out)
    assert sr == 44100 and len(audio) / sr == pytest.approx(info["seconds"], abs=1e-3)
    assert np.abs(audio[: int(0.4 * sr)]).max() > 0.1
    r = run_cli("render", PATCHES, song, "-o", out)                     # the same, for people
    assert r.returncode == 0 and "SysEx at 0.300 s skipped" in r.stderr and "not acted on: 1 cc7" in r.stderr


def test_render_receivers_differ_on_changes_while_notes_sound(run_cli, tmp_path):
    events = notes((0.0, 1.0, 60)) + [midi.Event(0.5, midi.parameter_change("op1_output_level", 50))]
    song = write_raw_mid(tmp_path / "song.mid", events)
    mk1 = run_cli("render", PATCHES, song, "-o", tmp_path / "a.wav", "--json").json()
    dexed = run_cli("render", PATCHES, song, "-o", tmp_path / "b.wav", "--json", "--receiver", "dexed").json()
    assert mk1["stutter_prone"] == 1 and dexed["stutter_prone"] == 0
    r = run_cli("render", PATCHES, song, "-o", tmp_path / "a.wav")
    assert "a DX7 Mark I applies them at the next note-on" in r.stderr


def test_notes_that_never_end_are_cut_and_said(run_cli, tmp_path):
    song = write_raw_mid(tmp_path / "held.mid", [midi.Event(0.0, bytes([0x90, 60, 100])),
                                                 midi.Event(0.5, bytes([0xB0, 1, 0]))])
    r = run_cli("render", PATCHES, song, "-o", tmp_path / "held.wav", "--tail", "1")
    assert r.returncode == 0 and "still sounded at the end and were cut" in r.stderr
    audio, sr = soundfile.read(tmp_path / "held.wav")
    assert len(audio) / sr == pytest.approx(1.5, abs=0.01)


@pytest.mark.parametrize("make_args, message", [
    (lambda p: [PATCHES, p / "not.mid", "-o", p / "x.wav"], "not a Standard MIDI File"),
    (lambda p: [p / "song.mid", p / "song.mid", "-o", p / "x.wav"], "not SysEx"),
    (lambda p: [PATCHES, p / "song.mid", "-o", p / "x.wav", "--function", "volume=3"], "unknown function parameter"),
    (lambda p: [PATCHES, p / "song.mid", "-o", p / "x.wav", "--function", "pitch_bend_range=24"], "must be 0-12"),
    (lambda p: [PATCHES, p / "song.mid", "-o", p / "x.wav", "--receiver", "mk2"], "unknown receiver"),
    (lambda p: [PATCHES, p / "empty.mid", "-o", p / "x.wav"], "no notes to play"),
])
def test_bad_render_input_is_one_line_and_writes_nothing(run_cli, tmp_path, make_args, message):
    (tmp_path / "not.mid").write_bytes(b"RIFF....WAVE")
    write_raw_mid(tmp_path / "song.mid", notes((0.0, 0.2, 60)))
    write_raw_mid(tmp_path / "empty.mid", [midi.Event(0.0, bytes([0xB0, 1, 3]))])
    r = run_cli("render", *make_args(tmp_path))
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.wav").exists() and not list(tmp_path.glob(".x.wav*"))


def test_render_with_dexed_py_says_what_it_cannot_hear(run_cli, tmp_path, dexed):
    song = write_raw_mid(tmp_path / "song.mid", notes((0.0, 0.3, 60)) + [midi.Event(0.1, bytes([0xE0, 0, 0x50]))])
    r = run_cli("render", PATCHES, song, "-o", tmp_path / "d.wav", "--engine", "dexed")
    assert r.returncode == 0 and "not heard with dexed-py" in r.stderr and "1 pitch bend" in r.stderr


def test_play_auditions_a_voice(run_cli, tmp_path):
    out = tmp_path / "play.wav"
    r = run_cli("play", PATCHES, "--notes", "C4:100:0.3 E4+G4:90:0.3", "--sweep", "breath", "-o", out, "--json",
                "--function", "breath_control_range=99", "--function", "breath_control_assign=4")
    assert r.returncode == 0, r.stderr
    info = r.json()
    assert info["notes"] == 3 and info["function_changes"] == 0 and info["peak"] > 0
    audio, sr = soundfile.read(out)
    assert sr == 44100 and np.abs(audio).max() == pytest.approx(info["peak"], rel=1e-5)
    r = run_cli("play", PATCHES, "--notes", "X9", "-o", out)
    assert r.returncode == 1 and "not a note" in r.stderr
