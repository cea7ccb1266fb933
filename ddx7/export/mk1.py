"""The performance a DX7 Mark I can play: nothing it ignores, nothing it stutters on.

A Mark I takes a voice's output levels and EGs at note-on (notes already sounding keep theirs:
Dexed issue 106, its author's test on a Mark I) and may stutter on parameter SysEx while notes
sound (MiniDexed issue 80). What it follows live is pitch bend and the performance controllers.
So this stream (:func:`plan_mk1`) carries:

* **set-up**: the voice as a single-voice dump -- refitted on the phrase's own notes
  (:func:`phrase_voice`), with each operator's AMP MOD SENSITIVITY and output level fitted for the
  controller lane (:mod:`ddx7.export.lanes`) and no LFO amplitude depth -- then function parameter
  changes: pitch-bend range :data:`BEND_RANGE` (12 semitones) and the lane's controller (breath,
  CC 2, by default) at range 99 assigned to EG bias;
* **notes where the sound re-attacks** (:func:`dx7tools.performance.segment_attacks`): a legato
  line is one note whose pitch the bend carries, so the DX7's EGs attack only where the
  recording does; velocity from the loudness of each note's first 40 ms;
* **pitch bend** per frame, thinned; the vibrato in the bends or in the voice's LFO, whichever
  the engine plays closer to the model (:func:`vibrato`);
* **the controller lane**: the phrase's dynamics and brightness through EG bias;
* **output-level edits in silent gaps** only (:func:`gap_edits`), when they measure better.

Every choice (voice, lane, gap edits, vibrato) is made by playing the candidate streams on the
DX7 engine (:class:`ddx7.synth.dx7.DX7`, Mark I receiver) against the model's own render.
No voice parameter change is sent while a note sounds. The ``dexed`` target adds live output
levels (:func:`_live_levels`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dx7tools import performance as perf
from dx7tools.audio import FRAME_RATE
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
VIBRATO_SMOOTH_SECONDS = 0.4
"""The slow pitch a phrase keeps in its bends when the vibrato goes to the LFO (:func:`vibrato`)."""
GAP_EDIT_LEAD = 0.02
"""Seconds before a note-on at which the voice edits of a silent gap are sent (:func:`gap_edits`)."""
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


@dataclass
class Mk1Choice:
    """What :func:`choose_mk1` kept for one phrase: the stream's fixed part and the voice and lane
    closest to the model, with every candidate's distance (dB)."""

    phrase: object
    mandatory: list
    name: str
    fit: lane_fit.LaneFit
    voice: Voice
    base: Voice
    voice_amp: np.ndarray
    distances: dict
    options: dict
    model_audio: np.ndarray


def choose_mk1(run, voice_export: VoiceExport, f0_hz, loudness_db, *, channel: int = 1, budget: float = 3000.0,
               controller: str = "breath", source: str | None = None) -> Mk1Choice:
    """Notes, velocities and bends of the phrase; the held-note and the phrase-fitted voice
    (:func:`phrase_voice`), each with the lane fitted four ways (:func:`_lane_candidates`); the
    candidate whose stream the DX7 engine plays closest to the model's dry render.

    Raises:
        DX7Error: no voiced frames or no notes; notes and bends alone over ``budget``; unknown
            ``controller``.
    """
    from ddx7.export.performance import bend_events, note_events, phrase, wanted_output_levels

    if controller not in CONTROLLERS:
        raise DX7Error(f"unknown controller {controller!r}; choose one of {', '.join(CONTROLLERS)}")
    run = ddx7_run(run)
    ph = phrase(run, voice_export, f0_hz, loudness_db,
                lambda f0, loud: perf.segment_attacks(f0, loud, bend_range=BEND_RANGE), "40 ms", source)
    held = voice_export.voice.replace(**{f"op{k}_amp_mod_sensitivity": 0 for k in range(1, 7)}, lfo_amp_mod_depth=0,
                                      lfo_pitch_mod_depth=0)  # the bends carry the vibrato
    mandatory = note_events(ph.notes, ph.velocities, ph.times, channel) + bend_events(
        ph.notes, perf.midi_pitch(ph.f0), ph.times, channel, BEND_RANGE)
    options = dict(controller=controller, channel=channel, budget=budget)
    model_audio = _model_audio(run, ph.f0, ph.loudness)
    tried = {}
    for voice_name, base in (("held notes", held), ("phrase", phrase_voice(held, ph))):
        _, voice_amp = wanted_output_levels(base, ph.notes, ph.velocities, ph.wanted_amp)
        for lane_name, (operators, levels) in _lane_candidates(base, voice_name == "phrase").items():
            fit = lane_fit.fit_lane(voice_amp, ph.wanted_amp, [base[f"op{k}_output_level"] for k in range(1, 7)],
                                    operators=operators, levels=levels)
            voice = mk1_voice(base, fit)
            events, _ = _stream(voice, fit, mandatory, ph.times, **options)
            tried[f"{voice_name}, lane on {lane_name}"] = (_distance_to_model(voice, events, model_audio), fit,
                                                          voice, base, voice_amp)
    kept = min(tried, key=lambda k: tried[k][0])
    _, fit, voice, base, voice_amp = tried[kept]
    return Mk1Choice(ph, mandatory, kept, fit, voice, base, voice_amp,
                     {k: round(v[0], 3) for k, v in tried.items()}, options, model_audio)


