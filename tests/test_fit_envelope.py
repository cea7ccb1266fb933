"""dx7tools.fit_envelope: DX7 operator settings fitted back from level trajectories, and
dx7tools.performance: notes, the wire budget, the .mid round trip."""

from __future__ import annotations

import numpy as np
import pytest

from dx7tools import Voice, midi, performance as perf
from dx7tools.envelope import operator_levels
from dx7tools.errors import DX7Error
from dx7tools.fit_envelope import NoteTarget, _defaults, apply_fits, fit_operator, fit_voice_levels, render_target

NOTES = [(60, 90), (60, 45), (60, 120), (48, 90), (75, 90)]


def _targets(values, seconds=1.0, frames=400):
    return [NoteTarget(n, v, seconds, render_target(values, NoteTarget(n, v, seconds, np.zeros(frames))))
            for n, v in NOTES]


@pytest.mark.parametrize("truth", [
    dict(output_level=85, eg_rate_1=70, eg_rate_2=45, eg_rate_3=30, eg_rate_4=55, eg_level_2=88, eg_level_3=80,
         velocity_sensitivity=3, right_depth=40, right_curve=3),
    dict(output_level=60, eg_rate_1=95, eg_rate_2=25, eg_rate_3=60, eg_rate_4=80, eg_level_2=70, eg_level_3=60,
         velocity_sensitivity=6, left_depth=50, left_curve=0),
])
def test_fit_recovers_what_the_dx7_curves_draw(truth):
    truth = {**_defaults(), **truth}
    targets = _targets(truth)
    fit = fit_operator(targets)
    assert fit.rms_db < 1.5, fit.values
    # the fitted settings draw the same curves on every note within a couple of dB
    for t in targets:
        got = 20 * np.log10(np.maximum(render_target(fit.values, t), 1e-3))
        want = 20 * np.log10(np.maximum(t.amplitude, 1e-3))
        assert np.sqrt(np.mean((got - want) ** 2)) < 2.5
    assert abs(fit.values["velocity_sensitivity"] - truth["velocity_sensitivity"]) <= 1


def test_silent_operators_and_bad_targets():
    quiet = [NoteTarget(60, 100, 1.0, np.full(300, 1e-5))]
    fit = fit_operator(quiet)
    assert fit.silent and fit.values["output_level"] == 0
    with pytest.raises(DX7Error, match="finite"):
        fit_operator([NoteTarget(60, 100, 1.0, np.array([0.1, np.inf, 0.2]))])
    with pytest.raises(DX7Error, match="finite"):
        fit_operator([NoteTarget(60, 100, 1.0, np.full(5, np.nan))])
    # NaN frames do not count: a target known only on its first half fits that half
    truth = {**_defaults(), "output_level": 80, "eg_rate_1": 60}
    half = _targets(truth)[0]
    amp = half.amplitude.copy()
    amp[200:] = np.nan
    assert fit_operator([NoteTarget(60, 90, 1.0, amp)]).rms_db < 1.0
    with pytest.raises(DX7Error, match="no target"):
        fit_operator([])
    with pytest.raises(DX7Error, match="6 operators"):
        fit_voice_levels([quiet])


def test_apply_fits_makes_a_voice_whose_levels_match():
    truth = {**_defaults(), "output_level": 90, "eg_rate_1": 80, "eg_level_3": 85, "eg_rate_4": 60}
    fits = [fit_operator(_targets(truth))] + [fit_operator([NoteTarget(60, 100, 1.0, np.zeros(300))])] * 5
    voice = apply_fits(Voice.init(), fits)
    lv = operator_levels(voice, 60, 90, 1.0, total_seconds=1.6)[:, 0]
    want = render_target(truth, NoteTarget(60, 90, 1.0, np.zeros(400)))
    err = 20 * np.log10(np.maximum(lv[:400], 1e-3)) - 20 * np.log10(np.maximum(want, 1e-3))
    assert np.sqrt(np.mean(err ** 2)) < 1.5 and voice["op2_output_level"] == 0


