"""dx7tools.midi: SysEx validation, parameter changes from the one table, pacing, ports, and
`send` end to end against a fake mido port that records what it was sent and when."""

from __future__ import annotations

import time

import numpy as np
import pytest

from dx7tools import Voice, midi, params
from dx7tools.errors import DX7Error
from dx7tools.sysex import parse_bytes, vced_message, vmem_message

from .conftest import random_voices


def test_dumps_validate_and_bad_ones_are_refused(rng):
    voices = random_voices(rng, 3)
    single, bank = vced_message(voices[0], channel=5), vmem_message(voices)
    assert len(single) == 163 and single[3] == 0 and midi.validate_sysex(single) == midi.KIND_VOICE
    assert len(bank) == 4104 and bank[3] == 9 and midi.validate_sysex(bank) == midi.KIND_BANK
    cases = [
        (single[:3] + b"\x09" + single[4:], "exactly 4104 bytes"),                  # format 09 on a single voice
        (bank[:3] + b"\x00" + bank[4:], "exactly 163 bytes"),                       # format 00 on a bank
        (single[:-3] + single[-2:], "exactly 163 bytes"),                           # a byte short
        (single[:-2] + bytes([(single[-2] + 1) & 0x7F]) + b"\xF7", "bad checksum"),
        (single[:10] + b"\x80" + single[11:], "bit 7 set"),
        (single[:-1], "end with F7"),
        (bytes([0xF0, 0x43, 0x00, 0x05, 0, 0, 0xF7]), "format 5"),
        (bytes([0xF0, 0x43, 0x10, 0x00, 16, 100, 0xF7]), "above 99"),                # op6 output level 100
        (bytes([0xF0, 0x43, 0x10, 0x01, 0x7F, 0, 0xF7]), "no voice parameter 255"),
        (bytes([0xF0, 0x43, 0x10, 0x00, 16, 50, 0, 0xF7]), "exactly 7 bytes"),
    ]
    for data, message in cases:
        with pytest.raises(DX7Error, match=message):
            midi.validate_sysex(data, "x.syx")
    assert midi.validate_sysex(bytes([0xF0, 0x7E, 0x7F, 0x09, 0x01, 0xF7])) == midi.KIND_OTHER  # GM on


def test_parameter_changes_come_from_the_one_table():
    for p in params.PARAMETERS:
        msg = midi.parameter_change(p.key, p.max, channel=3)
        assert msg[:3] == bytes([0xF0, 0x43, 0x12]) and msg[-1] == 0xF7 and len(msg) == 7
        assert ((msg[3] & 3) << 7 | msg[4]) == p.vced and msg[3] >> 2 == 0  # group 0, number split at 7 bits
        assert midi.parse_parameter_change(msg) == (p.key, p.max)
        assert midi.validate_sysex(msg) == midi.KIND_PARAMETER
    assert midi.parameter_change("transpose", 24) == bytes([0xF0, 0x43, 0x10, 0x01, 0x10, 24, 0xF7])  # 144
    assert midi.function_parameter_change("pitch_bend_range", 2) == bytes([0xF0, 0x43, 0x10, 0x08, 65, 2, 0xF7])
    with pytest.raises(DX7Error, match="op1_output_level must be 0-99"):
        midi.parameter_change("op1_output_level", 100)
    v = Voice.init().replace(op3_output_level=77, algorithm=5)
    msgs = midi.voice_as_parameter_changes(v)
    rebuilt = Voice.init()
    for m in msgs:
        key, value = midi.parse_parameter_change(m)
        rebuilt = rebuilt.replace(**{key: value})
    assert len(msgs) == 155 and rebuilt == v


def test_split_sysex_and_channels(rng):
    voices = random_voices(rng, 2)
    data = vced_message(voices[0]) + midi.parameter_change("op1_output_level", 3) + vmem_message(voices)
    msgs = midi.split_sysex(data, "f.syx")
    assert [len(m) for m in msgs] == [163, 7, 4104]
    moved = midi.with_channel(msgs[0], 16)
    assert moved[2] == 0x0F and parse_bytes(moved).voices[0].voice == voices[0]
    with pytest.raises(DX7Error, match=r"f.syx: byte 0x00 outside a SysEx message \(at byte 163\)"):
        midi.split_sysex(msgs[0] + b"\x00" + msgs[1], "f.syx")
    with pytest.raises(DX7Error, match="without its F7"):
        midi.split_sysex(msgs[0][:-1], "f.syx")
    with pytest.raises(DX7Error, match=r"bad checksum .*at byte 161"):
        midi.split_sysex(msgs[0][:-2] + bytes([(msgs[0][-2] + 1) & 0x7F, 0xF7]), "f.syx")