def plan_mk1(run, voice_export: VoiceExport, f0_hz, loudness_db, *, channel: int = 1, budget: float = 3000.0,
             controller: str = "breath", source: str | None = None, live_levels: bool = False,
             choice: Mk1Choice | None = None):
    """The Mark I stream (module notes) as a :class:`ddx7.export.performance.PerformancePlan`.

    With ``live_levels`` (the ``dexed`` target) the same stream also carries each sounding
    operator's OUTPUT LEVEL as parameter changes while notes sound, computed on top of the voice
    and its lane (:func:`ddx7.export.lanes.live_output_levels`): only Dexed follows them.
    ``choice``: :func:`choose_mk1`'s, when already made for the same phrase (its channel, budget and
    controller are then the ones used; ``f0_hz``, ``loudness_db`` and the options here are not).

    Raises:
        DX7Error: as :func:`choose_mk1`.
    """
    from ddx7.export.performance import LEAD_IN_SECONDS, PerformancePlan, stream_figures

    run = ddx7_run(run)
    c = choice or choose_mk1(run, voice_export, f0_hz, loudness_db, channel=channel, budget=budget,
                             controller=controller, source=source)
    ph, fit, voice = c.phrase, c.fit, c.voice
    events, lanes = _stream(voice, fit, c.mandatory, ph.times, **c.options)
    events, lanes, voice, edits, gaps = _with_gap_edits(c, events, lanes)
    distance = gaps["distance_to_model_db"]["with"] if gaps["sent"] else c.distances[c.name]
    events, lanes, voice, mandatory, vibrato_figures = _with_lfo_vibrato(c, events, lanes, voice, edits, distance)
    live = None
    if live_levels:
        events, lanes, live = _live_levels(c, voice, mandatory, events, lanes)
        if live["sent"]:  # the live levels replace the gap edits
            gaps = {**gaps, "sent": False, "replaced_by_live_levels": True}
    uses_lane = np.any(fit.ams > 0)
    stream = stream_figures(events, lanes, ph.times, c.options["budget"])
    if uses_lane:
        ok = np.isfinite(lanes[0].sent) & np.isfinite(lanes[0].wanted)
        stream["lane_rms_values"] = round(float(np.sqrt(np.mean((lanes[0].sent - lanes[0].wanted)[ok] ** 2))), 3) \
            if ok.any() else 0.0
    controller = c.options["controller"]
    sidecar = {"voice": voice.name, "run": run.record.get("name"), "channel": c.options["channel"],
               "target": "dexed" if live_levels else "mk1",
               "lead_in_seconds": LEAD_IN_SECONDS, "notes": len(ph.notes),
               "velocity_loudness_range_db": list(voice_export.stats.loudness_range),
               "controllers": {"pitch_bend_range_semitones": BEND_RANGE,
                               "dx7_parameter_changes": _parameter_changes(lanes, gaps, edits),
                               "lane": ({"controller": controller, "cc": CONTROLLERS[controller][0],
                                         "function": f"{CONTROLLERS[controller][1]} range {lane_fit.RANGE}, "
                                                     "assign EG BIAS",
                                         "amp_mod_sensitivity": [int(a) for a in fit.ams],
                                         "output_level_shift": [int(s) for s in fit.level_shift]}
                                        if uses_lane else None)},
               "cc_map": {str(CONTROLLERS[controller][0] or "aftertouch"): "dynamics and brightness (EG bias)"}
               if uses_lane else {},
               "level_fit": {"rms_db_voice_alone": fit.rms_db_before, "rms_db_with_lane": fit.rms_db_after,
                             "lane_on": c.name, "distance_to_model_db": c.distances},
               "stream": stream}
    sidecar["gap_edits"] = gaps
    sidecar["vibrato"] = vibrato_figures
    if not gaps["gaps"]:
        sidecar["warnings"] = ["the phrase never leaves a silent gap before a note-on, so no voice edits "
                               "could be sent between notes: the controller lane does the work"]
    if live is not None:
        sidecar["live_levels"] = live
    return PerformancePlan(events, ph.times, lanes, sidecar)


