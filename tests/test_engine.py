"""The DX7 engine (dx7tools.instrument.Instrument, ddx7.synth.dx7.DX7): the rules its module
docstring states, checked in closed form at the controls level and on the audio, and held notes
of factory voices against dexed-py (the oracle).

Rules are quoted from the ``dx7tools/instrument.py`` docstring ("instrument notes") and from
``docs/dexed-engine.md`` ("dexed-engine.md §n").
"""

from __future__ import annotations

import numpy as np
import pytest

from dx7tools.instrument import VOICES, Instrument
from dx7tools.levels import output_level_to_amplitude
from dx7tools.envelope import decay_db_per_second
from dx7tools.midi import Event, function_parameter_change, parameter_change
from dx7tools.sysex import read_file, vced_message, vmem_message
from dx7tools.voice import Voice

from ddx7.synth.dx7 import DX7

SR = 44100
BLOCK = 64


# -- helpers -------------------------------------------------------------------------------------
def sine_voice(**changes) -> Voice:
    """Algorithm 32 (every operator a carrier) with OP1 alone at full level: a sine."""
    return Voice.init().replace(**{"algorithm": 31, **{f"op{n}_output_level": 0 for n in range(2, 7)}, **changes})


def on(key: int, velocity: int = 100) -> bytes:
    return bytes([0x90, key, velocity])


def off(key: int) -> bytes:
    return bytes([0x80, key, 0])


def cc(number: int, value: int) -> bytes:
    return bytes([0xB0, number, value])


def bend(value: int) -> bytes:
    return bytes([0xE0, value & 0x7F, value >> 7])


def operator_switch(mask: int) -> bytes:
    """Voice parameter 155 (operator on/off; bit 5 = OP1 ... bit 0 = OP6), group 0."""
    return bytes([0xF0, 0x43, 0x10, 155 >> 7, 155 & 0x7F, mask, 0xF7])


def controls(inst: Instrument, start: int, n: int = 1) -> dict:
    """{slot: SlotControls} of the sounding slots for blocks start .. start + n - 1."""
    return {c.slot: c for c in inst.controls(start, n)}


def only(inst: Instrument, start: int, n: int = 1):
    got = inst.controls(start, n)
    assert len(got) == 1, [c.slot for c in got]
    return got[0]


def zero_crossing_hz(x: np.ndarray, sample_rate: float = SR) -> float:
    """Frequency of a steady sine from its upward zero crossings (linearly interpolated)."""
    x = np.asarray(x, dtype=np.float64)
    i = np.flatnonzero((x[:-1] < 0) & (x[1:] >= 0))
    t = i + x[i] / (x[i] - x[i + 1])
    return (len(t) - 1) * sample_rate / (t[-1] - t[0])


def cents(ratio: float) -> float:
    return 1200.0 * np.log2(ratio)


def rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.asarray(x, dtype=np.float64) ** 2) + 1e-30)


def held(voice, note=69, seconds=0.5, *, before=(), functions=None, **options) -> np.ndarray:
    """A note held ``seconds`` through the engine after the messages ``before`` (all at time 0)."""
    events = [Event(0.0, m) for m in before] + [Event(0.0, on(note)), Event(seconds, off(note))]
    return DX7(voice, functions=functions, **options).render(events, tail=0.0)


# -- 1. pitch bend ---------------------------------------------------------------------------------
# Instrument notes: "Pitch bend: pitch_bend_range semitones at full bend (8191 up is 8191/8192 of it,
# 0 down exactly all of it)"; "fixed-frequency operators follow the bend only" (dexed-engine.md §3:
# pb = (b * 2^11) * range / 12, both ratio and fixed operators get it).
BEND_DOWN = 2.0 ** (-2 / 12)
BEND_UP = 2.0 ** (2 / 12 * 8191 / 8192)


def bend_voice() -> Voice:
    """Ratio and fixed operators mixed, detuned, so that every kind of operator frequency is covered."""
    return Voice.init().replace(
        algorithm=31, op1_coarse=1, op2_mode=1, op2_coarse=2, op2_fine=50, op3_coarse=3, op3_detune=10,
        op4_mode=1, op4_coarse=1, op4_fine=7, op4_detune=12, op5_coarse=0, op5_fine=33, op6_coarse=7, op6_detune=2)


def test_bend_scales_every_operator_frequency_exactly():
    inst = Instrument(bend_voice(), functions={"pitch_bend_range": 2})
    inst.receive(on(57), 0)
    centre = only(inst, 0, 4).freq
    assert np.all(centre > 0) and np.all(centre == centre[0])
    # fixed ops: 10^(coarse mod 4 + fine/100) Hz, detune above 7 adds 13457/2^24 octave a step (dexed-engine.md §5)
    assert centre[0, 1] == pytest.approx(10 ** 2.5, rel=1e-9)
    assert centre[0, 3] == pytest.approx(10 ** 1.07 * 2 ** (13457 * 5 / 2 ** 24), rel=1e-9)
    for value, ratio in ((0, BEND_DOWN), (16383, BEND_UP), (8192, 1.0)):
        inst.receive(bend(value), 4)
        bent = only(inst, 4, 4).freq
        np.testing.assert_allclose(bent / centre, ratio, rtol=1e-12, err_msg=f"bend {value}")