def test_port_matching():
    names = ["Midi Through:Midi Through Port-0 14:0", "UM-ONE:UM-ONE MIDI 1 20:0", "Dexed:in 128:0"]
    assert midi.match_port("um-one", names) == names[1]
    assert midi.match_port("Dexed:in 128:0", names) == names[2]
    with pytest.raises(DX7Error, match="no MIDI output port matching 'DX7'.*available: 'Midi Through"):
        midi.match_port("DX7", names)
    with pytest.raises(DX7Error, match="matches several"):
        midi.match_port("midi", names)


ALSA_FAILURE = "MidiInAlsa::initialize: error creating ALSA sequencer client object."


def test_no_midi_system_is_one_clear_error(monkeypatch):
    """What rtmidi raises on a machine without an ALSA sequencer becomes one DX7Error line;
    anything else the backend raises (a bug, a broken install) is not disguised as that."""
    import mido
    import rtmidi

    def no_sequencer():
        raise rtmidi.SystemError(ALSA_FAILURE)

    monkeypatch.setattr(mido, "get_output_names", no_sequencer)
    with pytest.raises(DX7Error) as caught:
        midi.output_port_names()
    assert str(caught.value) == f"no MIDI system available ({ALSA_FAILURE})"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    with pytest.raises(DX7Error, match=r"^no MIDI system available \(MidiInAlsa"):
        midi.open_output("DX7")

    def broken():
        raise TypeError("get_output_names() got an unexpected keyword argument")

    monkeypatch.setattr(mido, "get_output_names", broken)
    with pytest.raises(TypeError, match="unexpected keyword"):
        midi.output_port_names()


def test_opening_a_port_that_went_away_is_one_clear_error(monkeypatch):
    import mido

    def gone(name):
        raise OSError(f"unknown port {name!r}")  # what mido's rtmidi backend raises

    monkeypatch.setattr(mido, "get_output_names", lambda: ["UM-ONE:UM-ONE MIDI 1 20:0"])
    monkeypatch.setattr(mido, "open_output", gone)
    with pytest.raises(DX7Error, match=r"^cannot open MIDI output 'UM-ONE:UM-ONE MIDI 1 20:0': unknown port"):
        midi.open_output("um-one")


def test_rtmidi_virtual_port_when_the_machine_has_one():
    import mido

    try:
        midi.output_port_names()
    except DX7Error as exc:  # the one condition that may skip: no MIDI system on this machine
        pytest.skip(f"no virtual MIDI ports without a MIDI system: {exc}")
    port = mido.open_output("dx7tools-test", virtual=True)
    try:
        # ALSA lists the virtual port as "<client>:dx7tools-test <client:port>"; CoreMIDI by its name
        with mido.open_input(midi.match_port("dx7tools-test", mido.get_input_names())) as inport:
            report = midi.send_events(port, [midi.Event(0.0, bytes([0x90, 60, 100])),
                                             midi.Event(0.01, bytes([0x80, 60, 0]))])
            got, deadline = [], time.monotonic() + 2.0
            while [0x90, 60, 100] not in got and time.monotonic() < deadline:  # delivery is asynchronous
                got += [m.bytes() for m in inport.iter_pending()]
                time.sleep(0.01)
    finally:
        port.close()
    assert report.messages >= 2 and [0x90, 60, 100] in got


def test_schedule_keeps_to_the_wire_and_pauses_after_dumps(rng):
    voices = random_voices(rng, 2)
    p = midi.Pacing()
    events = [midi.Event(0.0, vmem_message(voices)), midi.Event(0.0, vced_message(voices[0]))] + \
        [midi.Event(0.0, midi.parameter_change("op1_output_level", v)) for v in range(5)]
    plan = midi.schedule(events, p)
    bank_wire = 4104 / 3125
    assert plan.times[1] == pytest.approx(bank_wire + p.bank_pause)
    assert plan.times[2] == pytest.approx(plan.times[1] + 163 / 3125 + p.single_voice_pause)
    gaps = np.diff(plan.times[2:])
    np.testing.assert_allclose(gaps[1:], 7 / 3125 + p.parameter_gap)
    assert plan.max_lag == pytest.approx(plan.times[-1])


def _notes(times_notes):
    out = []
    for t0, t1, n in times_notes:
        out += [midi.Event(t0, bytes([0x90, n, 100])), midi.Event(t1, bytes([0x80, n, 0]))]
    return out


def test_send_to_fake_port_bytes_order_and_all_notes_off(rng):
    clock = midi.VirtualClock()
    port = midi.FakePort(clock=clock)
    voice = random_voices(rng, 1)[0]
    events = [midi.Event(0.0, vced_message(voice))] + _notes([(0.2, 0.5, 60), (0.5, 0.9, 62)]) + \
        [midi.Event(0.5, midi.parameter_change("op2_output_level", 40))]
    report = midi.send_events(port, events, clock=clock)
    sent = [d for _, d in port.sent]
    # note-off before the SysEx and the next note-on at the same time; clean-up at the end
    assert sent[:3] == [vced_message(voice), bytes([0x90, 60, 100]), bytes([0x80, 60, 0])]
    assert sent[3] == bytes([0x90, 62, 100]) and sent[4] == midi.parameter_change("op2_output_level", 40)
    assert sent[-2:] == [bytes([0xB0, 64, 0]), bytes([0xB0, 123, 0])]
    times = [t for t, _ in port.sent]
    assert times[1] == pytest.approx(0.2) and times[2] == pytest.approx(0.5)
    assert report.messages == len(sent) and report.notes_released == 0 and report.max_timing_error == 0