def _silent_after(voice: Voice, held_seconds: float) -> float:
    """Seconds from a note-on until every carrier of ``voice`` has ended its release, the key held
    ``held_seconds``; the loudest output level is assumed (the longest release). Infinite if a
    carrier's EG LEVEL 4 is above 0 (it sounds for ever)."""
    from dx7tools.algorithms import get_algorithm
    from dx7tools.envelope import eg_corners

    end = 0.0
    for k in get_algorithm(voice.algorithm).carriers:
        levels = [voice[f"op{k}_eg_level_{i}"] for i in range(1, 5)]
        if voice[f"op{k}_output_level"] == 0:
            continue
        if levels[3] > 0:
            return np.inf
        times, _ = eg_corners([voice[f"op{k}_eg_rate_{i}"] for i in range(1, 5)], levels, held_seconds, outlevel=4288)
        end = max(end, float(times[-1]))
    return end


def gap_edits(c: Mk1Choice, voice: Voice) -> tuple[list[Event], Voice, dict]:
    """Voice edits a Mark I can take: OUTPUT LEVEL parameter changes sent in the phrase's silent
    gaps, :data:`GAP_EDIT_LEAD` s before a note-on and after every earlier note's release has
    ended, so they act from that note on without touching a sounding one.

    The gaps cut the phrase into sections; each operator's level for a section is the median over
    its frames of the level the model asks through the lane (:func:`ddx7.export.lanes.live_output_levels`).
    The first section's levels go into the voice itself.

    Returns:
        ``(events, voice, figures)``: the parameter changes, ``voice`` with the first section's
        levels, and ``{"gaps", "edits"}``.
    """
    from dx7tools.midi import parameter_change

    ph = c.phrase
    levels = lane_fit.live_output_levels(c.voice_amp, ph.wanted_amp, c.fit,
                                         [c.base[f"op{k}_output_level"] for k in range(1, 7)])
    notes, times = ph.notes, ph.times
    silent_from = np.maximum.accumulate([times[n.start] + _silent_after(voice, (n.end - n.start) / FRAME_RATE)
                                         for n in notes])  # when every note so far has ended
    cuts = [i for i in range(1, len(notes)) if silent_from[i - 1] < times[notes[i].start] - GAP_EDIT_LEAD]
    bounds = [0] + cuts + [len(notes)]
    ops = [k for k in range(1, 7) if voice[f"op{k}_output_level"] > 0]
    current = {k: voice[f"op{k}_output_level"] for k in ops}
    events, first = [], {}
    for a, b in zip(bounds[:-1], bounds[1:]):
        frames = slice(notes[a].start, notes[b].start if b < len(notes) else len(times))
        when = round(float(times[notes[a].start]) - GAP_EDIT_LEAD, 6)
        for k in ops:
            column = levels[frames, k - 1]
            if not np.isfinite(column).any():
                continue
            value = int(np.clip(np.rint(np.nanmedian(column)), 0, 99))
            if value == current[k]:
                continue
            current[k] = value
            if a == 0:
                first[f"op{k}_output_level"] = value
            else:
                events.append(Event(when, parameter_change(f"op{k}_output_level", value, c.options["channel"])))
    return events, voice.replace(**first), {"gaps": len(cuts), "edits": len(events)}


