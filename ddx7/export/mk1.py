"""The performance a DX7 Mark I can play: nothing it ignores, nothing it stutters on.

A Mark I takes a voice's output levels and EGs at note-on (notes already sounding keep theirs:
Dexed issue 106, its author's test on a Mark I) and may stutter on parameter SysEx while notes
sound (MiniDexed issue 80). What it follows live is pitch bend and the performance controllers.
So this stream (:func:`plan_mk1`) carries:

* **set-up**: the voice as a single-voice dump -- the exported voice with each operator's AMP
  MOD SENSITIVITY and output level refitted for the controller lane (:mod:`ddx7.export.lanes`)
  and no LFO amplitude depth -- then function parameter changes: pitch-bend range
  :data:`BEND_RANGE` (12 semitones) and the lane's controller (breath, CC 2, by default) at range
  99 assigned to EG bias;
* **notes where the sound re-attacks** (:func:`dx7tools.performance.segment_attacks`): a legato
  line is one note whose pitch the bend carries, so the DX7's EGs attack only where the
  recording does; velocity from the loudness of each note's first 40 ms;
* **pitch bend** per frame, thinned (vibrato included: the bend lane follows f0 every 20 ms);
* **the controller lane**: the phrase's dynamics and brightness through EG bias.

No voice parameter changes are sent while a note sounds.
"""

from __future__ import annotations

import numpy as np
import torch

from dx7tools import performance as perf
from dx7tools.errors import DX7Error
from dx7tools.function import ASSIGN_EG_BIAS
from dx7tools.midi import Event
from dx7tools.voice import Voice

from ddx7.export import lanes as lane_fit
from ddx7.export.voice import VoiceExport, ddx7_run

BEND_RANGE = 12
"""Semitones at full bend: a legato line's pitch changes within a note are bends."""
CONTROLLERS = {"breath": (2, "breath_control"), "foot": (4, "foot_control"), "mod_wheel": (1, "mod_wheel"),
               "aftertouch": (None, "aftertouch")}
"""Lane controllers: MIDI CC number (None: channel aftertouch) and their function parameters' prefix."""
LANE_STEP, LANE_WEIGHT = 1.0, 0.4   # a lane value worth a message, and its priority per value (dB-ish)


def lane_message(controller: str, channel: int):
    """value -> raw MIDI bytes of ``controller``'s lane."""
    cc, _ = CONTROLLERS[controller]
    ch = channel - 1
    if cc is None:
        return lambda v: bytes([0xD0 | ch, v])
    return lambda v: bytes([0xB0 | ch, cc, v])


def mk1_voice(voice: Voice, fit: lane_fit.LaneFit) -> Voice:
    """``voice`` with the lane fit's AMS and output levels, and no LFO amplitude modulation."""
    changes = {"lfo_amp_mod_depth": 0}
    for k in range(1, 7):
        changes[f"op{k}_amp_mod_sensitivity"] = int(fit.ams[k - 1])
        changes[f"op{k}_output_level"] = int(np.clip(voice[f"op{k}_output_level"] + fit.level_shift[k - 1], 0, 99))
    return voice.replace(**changes)


def setup_events(voice: Voice, controller: str, channel: int) -> list[Event]:
    """The voice dump at 0 s, then bend range and the lane controller's range and assign."""
    from dx7tools.midi import function_parameter_change
    from dx7tools.sysex import vced_message

    from ddx7.export.performance import SETUP_GAP_SECONDS, SETUP_SECONDS

    prefix = CONTROLLERS[controller][1]
    changes = [("pitch_bend_range", BEND_RANGE), ("pitch_bend_step", 0), (f"{prefix}_range", lane_fit.RANGE),
               (f"{prefix}_assign", ASSIGN_EG_BIAS)]
    return [Event(0.0, vced_message(voice, channel))] + [
        Event(round(SETUP_SECONDS + i * SETUP_GAP_SECONDS, 6), function_parameter_change(name, value, channel))
        for i, (name, value) in enumerate(changes)]


