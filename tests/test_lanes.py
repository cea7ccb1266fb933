"""ddx7.export.lanes: the controller lane, the operators' AMS and output levels fitted together,
and the live output levels a Dexed receiver is sent on top of them; ddx7.export.mk1's voice edits
in a phrase's silent gaps."""

from __future__ import annotations

import numpy as np
import pytest

from dx7tools.levels import FULL_SCALE, output_level_to_amplitude
from dx7tools.modulation import am_cut

from ddx7.export import lanes

T = 400
LEVELS = [90, 80, 70, 0, 0, 0]


def _phrase(opposed: bool = False):
    """A voice that holds its levels, and a model whose OP1 swells and fades by 24 dB and whose
    OP2 sits 6 dB under the voice; OP3 follows the voice, or with ``opposed`` fades where OP1
    swells (which one lane cannot do)."""
    voice = np.full((T, 6), np.nan)
    for k, ol in enumerate(LEVELS[:3]):
        voice[:, k] = output_level_to_amplitude(ol)
    voice[:20] = np.nan  # no note yet
    swell = -24 * np.abs(np.sin(np.linspace(0, np.pi, T)) - 1)  # 0 dB in the middle, -24 dB at the ends
    model = np.nan_to_num(voice.copy(), nan=0.0)
    model[:, 0] *= 10 ** (swell / 20)
    model[:, 1] *= 10 ** (-6 / 20)
    if opposed:
        model[:, 2] *= 10 ** ((-24 - swell) / 20)
    return voice, model


def _db(x):
    return 20 * np.log10(np.maximum(x, 1e-6))