def _with_gap_edits(c: Mk1Choice, events: list, lanes: list) -> tuple[list, list, Voice, list, dict]:
    """The stream with :func:`gap_edits` (its voice dump, the edits inside the wire budget) if the
    Mark I engine plays it closer to the model than without, else as it is; the voice, the edits
    kept, and the figures."""
    edits, voice, figures = gap_edits(c, c.voice)
    if not edits and voice == c.voice:
        return events, lanes, c.voice, [], {**figures, "sent": False}
    trial, trial_lanes = _stream(voice, c.fit, c.mandatory + edits, c.phrase.times, **c.options)
    without, with_ = c.distances[c.name], _distance_to_model(voice, trial, c.model_audio)
    figures.update(distance_to_model_db={"with": _finite(with_), "without": without}, sent=bool(with_ < without))
    if with_ < without:
        return trial, trial_lanes, voice, edits, figures
    return events, lanes, c.voice, [], figures


def _finite(distance: float) -> float | None:
    """A distance for JSON: rounded, or None for a stream never kept (it may stutter)."""
    return round(distance, 3) if np.isfinite(distance) else None


def _parameter_changes(lanes: list, gaps: dict, edits: list) -> list[str]:
    """The sidecar's list of what DX7 parameter changes the stream sends: live lanes by name, and
    the gap edits' output levels marked as sent in silent gaps."""
    from dx7tools.midi import parse_parameter_change

    live = [lane.name for lane in lanes if lane.name.startswith("op")]
    gap = sorted({parse_parameter_change(e.data)[0] for e in edits}) if gaps["sent"] else []
    return live + [f"{key} (silent gaps only)" for key in gap]