def test_send_paces_in_real_time_against_the_fake_port(rng):
    port = midi.FakePort()
    voice = random_voices(rng, 1)[0]
    events = [midi.Event(0.0, vced_message(voice))] + \
        [midi.Event(0.0, midi.parameter_change("op1_output_level", v)) for v in range(20)]
    report = midi.send_events(port, events)
    t = np.array([x[0] for x in port.sent])[: len(events)]
    plan = midi.schedule(midi.sort_events(events))
    busy = np.array([midi.Pacing().busy_seconds(e.data) for e in plan.events])
    # each message leaves no sooner after the previous one than the wire and the DX7 need ...
    assert np.all(np.diff(t) >= busy[:-1] - 1e-4)  # 0.1 ms: a third of one byte on the wire
    # ... and, on a busy shared machine, at most a few milliseconds late overall
    assert (t[-1] - t[0]) - plan.times[-1] < 0.02
    assert report.max_timing_error < 0.02


def test_ctrl_c_and_vanishing_port_leave_no_hung_notes():
    class InterruptingClock(midi.VirtualClock):
        def sleep_until(self, t):
            if t >= 0.3:
                raise KeyboardInterrupt
            super().sleep_until(t)

    clock = InterruptingClock()
    port = midi.FakePort(clock=clock)
    with pytest.raises(KeyboardInterrupt):
        midi.send_events(port, _notes([(0.0, 1.0, 60), (0.1, 1.0, 64)]), clock=clock)
    sent = [d for _, d in port.sent]
    assert sent[:2] == [bytes([0x90, 60, 100]), bytes([0x90, 64, 100])]
    assert set(sent[2:4]) == {bytes([0x80, 60, 0]), bytes([0x80, 64, 0])} and sent[-1] == bytes([0xB0, 123, 0])

    port = midi.FakePort(clock=midi.VirtualClock(), fail_after=1)
    with pytest.raises(DX7Error, match="MIDI port 'fake DX7' failed after 1 of 4 messages: .*gone away"):
        midi.send_events(port, _notes([(0.0, 1.0, 60), (0.1, 1.0, 64)]), clock=port.clock)


def test_a_bad_message_sends_nothing():
    port = midi.FakePort(clock=midi.VirtualClock())
    bad = bytes([0xF0, 0x43, 0x00, 0x00, 0x01, 0x1B]) + bytes(155) + bytes([0x33, 0xF7])  # bad checksum
    with pytest.raises(DX7Error, match="bad checksum"):
        midi.send_events(port, _notes([(0.0, 0.1, 60)]) + [midi.Event(0.5, bad)], clock=port.clock)
    assert port.sent == []


def test_voice_mode_folds_parameter_changes_into_dumps_between_notes():
    v = Voice.init()
    events = [midi.Event(0.0, vced_message(v))] + _notes([(0.1, 0.5, 60), (0.7, 0.9, 60)]) + [
        midi.Event(0.2, midi.parameter_change("op1_output_level", 50)),
        midi.Event(0.3, midi.parameter_change("op1_output_level", 60))]
    folded = midi.fold_into_voice_dumps(events, None)
    kinds = [(e.time, midi.message_kind(e.data)) for e in folded]
    assert not any(k == midi.KIND_PARAMETER for _, k in kinds)
    dumps = [e for e in folded if midi.message_kind(e.data) == midi.KIND_VOICE]
    assert len(dumps) == 2 and dumps[1].time == pytest.approx(0.5)  # after the note-off, both changes in one
    assert parse_bytes(dumps[1].data).voices[0].voice["op1_output_level"] == 60
    with pytest.raises(DX7Error, match="--mode voice needs a voice"):
        midi.fold_into_voice_dumps(events[1:], None)


def test_send_plan_inputs(tmp_path, rng):
    voices = random_voices(rng, 2)
    bank = tmp_path / "b.syx"
    bank.write_bytes(vmem_message(voices))
    events, advice = midi.send_plan(syx_path=bank, channel=2)
    assert len(events) == 1 and events[0].data[2] == 1 and "MEMORY PROTECT" in advice[0]
    with pytest.raises(DX7Error, match="32-voice bank"):
        midi.send_plan(syx_path=bank, mode="params")
    events, _ = midi.send_plan(voice=voices[0], mode="params")
    assert len(events) == 155
    junk = tmp_path / "song.mid"
    junk.write_bytes(b"MThd but not really")
    with pytest.raises(DX7Error, match="song.mid: not a Standard MIDI File"):
        midi.send_plan(mid_path=junk)