@pytest.mark.parametrize("fixed", [False, True], ids=["ratio", "fixed"])
@pytest.mark.parametrize("value, ratio", [(0, BEND_DOWN), (16383, BEND_UP)], ids=["down", "up"])
def test_bend_on_the_audio(fixed, value, ratio):
    # A ratio-mode OP1 at MIDI 69 is 440 Hz; fixed mode coarse 2 fine 0 is 10^2 = 100 Hz (dexed-engine.md §5).
    voice = sine_voice(op1_mode=1, op1_coarse=2) if fixed else sine_voice()
    nominal = 100.0 if fixed else 440.0
    for sent, expected in ((None, nominal), (value, nominal * ratio)):
        audio = held(voice, before=() if sent is None else [bend(sent)], functions={"pitch_bend_range": 2})
        got = zero_crossing_hz(audio[int(0.05 * SR): int(0.45 * SR)])
        assert abs(cents(got / expected)) < 0.5, (sent, got, expected)


def test_bend_step_mode_quantises_over_an_octave():
    # Instrument notes: "or with pitch_bend_step s > 0 in steps of s semitones over +-1 octave"
    # (dexed-engine.md §3: stp = 12 div s, k = trunc(b*stp/8191), pb = k*(8191 div stp)*2^11; range ignored).
    inst = Instrument(sine_voice(), functions={"pitch_bend_range": 2, "pitch_bend_step": 4})
    inst.receive(on(69), 0)
    centre = only(inst, 0).freq[0, 0]
    for value, k in ((0, -3), (16383, 3), (8192 + 2730, 0), (8192 + 2731, 1), (8192 - 2731, -1), (8192 + 2000, 0)):
        inst.receive(bend(value), 1)
        got = cents(only(inst, 1).freq[0, 0] / centre)
        assert got == pytest.approx(1200 * k * (8191 // 3) / 8192, abs=1e-9), value


# -- 2. breath controller on EG bias -----------------------------------------------------------------
# Instrument notes: controllers "scaled by its function range (trunc(value * range / 100)) and added to
# ... EG bias by its assign bits"; dexed-engine.md §1: EGbias = 1 - (eg_mod + 1)/128; an operator with
# AMS loses L * k of its level L, k = exp(12.2 + 4.48 * s)/2^24, s = depth * AMS_tab (AMS 3: 1.0); if no
# source has EG assigned there is no bias; AMS 0 operators are untouched.
BREATH = {"breath_control_range": 99, "breath_control_assign": 4}


def breath_voice() -> Voice:
    return sine_voice(op1_amp_mod_sensitivity=3, op2_output_level=99, op2_coarse=2, op3_output_level=99,
                      op3_coarse=3, op3_amp_mod_sensitivity=1)


def amps_at_breath(functions, breath: int) -> np.ndarray:
    inst = Instrument(breath_voice(), functions=functions)
    inst.receive(on(60), 0)
    inst.receive(cc(2, breath), 20)
    return only(inst, 20, 10).amp


def test_breath_on_eg_bias_closed_form():
    full_octaves = 3840 / 256                                  # output level 99, EG level 99: 15 octaves
    closed = amps_at_breath(BREATH, 0)
    assert np.all(closed[:, 0] == 0)                           # AMS 3, breath 0: bias 1 - 1/128 cuts it all
    np.testing.assert_allclose(closed[:, 1], 1.0, rtol=1e-12)  # AMS 0 untouched
    k_closed_ams1 = np.exp(12.2 + 4.48 * (1 - 1 / 128) * 0.2588235) / 2 ** 24
    np.testing.assert_allclose(closed[:, 2], 2.0 ** (-full_octaves * k_closed_ams1), rtol=1e-5)

    opened = amps_at_breath(BREATH, 127)                       # total trunc(127 * 99 / 100) = 125
    k = np.exp(12.2 + 4.48 * (1 - 126 / 128)) / 2 ** 24
    expected_db = -full_octaves * k * 20 * np.log10(2)
    assert -1.2 < expected_db < -1.1
    np.testing.assert_allclose(20 * np.log10(opened[:, 0]), expected_db, rtol=1e-3)
    np.testing.assert_allclose(opened[:, 1], 1.0, rtol=1e-12)


def test_breath_without_eg_assign_does_nothing():
    for functions in ({"breath_control_range": 99, "breath_control_assign": 0}, {}):
        low, high = amps_at_breath(functions, 0), amps_at_breath(functions, 127)
        np.testing.assert_array_equal(low, high)
        # no bias at all: AMS 1-3 still lose Dexed's 1.185 % of their level (dexed-engine.md §1 quirk)
        np.testing.assert_allclose(low[:, 0], 2.0 ** (-15 * np.exp(12.2) / 2 ** 24), rtol=1e-5)
        np.testing.assert_allclose(low[:, 1], 1.0, rtol=1e-12)


def test_breath_on_the_audio():
    voice = sine_voice(op1_amp_mod_sensitivity=3)
    shut = held(voice, 60, 0.3, before=[cc(2, 0)], functions=BREATH)
    assert np.abs(shut).max() == 0
    opened = held(voice, 60, 0.3, before=[cc(2, 127)], functions=BREATH)
    plain = held(sine_voice(), 60, 0.3, functions=BREATH)
    body = slice(int(0.05 * SR), int(0.25 * SR))
    k = np.exp(12.2 + 4.48 * (1 - 126 / 128)) / 2 ** 24
    assert rms_db(opened[body]) - rms_db(plain[body]) == pytest.approx(-15 * k * 20 * np.log10(2), abs=0.02)


# -- 3. receivers ------------------------------------------------------------------------------------
# Instrument notes: mk1 "a note keeps the voice it started with: changes are heard from the next
# note-on ... A voice change received while a note sounds ... is counted (stutter_prone)"; dexed
# "changes reach sounding notes at once ... a held key's EGs head from where they are to the new
# LEVEL 3 at RATE 3".
def test_mk1_output_level_change_waits_for_the_next_note():
    inst = Instrument(sine_voice(), receiver="mk1")
    inst.receive(on(69), 0)
    before = only(inst, 50, 10).amp
    assert before[:, 0] == pytest.approx(1.0)
    inst.receive(parameter_change("op1_output_level", 80), 60)
    np.testing.assert_array_equal(only(inst, 60, 200).amp, np.repeat(before[:1], 200, axis=0))
    assert inst.stats["stutter_prone"] == 1 and inst.stats["voice_changes"] == 1
    inst.receive(off(69), 260)
    assert controls(inst, 300) == {}
    inst.receive(parameter_change("op1_output_level", 80), 300)   # nothing sounds: not stutter-prone
    assert inst.stats["stutter_prone"] == 1 and inst.stats["voice_changes"] == 2
    inst.receive(on(69), 300)
    assert only(inst, 350).amp[0, 0] == pytest.approx(output_level_to_amplitude(80), rel=1e-9)  # 19 steps down


def test_mk1_change_on_the_audio():
    events = [Event(0.0, on(69)), Event(0.5, off(69)), Event(0.7, on(69)), Event(1.0, off(69))]
    change = Event(0.2, parameter_change("op1_output_level", 80))
    plain = DX7(sine_voice()).render(events, tail=0.2)
    engine = DX7(sine_voice())
    edited = engine.render(events[:1] + [change] + events[1:], tail=0.2)
    second = engine.block_of(0.7) * BLOCK
    np.testing.assert_array_equal(edited[:second], plain[:second])
    body = slice(second + int(0.05 * SR), second + int(0.25 * SR))
    assert rms_db(edited[body]) - rms_db(plain[body]) == pytest.approx(-19 * 0.7526, abs=0.02)
    assert engine.summary["stutter_prone"] == 1


def test_dexed_receiver_moves_a_held_note_at_rate_3():
    voice = sine_voice(op1_eg_rate_3=50)
    inst = Instrument(voice, receiver="dexed")
    inst.receive(on(69), 0)
    assert only(inst, 50).amp[0, 0] == pytest.approx(1.0)
    inst.receive(parameter_change("op1_output_level", 80), 60)
    amp = only(inst, 60, 400).amp[:, 0]
    target = output_level_to_amplitude(80)
    assert np.all(np.diff(amp) <= 0) and amp[0] < 1.0
    assert amp[-1] == pytest.approx(target, rel=1e-9)
    db = 20 * np.log10(amp)
    moving = np.flatnonzero(db > 20 * np.log10(target) + 0.5)
    slope = (db[moving[-1]] - db[moving[0]]) / ((moving[-1] - moving[0]) * BLOCK / SR)
    assert slope == pytest.approx(-decay_db_per_second(50), rel=0.02)   # 64.8 dB/s at rate 50
    assert inst.stats["stutter_prone"] == 0 and inst.stats["voice_changes"] == 1


# -- 4. polyphony, velocity 0, sustain ---------------------------------------------------------------
# Instrument notes: "16 slots. A note-on takes the slot with the highest score -- +4 if it is not
# playing, +2 if its key is up, +1 if it last played the same note -- ...; equal scores go to the
# oldest note. A note-on with velocity 0 is a note-off. Sustain (CC 64 >= 64) holds released keys
# until the pedal goes up."
def test_seventeenth_note_steals_the_oldest():
    inst = Instrument(sine_voice())
    for i in range(VOICES):
        inst.receive(on(40 + i), i)
    first = next(s for s, n in enumerate(inst.slots) if n is not None and n.midi_note == 40)
    assert set(controls(inst, VOICES)) == set(range(VOICES)) and inst.stats["stolen"] == 0
    inst.receive(on(70), VOICES)
    sounding = controls(inst, VOICES + 1)
    assert len(sounding) == VOICES and inst.stats["stolen"] == 1 and inst.stats["notes"] == 17
    assert inst.slots[first].midi_note == 70
    assert sorted(n.midi_note for n in inst.slots) == list(range(41, 56)) + [70]


def test_a_released_note_is_stolen_before_a_held_one():
    inst = Instrument(sine_voice(op1_eg_rate_4=20))            # a long release: still playing
    for i in range(VOICES):
        inst.receive(on(40 + i), i)
    released = next(s for s, n in enumerate(inst.slots) if n.midi_note == 47)
    inst.receive(off(47), 20)
    assert released in controls(inst, 30)                      # still sounding
    inst.receive(on(80), 30)
    assert inst.slots[released].midi_note == 80 and inst.stats["stolen"] == 1


def test_velocity_0_is_a_note_off():
    amps = []
    for release in (off(60), bytes([0x90, 60, 0])):
        inst = Instrument(sine_voice(op1_eg_rate_4=60))
        inst.receive(on(60), 0)
        inst.receive(release, 30)
        assert not any(n.keydown for n in inst.slots if n is not None)
        amps.append(only(inst, 30, 40).amp)
    np.testing.assert_array_equal(amps[0], amps[1])
    assert amps[1][-1, 0] < 0.5 * amps[1][0, 0]                 # releasing


def test_sustain_pedal_holds_until_it_goes_up():
    inst = Instrument(sine_voice())
    inst.receive(cc(64, 127), 0)
    inst.receive(on(60), 0)
    inst.receive(off(60), 10)
    np.testing.assert_allclose(only(inst, 10, 500).amp[:, 0], 1.0)
    inst.receive(cc(64, 0), 510)
    assert controls(inst, 530) == {}                           # release rate 99: gone at once
    # the same on the audio: full level until the pedal goes up, then the release (rate 99: 4 blocks)
    events = [Event(0.0, cc(64, 127)), Event(0.0, on(60)), Event(0.1, off(60)), Event(0.6, cc(64, 0))]
    engine = DX7(sine_voice())
    audio = engine.render(events, tail=0.5)
    up = engine.block_of(0.6) * BLOCK
    assert rms_db(audio[int(0.2 * SR): up]) == pytest.approx(rms_db(audio[int(0.02 * SR): int(0.1 * SR)]), abs=0.01)
    assert np.abs(audio[up - BLOCK: up]).min() < 0.1 < np.abs(audio[up - BLOCK: up]).max()   # still a sine
    assert np.abs(audio[up + 6 * BLOCK:]).max(initial=0) == 0


# -- 5. streaming ------------------------------------------------------------------------------------
# dx7.py notes: "any chunking gives the same samples (phases are exact 40-bit accumulators, feedback
# and gain interpolation carry their state)".
def song(voice: Voice) -> list[Event]:
    ev = [Event(0.0, cc(1, 0)), Event(0.0, on(60, 90)), Event(0.013, on(64, 70)), Event(0.021, on(67, 110))]
    ev += [Event(0.1 + 0.01 * i, bend(8192 + 300 * i)) for i in range(20)]
    ev += [Event(0.35 + 0.02 * i, cc(1, 6 * i)) for i in range(20)]
    ev += [Event(0.4, off(64)), Event(0.45, cc(64, 127)), Event(0.5, off(60)), Event(0.55, on(72, 100)),
           Event(0.6, parameter_change("op1_output_level", max(0, voice["op1_output_level"] - 10))),
           Event(0.7, bend(1000)), Event(0.8, cc(2, 90)), Event(0.85, bytes([0xD0, 80])), Event(0.9, cc(64, 0)),
           Event(1.0, on(60, 64)), Event(1.2, off(67)), Event(1.3, off(72)), Event(1.35, off(60))]
    return sorted(ev, key=lambda e: e.time)


SONG_FUNCTIONS = {"mod_wheel_range": 80, "mod_wheel_assign": 3, "breath_control_range": 60,
                  "breath_control_assign": 4, "aftertouch_range": 50, "aftertouch_assign": 1, "pitch_bend_range": 5}


@pytest.fixture(scope="module")
def rich() -> Voice:
    """A voice like KOTO (algorithm 2: two stacks, feedback 6, OSC KEY SYNC), with everything that
    carries state between blocks: a pitch EG, LFO pitch and amplitude modulation with key sync and a
    delay, detuned operators, a fixed-frequency modulator and a slow release."""
    return Voice.init().replace(
        algorithm=1, feedback=6, op2_output_level=82, op2_coarse=3, op2_detune=9, op3_output_level=99,
        op3_coarse=1, op3_detune=5, op3_amp_mod_sensitivity=2, op4_output_level=75, op4_coarse=5,
        op5_output_level=70, op5_mode=1, op5_coarse=2, op5_fine=60, op6_output_level=78, op6_coarse=1,
        op1_eg_rate_4=45, op3_eg_rate_4=40, op1_eg_rate_2=50, op1_eg_level_2=85,
        pitch_eg_rate_1=70, pitch_eg_level_1=60, pitch_eg_rate_2=50, pitch_eg_level_4=45,
        lfo_speed=40, lfo_delay=20, lfo_pitch_mod_depth=20, lfo_amp_mod_depth=40, lfo_waveform=4,
        lfo_key_sync=1, pitch_mod_sensitivity=3)


def test_chunking_does_not_change_the_samples(rich):
    events = song(rich)
    large = DX7(rich, functions=SONG_FUNCTIONS, chunk_blocks=256)
    reference = large.render(events, tail=0.5)
    small = DX7(rich, functions=SONG_FUNCTIONS, chunk_blocks=7)
    chunks = list(small.stream(events, tail=0.5))
    assert max(len(c) for c in chunks) <= 7 * BLOCK
    audio = np.concatenate(chunks)
    assert len(audio) == len(reference) and len(audio) > 1.4 * SR and np.abs(reference).max() > 0.1
    np.testing.assert_allclose(audio, reference, rtol=0, atol=1e-6)
    assert small.summary == large.summary and small.summary["notes"] == 5 and small.summary["voice_changes"] == 1


def test_render_ends_when_nothing_sounds():
    # dx7.py notes: "after the last message, rendering goes on until no slot sounds, at most tail
    # seconds"; the length must not depend on the chunk size either.
    events = [Event(0.0, on(69)), Event(0.1, off(69))]
    lengths = {}
    for chunk in (7, 256, None):
        engine = DX7(sine_voice(), **({} if chunk is None else {"chunk_blocks": chunk}))
        audio = engine.render(events, tail=2.0)
        lengths[chunk] = len(audio)
        assert not engine.summary["capped"] and np.abs(audio[-BLOCK:]).max() == 0
    end = DX7(sine_voice()).block_of(0.1) + 4                 # release rate 99: 4 blocks (OperatorEG.key_up)
    assert all(n <= (end + 7) * BLOCK for n in lengths.values()), lengths


def test_live_advance_equals_render(rich):
    events = song(rich)
    reference = DX7(rich, functions=SONG_FUNCTIONS).render(events, tail=0.5)
    live = DX7(rich, functions=SONG_FUNCTIONS, chunk_blocks=32)
    pieces = []
    for e in events:
        pieces.append(live.advance(live.block_of(e.time) - live.block))
        live.receive(e.data)
    pieces.append(live.advance(len(reference) // BLOCK - live.block))
    audio = np.concatenate(pieces)
    assert len(audio) == len(reference)
    np.testing.assert_allclose(audio, reference, rtol=0, atol=1e-6)


def test_live_block_by_block_equals_render():
    """Every block its own chunk: a release's last block (the gain ramp from the last level above the
    floor down to it, interpolated across the block as Dexed does) must still sound."""
    voice = sine_voice(op1_eg_rate_4=60)
    reference = DX7(voice).render([Event(0.0, on(69)), Event(0.1, off(69))], tail=1.0)
    live = DX7(voice)
    live.receive(on(69))
    pieces = [live.advance(live.block_of(0.1))]
    live.receive(off(69))
    pieces += [live.advance(1) for _ in range(len(reference) // BLOCK - live.block)]
    audio = np.concatenate(pieces)
    assert len(audio) == len(reference)
    np.testing.assert_allclose(audio, reference, rtol=0, atol=1e-6)


# -- 6. voice data in the stream ---------------------------------------------------------------------
# Instrument notes: "single-voice dumps, 32-voice dumps (kept as the bank that program changes 0-31
# pick from), voice parameter changes (group 0, 155 = operator on/off), function parameter changes
# (group 2)"; "Messages the engine does not act on (... program changes without a bank, bad dumps)
# are counted in Instrument.stats".
NOTE = [Event(0.0, on(60)), Event(0.3, off(60))]


def after(t: float, events):
    return [Event(e.time + t, e.data) for e in events]


@pytest.fixture(scope="module")
def rom(hexter_dir) -> list[Voice]:
    return [r.voice for r in read_file(hexter_dir / "dx7_roms.dx7").voices[:32]]


def test_program_change_picks_from_the_bank(rom):
    # KOTO (22) has LFO KEY SYNC on, as INIT VOICE: see test_lfo_key_sync_is_the_new_voices for the other case
    engine = DX7(Voice.init(), bank=rom)
    audio = engine.render([Event(0.0, bytes([0xC0, 22]))] + NOTE, tail=0.5)
    assert engine.instrument.edit.values.tobytes() == rom[22].values.tobytes()
    direct = DX7(rom[22]).render(NOTE, tail=0.5)
    np.testing.assert_array_equal(audio, direct)
    engine = DX7(Voice.init(), bank=rom[:4])
    engine.render([Event(0.0, bytes([0xC0, 9]))], tail=0.0)
    assert engine.summary["ignored"] == {"program_change_without_voice": 1}
    assert engine.instrument.edit.values.tobytes() == Voice.init().values.tobytes()


def test_bank_dump_in_the_stream_replaces_the_bank(rom):
    engine = DX7(Voice.init(), bank=[Voice.init()] * 32)
    audio = engine.render([Event(0.0, vmem_message(rom)), Event(0.01, bytes([0xC0, 22]))] + after(0.02, NOTE), tail=0.5)
    assert [v.values.tobytes() for v in engine.instrument.bank] == [v.values.tobytes() for v in rom]
    assert engine.instrument.edit.values.tobytes() == rom[22].values.tobytes()
    direct = DX7(rom[22]).render([Event(0.0, vmem_message(rom))] + after(0.02, NOTE), tail=0.5)
    np.testing.assert_array_equal(audio, direct)


def test_lfo_key_sync_is_the_new_voices():
    # Instrument notes: "The LFO ... its delay restarts, and with LFO KEY SYNC its phase, at a note-on
    # while no key is held"; mk1: "changes are heard from the next note-on". The KEY SYNC that applies
    # is the voice's that the note plays (Dexed resets the LFO's settings when a voice arrives,
    # dexed-engine.md §1), not the previous voice's. Sent as a dump and as a program change.
    vibrato = dict(lfo_speed=35, lfo_pitch_mod_depth=99, pitch_mod_sensitivity=3)
    for old, new in ((Voice.init(), sine_voice(lfo_key_sync=0, **vibrato)),
                     (Voice.init().replace(lfo_key_sync=0), sine_voice(lfo_key_sync=1, **vibrato))):
        direct = Instrument(new)
        direct.receive(on(69), 0)
        for message in (vced_message(new), bytes([0xC0, 0])):
            inst = Instrument(old, bank=[new])
            inst.receive(message, 0)
            inst.receive(on(69), 0)
            np.testing.assert_allclose(only(inst, 0, 50).freq, only(direct, 0, 50).freq, rtol=1e-12,
                                       err_msg=f"LFO KEY SYNC {old['lfo_key_sync']} -> {new['lfo_key_sync']}")


def test_single_voice_dump_and_bad_checksum(rom):
    bad = bytearray(vced_message(rom[7]))
    bad[-2] ^= 0x01
    engine = DX7(rom[0])
    engine.render([Event(0.0, bytes(bad))] + after(0.01, NOTE), tail=0.2)
    assert engine.summary["ignored"] == {"bad_sysex": 1} and engine.summary["voice_changes"] == 0
    assert engine.instrument.edit.values.tobytes() == rom[0].values.tobytes()
    engine = DX7(rom[0])
    engine.render([Event(0.0, vced_message(rom[7]))] + after(0.01, NOTE), tail=0.2)
    assert engine.summary["ignored"] == {} and engine.summary["voice_changes"] == 1
    assert engine.instrument.edit.values.tobytes() == rom[7].values.tobytes()


def test_function_change_in_the_stream_sets_bend_range():
    inst = Instrument(sine_voice())                           # default range 3
    inst.receive(on(69), 0)
    centre = only(inst, 0).freq[0, 0]
    inst.receive(bend(0), 1)
    assert only(inst, 1).freq[0, 0] / centre == pytest.approx(2 ** (-3 / 12), rel=1e-12)
    inst.receive(function_parameter_change("pitch_bend_range", 12), 2)
    assert inst.stats["function_changes"] == 1
    assert only(inst, 2).freq[0, 0] / centre == pytest.approx(0.5, rel=1e-12)
    # and on the audio, through the whole engine
    audio = held(sine_voice(), before=[function_parameter_change("pitch_bend_range", 7), bend(0)])
    assert abs(cents(zero_crossing_hz(audio[2000: 20000]) / (440 * 2 ** (-7 / 12)))) < 0.5


def test_operator_switch_mutes_from_the_next_note_mk1():
    voice = sine_voice(op2_output_level=99, op2_coarse=2)
    inst = Instrument(voice, receiver="mk1")
    inst.receive(on(60), 0)
    inst.receive(operator_switch(0b011111), 10)               # OP1 off
    np.testing.assert_allclose(only(inst, 10, 20).amp[:, :2], 1.0)
    assert inst.stats["stutter_prone"] == 1
    inst.receive(off(60), 30)
    inst.receive(on(62), 40)
    amp = only(inst, 40, 20).amp
    assert np.all(amp[:, 0] == 0) and np.allclose(amp[:, 1], 1.0)
    inst.receive(off(62), 60)
    inst.receive(operator_switch(0b101111), 70)               # OP1 back, OP2 off
    inst.receive(on(62), 70)
    amp = only(inst, 70, 20).amp
    assert np.allclose(amp[:, 0], 1.0) and np.all(amp[:, 1] == 0)


def test_operator_switch_is_live_with_the_dexed_receiver():
    inst = Instrument(sine_voice(op2_output_level=99, op2_coarse=2), receiver="dexed")
    inst.receive(on(60), 0)
    inst.receive(operator_switch(0b011111), 10)
    amp = only(inst, 10, 10).amp
    assert np.all(amp[:, 0] == 0) and np.allclose(amp[:, 1], 1.0)


# -- 7. mono -----------------------------------------------------------------------------------------
# Instrument notes: "Mono: one voice, the highest held key sounds; a new higher key moves it without
# a new attack (legato), releasing it falls back to the highest key still held."
def test_mono_legato_and_fall_back():
    voice = sine_voice(op1_eg_rate_1=40)                      # a slow attack: a new one would show
    inst = Instrument(voice, functions={"mono_poly": 1})
    solo = Instrument(voice)
    for i in (inst, solo):
        assert i.receive(on(60), 0) == "note"
    assert inst.take_resets() == {0}                          # OSC KEY SYNC on a free slot
    base = only(inst, 0).freq[0, 0]
    assert inst.receive(on(64), 50) is None                   # legato: no new note, no phase reset
    assert inst.take_resets() == set() and inst.stats["notes"] == 2
    assert inst.receive(on(55), 80) is None                   # lower than the held key: not sounded
    a = only(inst, 50, 100)
    np.testing.assert_array_equal(a.amp, only(solo, 50, 100).amp)   # EG carries on, no re-attack
    np.testing.assert_allclose(a.freq[:, 0] / base, 2 ** (4 / 12), rtol=1e-12)
    inst.receive(off(64), 150)                                # back to the highest still held: 60
    b = only(inst, 150, 100)
    np.testing.assert_array_equal(b.amp, only(solo, 150, 100).amp)
    np.testing.assert_allclose(b.freq[:, 0] / base, 1.0, rtol=1e-12)
    inst.receive(off(60), 250)                                # then 55, still held
    np.testing.assert_allclose(only(inst, 250).freq[0, 0] / base, 2 ** (-5 / 12), rtol=1e-12)
    assert inst.slots[0].keydown and sum(n is not None for n in inst.slots) == 1
    inst.receive(off(55), 260)
    assert not inst.slots[0].keydown


# -- against dexed-py ---------------------------------------------------------------------------------
# One note held 1 s (+0.3 s release) at 44.1 kHz, OSC KEY SYNC or not: dexed-py starts every render
# from phase 0 and a fresh LFO, as a fresh engine does. Measured with dexed-py 0.3.0 (median frame
# distance, ddx7.synth.fidelity.spectral_distance_db; "flat" = the same voice with PMD, AMD and the
# pitch-EG levels neutral, what an engine ignoring that modulation would play):
#   BRASS 1 0.08 (flat 1.26), KOTO 0.08 (0.76), VOICE 1 0.17 (1.69), STEEL DRUM 0.05 (0.69),
#   TIMPANI 0.15 (0.52), FLUTE 1 0.10 (0.27), E.PIANO 1 0.10, GRAND PRIX 1.17 (17.5: its pitch EG
#   throws the partials up near Nyquist).
# Over all 432 hexter voices the median is 0.15 dB (p90 0.47); the outliers are feedback-7 noise
# voices (chaotic: no two implementations agree frame by frame) and attacks whose LEVEL 1 is 0.
# The bound is 0.4 dB (1.5 dB for GRAND PRIX): 2-5x the measured figure, below one output-level step
# (0.75 dB) and below every "flat" figure, and the modulated voices must also be at least 2x closer
# than their flat versions.
ORACLE = [  # (index in dx7_roms.dx7, name, bound dB, modulated)
    (0, "BRASS   1", 0.4, True), (22, "KOTO", 0.4, True), (29, "VOICE   1", 0.4, True),
    (26, "STEEL DRUM", 0.4, True), (27, "TIMPANI", 0.4, True), (23, "FLUTE   1", 0.4, False),
    (10, "E.PIANO 1", 0.4, False), (125, "GRAND PRIX", 1.5, True),
]


@pytest.fixture(scope="module")
def rom1(hexter_dir) -> list[Voice]:
    return [r.voice for r in read_file(hexter_dir / "dx7_roms.dx7").voices]


def flat(voice: Voice) -> Voice:
    return voice.replace(lfo_pitch_mod_depth=0, lfo_amp_mod_depth=0, **{f"pitch_eg_level_{k}": 50 for k in range(1, 5)})


@pytest.mark.oracle
@pytest.mark.parametrize("index, name, bound, modulated", ORACLE, ids=[o[1].replace(" ", "") for o in ORACLE])
def test_held_note_matches_dexed(dexed, rom1, index, name, bound, modulated):
    from ddx7.synth.fidelity import spectral_distance_db
    from ddx7.synth.preview import render_dexed, render_dx7

    voice = rom1[index]
    assert voice.name.strip() == name.strip()
    reference = render_dexed(voice, 60, 100, 1.0, tail=0.3, sample_rate=SR)
    ours = render_dx7(voice, 60, 100, 1.0, tail=0.3, sample_rate=SR)
    assert len(ours) == len(reference)
    distance = float(np.median(spectral_distance_db(ours, reference)))
    assert distance < bound, (name, distance)
    if modulated:
        unmodelled = float(np.median(spectral_distance_db(render_dx7(flat(voice), 60, 100, 1.0, tail=0.3), reference)))
        assert unmodelled > 2 * distance, (name, distance, unmodelled)


@pytest.mark.oracle
@pytest.mark.parametrize("index, name", [(10, "E.PIANO 1"), (33, "PIANO   5")])
def test_held_note_sample_correlation_with_dexed(dexed, rom1, index, name):
    """No LFO, no pitch EG: the samples themselves agree (measured r = 0.99976 and 0.99997)."""
    from ddx7.synth.preview import render_dexed, render_dx7

    voice = rom1[index]
    assert voice.name.strip() == name.strip() and voice["lfo_pitch_mod_depth"] == voice["lfo_amp_mod_depth"] == 0
    reference = render_dexed(voice, 60, 100, 1.0, tail=0.3, sample_rate=SR)
    ours = render_dx7(voice, 60, 100, 1.0, tail=0.3, sample_rate=SR)
    assert np.corrcoef(ours, reference)[0, 1] > 0.999
    assert rms_db(ours) == pytest.approx(rms_db(reference), abs=0.1)     # same scale: 1.0 = a full carrier


@pytest.mark.oracle
def test_chord_is_the_sum_of_dexed_notes(dexed, rom1):
    """Two slots play independently (OSC KEY SYNC resets each free slot): a chord is the sum of two
    dexed-py notes (dexed-py plays one note per render)."""
    from ddx7.synth.preview import render_dexed

    voice = rom1[10]
    reference = sum(render_dexed(voice, k, 100, 1.0, tail=0.3, sample_rate=SR) for k in (60, 67))
    engine = DX7(voice)
    ours = engine.render([Event(0.0, on(60)), Event(0.0, on(67)), Event(1.0, off(60)), Event(1.0, off(67))], tail=0.3)
    n = len(reference)
    assert len(ours) >= n and np.corrcoef(ours[:n], reference)[0, 1] > 0.999


@pytest.mark.oracle
def test_attack_to_level_0_waits_as_in_dexed(dexed):
    """An EG whose LEVEL 1 is 0 holds before it moves on: Dexed's ACCURATE_ENVELOPE static count
    (``Env::advance``: ``ix == 0 && newlevel == 0`` -> statics[rate] / 20 samples; rate 27: 88200 / 20
    = 4410 samples, 0.1 s). Found through BELL-FLUTE (dx7_roms.dx7 voice 113: 1.41 dB from dexed-py, corr 0.92)."""
    from ddx7.synth.preview import render_dexed, render_dx7

    voice = sine_voice(op1_eg_rate_1=27, op1_eg_level_1=0, op1_eg_rate_2=99, op1_eg_level_2=99, op1_eg_level_3=99)
    reference = render_dexed(voice, 60, 100, 0.5, tail=0.0, sample_rate=SR)
    ours = render_dx7(voice, 60, 100, 0.5, tail=0.0, sample_rate=SR)

    def onset(x):
        return int(np.argmax(np.abs(x) > 1e-3))

    assert onset(reference) == pytest.approx(4410, abs=2 * BLOCK)   # dexed-py: silent for 0.1 s
    assert onset(ours) == pytest.approx(onset(reference), abs=2 * BLOCK)


def test_all_notes_off_releases_a_mono_voice_with_keys_held():
    # instrument.py notes: "CC 123 releases every key" -- in mono too, where two keys are down
    inst = Instrument(Voice.init(), functions={"mono_poly": 1})
    inst.receive(bytes([0x90, 60, 100]), 0)
    inst.receive(bytes([0x90, 64, 100]), 10)
    inst.receive(bytes([0xB0, 123, 0]), 20)
    assert not inst.keys_held() and inst.held_mono == []
    assert not inst.playing(0, 2000)  # INIT VOICE's release (rate 99) is over long before