def vibrato(f0_hz: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The phrase's pitch without its vibrato, and the vibrato as one sine.

    The slow pitch is the pitch's moving median over twice :data:`VIBRATO_SMOOTH_SECONDS` (MIDI;
    steps between notes stay steps) plus a :data:`VIBRATO_SMOOTH_SECONDS` moving mean, applied
    twice, of the pitch's offset from it; the vibrato is what is left: its rate the strongest component between 3 and 9 Hz,
    its depth the amplitude of a sine with the same median absolute value (cents; robust to
    the frames around a step).

    Returns:
        ``(pitch, rate_hz, depth_cents)``: (T,) the slow pitch (MIDI; NaN where unvoiced).
    """
    pitch = perf.midi_pitch(f0_hz)
    voiced = np.isfinite(pitch)
    width = max(1, int(round(VIBRATO_SMOOTH_SECONDS * FRAME_RATE)))
    median = lane_fit.smooth_runs(pitch, 2 * width + 1)  # keeps the steps between notes sharp
    off = np.where(voiced, np.clip(pitch - median, -1, 1), 0.0)
    kernel, count = np.ones(width | 1), np.convolve(voiced * 1.0, np.ones(width | 1), "same")
    with np.errstate(invalid="ignore", divide="ignore"):  # a moving mean twice: a vibrato above 3 Hz leaves < 3 %
        off = np.convolve(np.convolve(off, kernel, "same") / count, kernel, "same") / count
    slow = np.where(voiced, median + off, np.nan)
    rest = np.where(voiced, pitch - slow, 0.0) * 100  # cents
    if voiced.sum() < 2 * width:
        return slow, 0.0, 0.0
    spectrum = np.abs(np.fft.rfft(rest))
    freqs = np.fft.rfftfreq(len(rest), 1 / FRAME_RATE)
    band = (freqs >= 3) & (freqs <= 9)
    rate = float(freqs[band][np.argmax(spectrum[band])]) if band.any() else 0.0
    # a sine of amplitude A has median |value| A sin(pi/4): robust to the frames around a step
    return slow, rate, float(np.median(np.abs(rest[voiced])) / np.sin(np.pi / 4))


def lfo_vibrato_voice(voice: Voice, rate_hz: float, depth_cents: float) -> Voice:
    """``voice`` with a sine LFO (key sync, no delay) at the LFO SPEED nearest ``rate_hz`` and the
    PITCH MOD SENSITIVITY / DEPTH pair nearest ``depth_cents`` (the sine's amplitude, cents)."""
    from dx7tools.modulation import PITCH_MOD_SENSITIVITY, WAVES, lfo_hz, pmd_share

    speed = min(range(100), key=lambda v: abs(lfo_hz(v) - rate_hz))
    pms, pmd = min(((s, d) for s in range(1, 8) for d in range(100)),
                   key=lambda sd: abs(1200 * pmd_share(sd[1]) * PITCH_MOD_SENSITIVITY[sd[0]] - depth_cents))
    return voice.replace(lfo_speed=speed, lfo_delay=0, lfo_pitch_mod_depth=pmd, lfo_key_sync=1,
                         lfo_waveform=WAVES.index("sine"), pitch_mod_sensitivity=pms)


def _with_lfo_vibrato(c: Mk1Choice, events: list, lanes: list, voice: Voice, edits: list, without: float):
    """The stream with the vibrato in the voice's LFO and the bends following only the slow pitch,
    if the Mark I engine plays it closer to the model than with the vibrato in the bends (the
    stream so far, ``without`` dB from the model); returns ``(events, lanes, voice, notes and
    bends, figures)`` (``in``: bend or lfo, the vibrato found, both distances)."""
    from ddx7.export.performance import bend_events, note_events

    ph = c.phrase
    slow, rate, depth = vibrato(ph.f0)
    figures = {"rate_hz": round(rate, 2), "depth_cents": round(depth, 1), "in": "bend"}
    if rate <= 0 or depth < 1:
        return events, lanes, voice, c.mandatory, figures
    lfo_voice = lfo_vibrato_voice(voice, rate, depth)
    channel = c.options["channel"]
    mandatory = note_events(ph.notes, ph.velocities, ph.times, channel) + bend_events(
        ph.notes, slow, ph.times, channel, BEND_RANGE)
    trial, trial_lanes = _stream(lfo_voice, c.fit, mandatory + edits, ph.times, **c.options)
    with_ = _distance_to_model(lfo_voice, trial, c.model_audio)
    figures["distance_to_model_db"] = {"lfo": _finite(with_), "bend": round(without, 3)}
    if with_ < without:
        return trial, trial_lanes, lfo_voice, mandatory, {**figures, "in": "lfo"}
    return events, lanes, voice, c.mandatory, figures


def _live_levels(c: Mk1Choice, voice: Voice, mandatory: list, events: list, lanes: list) -> tuple[list, list, dict]:
    """The mk1 stream (``events`` with ``voice``; its notes and bends ``mandatory``) with live
    OUTPUT LEVEL changes in place of any gap edits, if the Dexed receiver plays it closer to the
    model than the mk1 stream, else the mk1 stream as it is; and what was measured.

    Dexed re-aims a held note's EG at its (new) sustain level at rate 3 on each live edit
    (docs/engine.md), which can cut short the attack and decay the voice was fitted for: so
    whether the changes help is measured, not assumed.
    """
    levels = lane_fit.live_output_levels(c.voice_amp, c.phrase.wanted_amp, c.fit,
                                         [c.base[f"op{k}_output_level"] for k in range(1, 7)])
    with_levels = _stream(voice, c.fit, mandatory, c.phrase.times, output_levels=levels, **c.options)
    without = _distance_to_model(voice, events, c.model_audio, "dexed")
    with_ = _distance_to_model(voice, with_levels[0], c.model_audio, "dexed")
    figures = {"distance_to_model_db": {"with": _finite(with_), "without": _finite(without)},
               "sent": bool(with_ < without)}
    return (*with_levels, figures) if with_ < without else (events, lanes, figures)


def plan_mk1_and_dexed(run, voice_export: VoiceExport, f0_hz, loudness_db, **options) -> dict:
    """``{"mk1": plan, "dexed": plan}`` from one :func:`choose_mk1` (``options``: its keywords):
    the dexed stream is the mk1 stream plus the live output levels."""
    choice = choose_mk1(run, voice_export, f0_hz, loudness_db, **options)
    return {target: plan_mk1(run, voice_export, None, None, live_levels=target == "dexed", choice=choice)
            for target in ("mk1", "dexed")}


def phrase_voice(voice: Voice, ph) -> Voice:
    """``voice`` with each sounding operator's output level, EG, velocity sensitivity and keyboard
    level scaling refitted (:func:`dx7tools.fit_envelope.refit_operator`) to the model's levels on
    the phrase's own notes -- each note's frames from its note-on to the next note-on (its release
    included), at its pitch, velocity and length.

    The held-note voice is fitted on synthetic notes the model never heard in training; on real
    phrases its levels were measured 15-34 dB below what the model asks (violin, operator medians),
    and refitted on the phrase within 1-3 dB.
    """
    from dx7tools.fit_envelope import FITTED_KEYS, NoteTarget, OperatorFit, apply_fits, refit_operator

    ends = [n.start for n in ph.notes[1:]] + [len(ph.f0)]
    fits = []
    for k in range(1, 7):
        if voice[f"op{k}_output_level"] == 0:
            fits.append(OperatorFit({"output_level": 0}, 0.0))
            continue
        targets = [NoteTarget(int(n.pitch), int(vel), (n.end - n.start) / FRAME_RATE,
                              ph.wanted_amp[n.start:max(end, n.end + 1), k - 1].copy())
                   for n, vel, end in zip(ph.notes, ph.velocities, ends)]
        fits.append(refit_operator(targets, {key: voice[f"op{k}_{key}"] for key in FITTED_KEYS}))
    return apply_fits(voice, fits)


def _lane_candidates(voice: Voice, every: bool = True) -> dict:
    """What the lane fit may change, by name: ``(operators whose AMS may change (None: all),
    whether operators at AMS 0 may move their output level)``. The lane on the carriers shapes the
    dynamics; on every operator also the brightness; with levels, the voice's static balance
    follows the phrase. Which plays closer to the model differs by run (measured: a 37-step violin
    model kept the carriers alone, 8.6 dB against 9.6 for all operators), so all are tried
    (``every``), else only the first. The held-note voice gets only the first: with the phrase
    voice beside it, its other three were never kept and cost an engine render each."""
    from dx7tools.algorithms import get_algorithm

    carriers = set(get_algorithm(voice.algorithm).carriers)
    ways = {"carriers": (carriers, False), "carriers and levels": (carriers, True),
            "all operators": (None, False), "all operators and levels": (None, True)}
    return ways if every else dict(list(ways.items())[:1])


def _stream(voice: Voice, fit, mandatory: list, times, *, controller: str, channel: int, budget: float,
            output_levels: np.ndarray | None = None):
    """The whole event list (set-up, notes, bends, the thinned lanes) and the lanes, or a DX7Error
    when the notes and bends alone exceed ``budget``. ``output_levels`` (T, 6): also a live
    OUTPUT LEVEL lane per sounding operator (Dexed only)."""
    from dx7tools.midi import sort_events

    from ddx7.export.performance import automation_lanes, wire_budget

    fixed = setup_events(voice, controller, channel) + mandatory
    wire = wire_budget(fixed, len(times), budget)
    lanes = [perf.Lane(controller, fit.lane, lane_message(controller, channel), 0, 127, LANE_STEP, LANE_WEIGHT)] \
        if np.any(fit.ams > 0) else []
    initial = {}
    if output_levels is not None:
        ops = [k for k in range(1, 7) if voice[f"op{k}_output_level"] > 0]
        lanes += automation_lanes(voice, output_levels, None, ops, channel, False)
        initial = {f"op{k}_output_level": voice[f"op{k}_output_level"] for k in range(1, 7)}
    return sort_events(fixed + perf.thin_lanes(lanes, wire, times, initial)), lanes


def _model_audio(run, f0: np.ndarray, loud: np.ndarray) -> np.ndarray:
    """The model's dry render of the phrase (its synth without the reverb a DX7 does not have)."""
    model = run.model()
    with torch.no_grad():
        f0_t, loud_t = torch.from_numpy(f0).float()[None], torch.from_numpy(loud).float()[None]
        return model.synth(f0_t, model.controls(f0_t, loud_t))[0].double().numpy()


def _distance_to_model(voice: Voice, events: list, model_audio: np.ndarray, receiver: str = "mk1") -> float:
    """How far the DX7 engine (``receiver``) playing ``events`` is from the model's render
    (multi-resolution dB); infinite if a voice change arrives while a note sounds on a Mark I."""
    from dx7tools.audio import SAMPLE_RATE

    from ddx7.evaluate.e2e import multires_distance_db
    from ddx7.export.performance import LEAD_IN_SECONDS
    from ddx7.synth.dx7 import DX7

    engine = DX7(voice, sample_rate=SAMPLE_RATE, receiver=receiver)
    audio = engine.render(events, tail=0.5)
    start = int(round(LEAD_IN_SECONDS * SAMPLE_RATE))
    distance = multires_distance_db(audio[start: start + len(model_audio)].astype(np.float64), model_audio)
    return distance + (np.inf if engine.summary["stutter_prone"] else 0.0)  # never keep what may stutter