def plan_mk1(run, voice_export: VoiceExport, f0_hz, loudness_db, *, channel: int = 1, budget: float = 3000.0,
             controller: str = "breath", source: str | None = None):
    """The Mark I stream (module notes) as a :class:`ddx7.export.performance.PerformancePlan`.

    Raises:
        DX7Error: no voiced frames or no notes; notes and bends alone over ``budget``; unknown
            ``controller``.
    """
    from ddx7.export.performance import (LEAD_IN_SECONDS, PerformancePlan, bend_events, note_events, phrase,
                                         stream_figures, wanted_output_levels)

    if controller not in CONTROLLERS:
        raise DX7Error(f"unknown controller {controller!r}; choose one of {', '.join(CONTROLLERS)}")
    run = ddx7_run(run)
    ph = phrase(run, voice_export, f0_hz, loudness_db,
                lambda f0, loud: perf.segment_attacks(f0, loud, bend_range=BEND_RANGE), "40 ms", source)
    f0, loud, notes, velocities = ph.f0, ph.loudness, ph.notes, ph.velocities
    wanted_amp, times = ph.wanted_amp, ph.times

    base = voice_export.voice.replace(**{f"op{k}_amp_mod_sensitivity": 0 for k in range(1, 7)}, lfo_amp_mod_depth=0)
    _, voice_amp = wanted_output_levels(base, notes, velocities, wanted_amp)
    mandatory = note_events(notes, velocities, times, channel) + bend_events(notes, perf.midi_pitch(f0), times,
                                                                              channel, BEND_RANGE)
    model_audio = _model_audio(run, f0, loud)
    tried = {}
    for name, (operators, levels) in _lane_candidates(base).items():
        fit = lane_fit.fit_lane(voice_amp, wanted_amp, [base[f"op{k}_output_level"] for k in range(1, 7)],
                                operators=operators, levels=levels)
        voice = mk1_voice(base, fit)
        events, lanes = _stream(voice, fit, mandatory, controller, channel, budget, times, len(f0))
        tried[name] = (_distance_to_model(voice, events, model_audio), fit, voice, events, lanes)
    kept = min(tried, key=lambda k: tried[k][0])
    _, fit, voice, events, lanes = tried[kept]
    uses_lane = bool(lanes)
    stream = stream_figures(events, lanes, times, budget)
    if lanes:
        ok = np.isfinite(lanes[0].sent) & np.isfinite(lanes[0].wanted)
        stream["lane_rms_values"] = round(float(np.sqrt(np.mean((lanes[0].sent - lanes[0].wanted)[ok] ** 2))), 3) \
            if ok.any() else 0.0
    sidecar = {"voice": voice.name, "run": run.record.get("name"), "channel": channel, "target": "mk1",
               "lead_in_seconds": LEAD_IN_SECONDS, "notes": len(notes),
               "velocity_loudness_range_db": list(voice_export.stats.loudness_range),
               "controllers": {"pitch_bend_range_semitones": BEND_RANGE, "dx7_parameter_changes": [],
                               "lane": ({"controller": controller, "cc": CONTROLLERS[controller][0],
                                         "function": f"{CONTROLLERS[controller][1]} range {lane_fit.RANGE}, "
                                                     "assign EG BIAS",
                                         "amp_mod_sensitivity": [int(a) for a in fit.ams],
                                         "output_level_shift": [int(s) for s in fit.level_shift]}
                                        if uses_lane else None)},
               "cc_map": {str(CONTROLLERS[controller][0] or "aftertouch"): "dynamics and brightness (EG bias)"}
               if uses_lane else {},
               "level_fit": {"rms_db_voice_alone": fit.rms_db_before, "rms_db_with_lane": fit.rms_db_after,
                             "lane_on": kept, "distance_to_model_db": {k: round(v[0], 3) for k, v in tried.items()}},
               "stream": stream}
    return PerformancePlan(events, times, lanes, sidecar)


def _lane_candidates(voice: Voice) -> dict:
    """What the lane fit may change, by name: ``(operators whose AMS may change (None: all),
    whether operators at AMS 0 may move their output level)``. The lane on the carriers shapes the
    dynamics; on every operator also the brightness; with levels, the voice's static balance
    follows the phrase. Which plays closer to the model differs by run (measured: a 37-step violin
    model kept the carriers alone, 8.6 dB against 9.6 for all operators), so all are tried."""
    from dx7tools.algorithms import get_algorithm

    carriers = set(get_algorithm(voice.algorithm).carriers)
    return {"carriers": (carriers, False), "carriers and levels": (carriers, True),
            "all operators": (None, False), "all operators and levels": (None, True)}


def _stream(voice: Voice, fit, mandatory: list, controller: str, channel: int, budget: float, times, frames: int):
    """The whole event list (set-up, notes, bends, the thinned lane) and the lanes, or a DX7Error
    when the notes and bends alone exceed ``budget``."""
    from dx7tools.midi import sort_events

    from ddx7.export.performance import wire_budget

    fixed = setup_events(voice, controller, channel) + mandatory
    wire = wire_budget(fixed, frames, budget)
    lanes = [perf.Lane(controller, fit.lane, lane_message(controller, channel), 0, 127, LANE_STEP, LANE_WEIGHT)] \
        if np.any(fit.ams > 0) else []
    return sort_events(fixed + perf.thin_lanes(lanes, wire, times, {})), lanes


def _model_audio(run, f0: np.ndarray, loud: np.ndarray) -> np.ndarray:
    """The model's dry render of the phrase (its synth without the reverb a DX7 does not have)."""
    model = run.model()
    with torch.no_grad():
        f0_t, loud_t = torch.from_numpy(f0).float()[None], torch.from_numpy(loud).float()[None]
        return model.synth(f0_t, model.controls(f0_t, loud_t))[0].double().numpy()


def _distance_to_model(voice: Voice, events: list, model_audio: np.ndarray) -> float:
    """How far the DX7 engine playing ``events`` is from the model's render (multi-resolution dB)."""
    from dx7tools.audio import SAMPLE_RATE

    from ddx7.evaluate.e2e import multires_distance_db
    from ddx7.export.performance import LEAD_IN_SECONDS
    from ddx7.synth.dx7 import DX7

    audio = DX7(voice, sample_rate=SAMPLE_RATE).render(events, tail=0.5)
    start = int(round(LEAD_IN_SECONDS * SAMPLE_RATE))
    return multires_distance_db(audio[start: start + len(model_audio)].astype(np.float64), model_audio)