def test_segment_notes_legato_gap_and_reattack():
    fr = 250
    hz = lambda n: 440 * 2 ** ((n - 69) / 12)  # noqa: E731
    f0 = np.concatenate([np.full(fr // 2, hz(60)), np.full(fr // 2, hz(62)) * 2 ** (0.3 / 12),  # legato, 30 c sharp
                         np.zeros(50), np.full(fr // 2, hz(67)), np.full(fr // 2, hz(67))])
    loud = np.full(len(f0), -20.0)
    loud[-fr // 2 - 12: -fr // 2] = -45.0  # a dip, then a re-attack of the same pitch
    notes = perf.segment_notes(f0, loud)
    assert [n.pitch for n in notes] == [60, 62, 67, 67]
    assert abs(notes[1].start - fr // 2) <= 1 and notes[2].start == fr + 50
    bends = perf.pitch_bend_values(perf.midi_pitch(f0[notes[1].start: notes[1].end]), 62)
    assert np.all(np.abs(bends - round(0.15 * 8192)) <= 1)


def test_thinning_never_exceeds_the_budget_and_the_file_reads_back(tmp_path):
    frames, fr = 1500, 250.0
    times = 0.5 + np.arange(frames) / fr
    rng = np.random.default_rng(0)
    wanted = [np.clip(50 + np.cumsum(rng.normal(0, 1.5, frames)), 0, 99) for _ in range(6)]
    mandatory = [midi.Event(t, bytes([0x90, 60, 100])) for t in times[::50]] + \
        [midi.Event(t + 0.1, bytes([0x80, 60, 0])) for t in times[::50]]
    budget = perf.WireBudget(frames + 200, fr, 1000.0)
    for e in mandatory:
        budget.add(e.time, e.data)
    lanes = [perf.Lane(f"op{k + 1}_output_level", wanted[k],
                       (lambda v, key=f"op{k + 1}_output_level": midi.parameter_change(key, v)))
             for k in range(6)]
    events = perf.thin_lanes(lanes, budget, times)
    allev = mandatory + events
    assert midi.max_bytes_per_window([e.time for e in allev], [len(e.data) for e in allev]) <= 1000
    assert len(events) > 100  # it did use the budget
    # and it is sendable on time: with the pauses after parameter changes, no message falls more
    # than the 40 ms burst window behind, so the lag cannot grow
    assert midi.schedule(midi.sort_events(allev)).max_lag < 0.045
    path = tmp_path / "a.mid"
    perf.write_midi_file(path, allev)
    back = midi.read_midi_events(path)
    assert len(back) == len(allev)
    traj = perf.level_trajectories(back, frames, fr, 0.5)
    for ln in lanes:
        ok = np.isfinite(ln.sent)
        np.testing.assert_array_equal(traj[ln.name][ok], ln.sent[ok])  # what was sent is what reads back
    # with a generous budget the only error left is rounding to whole levels
    budget = perf.WireBudget(frames + 200, fr, 3125 * 20)
    perf.thin_lanes(lanes[:1], budget, times)
    assert np.max(np.abs(lanes[0].sent - wanted[0])) <= 1.0


def test_a_target_the_dx7_cannot_draw_still_gets_the_best_valid_settings():
    from dx7tools import params
    from dx7tools.fit_envelope import _RANGES

    t = np.arange(400)
    tremolo = np.where((t // 25) % 2 == 0, 0.8, 0.01)  # 10 Hz on/off: no EG draws that
    fit = fit_operator([NoteTarget(60, 100, 1.0, tremolo)])
    assert fit.rms_db > 6.0  # reported as a poor fit by the exporter (ddx7.export.POOR_FIT_DB)
    for key, value in fit.values.items():
        lo, hi = _RANGES.get(key, (0, params.BY_KEY[f"op1_{key}"].max))
        assert lo <= value <= hi
    apply_fits(Voice.init(), [fit] * 6)  # a valid voice


def test_refit_on_a_phrase_recovers_levels_a_held_note_fit_gets_wrong():
    """A phrase's notes -- each its own pitch, velocity and length, legato ones cut at the next
    note-on -- drawn by known settings; refitting from settings 20 dB too quiet with the wrong EG
    comes back within a dB or two, and is never worse than where it started."""
    from dx7tools.fit_envelope import refit_operator

    truth = {**_defaults(), "output_level": 88, "eg_rate_1": 75, "eg_rate_2": 40, "eg_rate_3": 35, "eg_rate_4": 60,
             "eg_level_2": 90, "eg_level_3": 84, "velocity_sensitivity": 4}
    phrase = [(62, 70, 0.6, 0.7), (64, 110, 0.3, 0.3), (67, 95, 1.2, 1.5), (60, 40, 0.4, 0.45), (65, 127, 0.8, 1.0)]
    targets = []
    for note, vel, held, until_next in phrase:
        frames = int(until_next * 250)
        amp = render_target(truth, NoteTarget(note, vel, held, np.zeros(frames)))
        targets.append(NoteTarget(note, vel, held, amp))
    wrong = {**truth, "output_level": 61, "eg_level_3": 50, "eg_rate_1": 30, "velocity_sensitivity": 0}
    fit = refit_operator(targets, wrong)
    assert wrong["output_level"] == 61  # the start is not changed in place
    from dx7tools.fit_envelope import _Cost
    peak = max(float(np.max(t.amplitude)) for t in targets)
    before = _Cost(targets, peak * 1e-3)({**_defaults(), **wrong})
    assert before > 10 and fit.rms_db < 1.5 and fit.rms_db <= before
    assert abs(fit.values["output_level"] - 88) <= 3 and abs(fit.values["velocity_sensitivity"] - 4) <= 1


def test_octave_slips_of_the_tracker_are_undone_and_an_octave_leap_is_kept():
    f0 = np.full(400, 220.0)
    f0[100:115] = 440.0          # a 60 ms slip up an octave
    f0[150:160] = 55.0           # two octaves down, 40 ms
    f0[250:] = 440.0             # the player leaps an octave and stays
    f0[300:310] = 0.0            # unvoiced frames stay unvoiced
    fixed = perf.octave_errors_fixed(f0)
    assert np.allclose(fixed[:250], 220.0)
    assert np.allclose(fixed[250:300], 440.0) and np.all(fixed[300:310] == 0) and np.allclose(fixed[310:], 440.0)
    loud = np.zeros(400)
    # the slips no longer make notes of their own
    assert len(perf.segment_attacks(f0, loud)) == 7 and len(perf.segment_attacks(fixed, loud)) == 3  # leap, gap
