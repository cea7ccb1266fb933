"""Function parameters (one table) and text phrases: parsing, validation, messages, docs."""

from pathlib import Path

import numpy as np
import pytest

from dx7tools import function as fn
from dx7tools import midi
from dx7tools.errors import DX7Error
from dx7tools.phrase import note_number, parse_steps, phrase_events


def test_docs_hold_the_generated_function_table():
    assert fn.markdown_table() in (Path(__file__).parent.parent / "docs" / "engine.md").read_text()


def test_every_function_parameter_round_trips_through_its_sysex_message():
    assert [p.number for p in fn.FUNCTION_TABLE] == list(range(64, 78))  # DX7 manual: group 2, 64-77
    for p in fn.FUNCTION_TABLE:
        message = midi.function_parameter_change(p.key, p.max, channel=3)
        assert message[2] == 0x12 and midi.parse_function_change(message) == (p.key, p.max)
        assert midi.parse_parameter_change(message) is None  # not a voice parameter


@pytest.mark.parametrize("items, problem", [
    (["pitch_bend_range=13"], "must be 0-12"), (["foo=1"], "unknown function parameter 'foo'"),
    (["pitch_bend_range"], "KEY=VALUE"), (["mono_poly=yes"], "whole number"), (["mono_poly=-1"], "must be 0-1"),
])
def test_bad_function_assignments_are_one_clear_error(items, problem):
    with pytest.raises(DX7Error, match=problem):
        fn.parse_assignments(items)


def test_settings_fill_in_the_defaults():
    s = fn.settings({"pitch_bend_range": 12}, breath_control_assign=4)
    assert s["pitch_bend_range"] == 12 and s["breath_control_assign"] == 4 and s["mono_poly"] == 0
    assert set(s) == set(fn.BY_KEY)


def test_note_names_and_steps():
    assert [note_number(n) for n in ("C4", "A4", "F#3", "Bb5", "C-1", "127")] == [60, 69, 54, 82, 0, 127]
    assert parse_steps("60:100:1.0 C5+E5+G5:90 64") == [([60], 100, 1.0), ([72, 76, 79], 90, 0.5), ([64], 100, 0.5)]
    for bad in ("H5", "60:0", "60:100:0", "60:1:2:3", "128", "", "\u00b2"):
        with pytest.raises(DX7Error):
            parse_steps(bad)


def test_a_phrase_with_a_sweep_is_time_ordered_with_note_offs_first():
    events = phrase_events("60:100:0.5 62:100:0.5", sweep="breath")
    assert [e.time for e in events] == sorted(e.time for e in events)
    at_half = [e.data[0] & 0xF0 for e in events if e.time == 0.5]
    assert at_half[0] == 0x80 and 0x90 in at_half
    sweep = [e.data[2] for e in events if e.data[0] == 0xB0]
    assert len(sweep) == 64 and sweep[0] == 0 and sweep[-1] == 127 and sweep == sorted(sweep)
    with pytest.raises(DX7Error, match="unknown sweep"):
        phrase_events("60", sweep="volume")


def test_attack_segmentation_never_leaves_a_fragment():
    from dx7tools.performance import segment_attacks

    # a re-attack at frame 50, then the pitch leaves the bend's reach a few frames later
    f0 = np.full(200, 220.0)
    f0[56:] = 220.0 * 2 ** (13 / 12)
    loud = np.full(200, -20.0)
    loud[44:50] = -30.0
    for min_frames in (10, 20):
        notes = segment_attacks(f0, loud, bend_range=12, min_frames=min_frames)
        assert notes and all(n.end - n.start >= min_frames for n in notes), notes
        assert all(a.end <= b.start for a, b in zip(notes, notes[1:]))