def test_the_lane_carries_a_swell_the_voice_alone_cannot():
    voice, model = _phrase()
    fit = lanes.fit_lane(voice, model, LEVELS, levels=True)
    assert fit.ams[0] > 0  # the swelling operator listens to the lane
    assert fit.rms_db_before > 5 and fit.rms_db_after < fit.rms_db_before / 2
    notes = np.isfinite(fit.lane)
    assert not notes[:20].any() and notes[20:].all()
    # the lane follows the swell: low at the ends, high in the middle
    assert fit.lane[T // 2] > fit.lane[25] + 20 and fit.lane[T // 2] > fit.lane[-5] + 20


def test_live_output_levels_put_every_operator_on_the_model_through_the_lane():
    voice, model = _phrase(opposed=True)
    fit = lanes.fit_lane(voice, model, LEVELS, levels=True)
    live = lanes.live_output_levels(voice, model, fit, LEVELS)
    assert np.isnan(live[:20]).all() and np.isnan(live[:, 3:]).all()
    # play them: each frame's operator level at the live output level, then cut by the lane's EG bias
    ok = np.isfinite(live) & (live < 99) & (live > 20)
    ok[:, 3:] = False
    amp = voice * output_level_to_amplitude(np.clip(np.rint(np.nan_to_num(live)), 0, 99)) \
        / output_level_to_amplitude(np.maximum(LEVELS, 1))  # the voice's amplitudes were at LEVELS
    micro = FULL_SCALE + 256 * np.log2(np.maximum(np.nan_to_num(amp), 1e-12))
    values = np.clip(np.rint(np.nan_to_num(fit.lane)), 0, 127).astype(int)
    heard = np.exp2((am_cut(micro, fit.ams, lanes.bias_depths()[values]) - FULL_SCALE) / 256)
    error = np.abs(_db(heard[ok]) - _db(model[ok]))
    assert ok.sum() > T and np.percentile(error, 95) < 1.0  # whole levels: within a level's 0.75 dB
    # and without them (the lane alone) the same frames are further off
    alone = np.exp2((am_cut(lanes._micro(voice) + lanes.LEVEL_STEP * fit.level_shift, fit.ams,
                            lanes.bias_depths()[values]) - FULL_SCALE) / 256)
    assert np.sqrt(np.mean((_db(alone[ok]) - _db(model[ok])) ** 2)) > 2 * np.sqrt(np.mean(error ** 2))


def _choice(gap_seconds: float):
    """Three one-second notes of a one-carrier voice with a fast release, ``gap_seconds`` apart;
    the model asks OP1 for 0 dB, -12 dB, then 0 dB again."""
    from dx7tools.audio import FRAME_RATE
    from dx7tools.performance import Note
    from dx7tools.voice import Voice

    from ddx7.export.mk1 import Mk1Choice
    from ddx7.export.performance import LEAD_IN_SECONDS, Phrase

    voice = Voice.init().replace(op1_output_level=90, op1_eg_rate_4=80)
    held, gap = int(FRAME_RATE), int(gap_seconds * FRAME_RATE)
    notes = [Note(i * (held + gap), i * (held + gap) + held, 60) for i in range(3)]
    frames = notes[-1].end + 50
    voice_amp, model = np.full((frames, 6), np.nan), np.zeros((frames, 6))
    for i, n in enumerate(notes):
        voice_amp[n.start:n.end, 0] = output_level_to_amplitude(90)
        model[n.start:n.end, 0] = output_level_to_amplitude(90) * (10 ** (-12 / 20) if i == 1 else 1.0)
    fit = lanes.LaneFit(np.zeros(6, int), np.zeros(6, int), np.where(np.isfinite(voice_amp[:, 0]), 0.0, np.nan), 0, 0)
    times = LEAD_IN_SECONDS + np.arange(frames) / FRAME_RATE
    ph = Phrase(np.full(frames, 261.6), np.zeros(frames), notes, [100] * 3, model, times)
    return Mk1Choice(ph, [], "test", fit, voice, voice, voice_amp, {"test": 1.0},
                     dict(controller="breath", channel=1, budget=3000.0), np.zeros(16000))


def test_gap_edits_change_levels_only_where_nothing_sounds():
    from dx7tools.midi import parse_parameter_change

    from ddx7.export.mk1 import GAP_EDIT_LEAD, gap_edits

    c = _choice(0.5)
    events, voice, figures = gap_edits(c, c.voice)
    assert figures == {"gaps": 2, "edits": 2} and voice == c.voice  # the first section is the voice's own
    changes = [parse_parameter_change(e.data) for e in events]
    assert changes[0][0] == "op1_output_level" and 90 - 17 <= changes[0][1] <= 90 - 15  # -12 dB: 16 levels
    assert changes[1] == ("op1_output_level", 90)
    on = [c.phrase.times[n.start] for n in c.phrase.notes[1:]]
    assert [e.time for e in events] == pytest.approx([t - GAP_EDIT_LEAD for t in on])
    # the release of OP1 (rate 80) lasts longer than 30 ms: no silent gap, no edit
    legato = _choice(0.03)
    events, _, figures = gap_edits(legato, legato.voice)
    assert figures == {"gaps": 0, "edits": 0} and events == []


def test_vibrato_is_found_and_the_lfo_plays_it():
    from dx7tools.audio import FRAME_RATE
    from dx7tools.modulation import PITCH_MOD_SENSITIVITY, lfo_hz, pmd_share
    from dx7tools.voice import Voice

    from ddx7.export.mk1 import lfo_vibrato_voice, vibrato

    t = np.arange(int(4 * FRAME_RATE)) / FRAME_RATE
    pitch = np.where(t < 2, 69.0, 72.0) + 0.30 * np.sin(2 * np.pi * 5.5 * t)  # a step and ±30 cents at 5.5 Hz
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    f0[:25] = 0.0
    slow, rate, depth = vibrato(f0)
    assert abs(rate - 5.5) <= 0.3 and abs(depth - 30) < 4  # the median follows a vibrato a little
    assert np.isnan(slow[:25]).all() and np.nanmax(np.abs(slow[50:450] - 69)) < 0.15  # the step stays a step
    voice = lfo_vibrato_voice(Voice.init(), rate, depth)
    got = 1200 * pmd_share(voice["lfo_pitch_mod_depth"]) * PITCH_MOD_SENSITIVITY[voice["pitch_mod_sensitivity"]]
    assert abs(got - depth) < 1.5 and abs(lfo_hz(voice["lfo_speed"]) - rate) < 0.3
    assert (voice["lfo_waveform"], voice["lfo_key_sync"], voice["lfo_delay"]) == (4, 1, 0)  # sine, synced, at once
