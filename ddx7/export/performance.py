"""A recording as a performance (.mid) played by a run's exported voice.

:func:`export_performance` = :func:`performance_features` (f0 and loudness, as the run's training
computed them) -> :func:`plan_performance` (the stream) -> :func:`write_performance` (the .mid and
its JSON sidecar). The stream, after a lead-in:

* **set-up** (:func:`setup_events`): the exported voice as a single-voice dump, then the function
  parameter changes it relies on (pitch-bend range; with ``breath``, breath control range 99
  assigned to EG bias);
* **notes** (:func:`note_velocities`, :func:`note_events`): from f0 and loudness
  (:func:`dx7tools.performance.segment_notes`); velocity from the loudness of the note's first
  40 ms, with the voice's loudness mapping (:meth:`ddx7.export.voice.CorpusStats.velocity`);
* **pitch bend** (:func:`bend_events`) for the pitch between semitones;
* **levels** (:func:`wanted_output_levels`, :func:`automation_lanes`): the model's per-frame
  operator amplitudes as DX7 OUTPUT LEVEL parameter changes. The level wanted at frame t is the
  model's amplitude divided by the voice's own EG gain for that note
  (``amplitude_to_output_level(m(t) / g(t))``), since the DX7 multiplies the two. With ``breath``
  the modulators get AMP MOD SENSITIVITY 3 and follow one breath-controller (CC 2) brightness
  lane instead; with ``cc_lanes`` every operator's level also goes out on CC 102-107
  (:data:`OPERATOR_CC`). The lanes are thinned (:func:`dx7tools.performance.thin_lanes`) so that
  no one-second window of the whole stream exceeds the byte budget;
* **figures** (:func:`stream_figures`): bytes per second and the level error thinning costs.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dx7tools import performance as perf
from dx7tools.audio import FRAME_RATE, HOP, SAMPLE_RATE
from dx7tools.errors import DX7Error
from dx7tools.levels import STEP_DB
from dx7tools.midi import ASSIGN_EG_BIAS, WIRE_BYTES_PER_SECOND, Event
from dx7tools.voice import Voice

from ddx7.export.voice import CorpusStats, VoiceExport, ddx7_run, export_voice
from ddx7.run import Run

LEAD_IN_SECONDS = 0.5     # the voice dump (52 ms on the wire + the DX7's pause) and set-up before the music
SETUP_SECONDS = 0.2       # the function parameter changes: after the voice dump and the DX7's pause after it
SETUP_GAP_SECONDS = 0.01  # between one function parameter change and the next
BEND_RANGE = 2            # semitones; set on the DX7 by a function parameter change at the start
BEND_STEP = 41            # pitch-bend units worth a new message: 1 cent at +-2 semitones (8192 / 200 = 40.96)
BEND_EVERY_FRAMES = 5     # a changed bend goes out at most every 5 frames (20 ms)
BEND_LEAD_SECONDS = 1e-4  # a note's first bend goes this much before its note-on: the note starts in tune
VELOCITY_FRAMES = 10      # a note's velocity: the loudest of its first 10 frames (40 ms)
EG_GAIN_FLOOR = 1e-4      # the voice's EG gain below this (-80 dB): no output level is wanted there
DB_PER_LEVEL = round(STEP_DB, 3)  # 0.753, STEP_DB (0.7526) rounded as before: a level lane's weight
BREATH_RANGE_DB = 48.0    # CC 2 = 0 means the modulators 48 dB below the voice's own levels
BREATH_AMS = 3            # AMP MOD SENSITIVITY of the modulators that follow the breath lane
BREATH_CONTROL_RANGE = 99
CC_LANE_STEP, CC_LANE_WEIGHT = 2.0, 0.3   # a CC lane: values worth a message, and its priority per value
OPERATOR_CC = (102, 103, 104, 105, 106, 107)
"""Per-operator CC lanes (OP1..OP6 output level, value = level * 127 / 99): CCs 102-107 are
undefined in the MIDI spec, so a soft synth (Dexed: MIDI learn) can map them freely."""
WIRE_BUDGET = 3000.0      # bytes in any one-second window: 96 % of the 3,125 bytes/s wire


def performance_features(run: Run | str | Path, wav) -> tuple[np.ndarray, np.ndarray]:
    """f0 and loudness of a recording, as the run's training computed them.

    Returns:
        ``(f0_hz, loudness_db)``: float arrays (frames,) at 250 frames/s; f0 is 0 where unvoiced.
    """
    from dx7tools.audio import read_audio

    from ddx7.data.features import compute_features
    from ddx7.data.examples import confidence_threshold, voiced_f0

    run = run if isinstance(run, Run) else Run.at(run)
    audio, sr = read_audio(wav)
    if len(audio) == 0:
        raise DX7Error("the audio file is empty", str(wav))
    if sr != SAMPLE_RATE:
        import soxr

        audio = soxr.resample(audio, sr, SAMPLE_RATE).astype(np.float32)
    if not np.all(np.isfinite(audio)):
        raise DX7Error("audio has NaN or infinite samples", str(wav))
    cfg = run.fit_config
    feats = compute_features(audio, SAMPLE_RATE, hop=HOP, tracker=cfg.tracker, crepe_hop=cfg.crepe_hop)
    f0 = voiced_f0(np.asarray(feats["f0_hz"]), np.asarray(feats["confidence"]), confidence_threshold(cfg))
    return f0, np.asarray(feats["loudness_db"], dtype=np.float32)[: len(f0)]


# -- the stages ---------------------------------------------------------------------------------
def performance_voice(voice: Voice, breath: bool) -> tuple[Voice, list[int]]:
    """The voice the file plays and its sounding modulators (operator numbers 1-6).

    With ``breath`` the modulators get :data:`BREATH_AMS` (and the LFO no amplitude depth), so
    that the breath controller, assigned to EG bias, sets how bright the voice is.
    """
    from dx7tools.algorithms import get_algorithm

    carriers = set(get_algorithm(voice.algorithm).carriers)
    modulators = [k for k in range(1, 7) if k not in carriers and voice[f"op{k}_output_level"] > 0]
    if breath:
        voice = voice.replace(**{f"op{k}_amp_mod_sensitivity": BREATH_AMS for k in modulators}, lfo_amp_mod_depth=0)
    return voice, modulators


def setup_events(voice: Voice, channel: int, breath: bool) -> list[Event]:
    """The voice dump at 0 s, then the pitch-bend range (and breath set-up) from :data:`SETUP_SECONDS`."""
    from dx7tools.midi import function_parameter_change
    from dx7tools.sysex import vced_message

    changes = [("pitch_bend_range", BEND_RANGE)]
    if breath:
        changes += [("breath_control_range", BREATH_CONTROL_RANGE), ("breath_control_assign", ASSIGN_EG_BIAS)]
    return [Event(0.0, vced_message(voice, channel))] + [
        Event(round(SETUP_SECONDS + i * SETUP_GAP_SECONDS, 6), function_parameter_change(name, value, channel))
        for i, (name, value) in enumerate(changes)]


def note_velocities(notes: list, loudness_db: np.ndarray, stats: CorpusStats) -> list[int]:
    """Velocity 1-127 per note: the loudest of its first :data:`VELOCITY_FRAMES` frames (dB), mapped."""
    return [int(np.clip(stats.velocity(float(np.max(loudness_db[n.start: min(n.end, n.start + VELOCITY_FRAMES)]))),
                        1, 127)) for n in notes]


def note_events(notes: list, velocities: list[int], times: np.ndarray, channel: int) -> list[Event]:
    """Note-on at each note's first frame, note-off at its end (after the last frame for the last).

    ``times``: (T,) seconds of each frame in the file.
    """
    ch, T = channel - 1, len(times)
    events = []
    for n, vel in zip(notes, velocities):
        off = times[n.end] if n.end < T else times[-1] + 1 / FRAME_RATE
        events += [Event(times[n.start], bytes([0x90 | ch, n.pitch, vel])), Event(off, bytes([0x80 | ch, n.pitch, 0]))]
    return events


def bend_events(notes: list, pitch: np.ndarray, times: np.ndarray, channel: int,
                bend_range: int = BEND_RANGE) -> list[Event]:
    """Pitch bend for each note's pitch between semitones (``bend_range`` semitones at full bend).

    The first bend goes just before the note-on; later ones when the bend moved by
    :data:`BEND_STEP` or more, on every :data:`BEND_EVERY_FRAMES`-th frame of the note.
    ``pitch``: (T,) fractional MIDI pitch per frame; ``times``: (T,) seconds.
    """
    events = []
    for n in notes:
        last = None
        step = max(1, round(BEND_STEP * BEND_RANGE / bend_range))  # 1 cent whatever the range
        for i, b in enumerate(perf.pitch_bend_values(pitch[n.start:n.end], n.pitch, bend_range)):
            if i == 0 or (abs(b - last) >= step and i % BEND_EVERY_FRAMES == 0):
                t = times[n.start + i] - (BEND_LEAD_SECONDS if i == 0 else 0.0)
                events.append(Event(t, perf.pitch_bend_message(b, channel)))
                last = b
    return events


def wanted_output_levels(voice: Voice, notes: list, velocities: list[int], wanted_amp: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The output level each operator needs per frame for the DX7 to sound the model's amplitude.

    Args:
        wanted_amp: (T, 6) the model's amplitude per operator at each frame's start.

    Returns:
        ``(wanted_levels, voice_amp)``: (T, 6) float output levels (NaN between notes, where an
        operator is off, or where the voice's EG gain is under :data:`EG_GAIN_FLOOR`), and the
        amplitude the voice alone gives (EG gain x its own output level; NaN likewise).
    """
    from dx7tools.envelope import eg_levels
    from dx7tools.levels import amplitude_to_output_level, keyboard_level_scaling, output_level_to_amplitude

    wanted_ol = np.full(wanted_amp.shape, np.nan)
    voice_amp = np.full(wanted_amp.shape, np.nan)
    for n, vel in zip(notes, velocities):
        duration = (n.end - n.start) / FRAME_RATE
        for k in range(1, 7):
            op = voice.op(k)
            if op.output_level == 0:
                continue
            kls = keyboard_level_scaling(n.pitch, op.breakpoint, op.left_depth, op.right_depth, op.left_curve,
                                         op.right_curve)
            rates = [voice[f"op{k}_eg_rate_{i}"] for i in range(1, 5)]
            levels = [voice[f"op{k}_eg_level_{i}"] for i in range(1, 5)]
            g = eg_levels(rates, levels, duration, total_seconds=duration, note=n.pitch, output_level=99,
                          velocity=vel, velocity_sensitivity=op.velocity_sensitivity, level_scaling=kls)
            span = slice(n.start, n.start + len(g))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(g > EG_GAIN_FLOOR, wanted_amp[span, k - 1] / np.maximum(g, 1e-12), np.nan)
            ok = np.isfinite(ratio)
            wanted_ol[span, k - 1] = np.where(ok, amplitude_to_output_level(np.where(ok, ratio, 0.0)), np.nan)
            voice_amp[span, k - 1] = g * output_level_to_amplitude(op.output_level)
    return wanted_ol, voice_amp


def breath_values(wanted_amp: np.ndarray, voice_amp: np.ndarray, modulators: list[int]) -> np.ndarray:
    """CC 2 per frame (T,), 0-127 float: how far the model's modulators sit below the voice's own
    levels (dB, mean over ``modulators``), 127 = at them, 0 = :data:`BREATH_RANGE_DB` below; NaN
    between notes."""
    cols = [k - 1 for k in modulators]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = 20 * np.log10(np.maximum(wanted_amp[:, cols], 1e-6) / np.maximum(voice_amp[:, cols], 1e-6))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # frames between notes: all NaN, no brightness
        bright = np.clip(np.nanmean(rel, axis=1), -BREATH_RANGE_DB, 0.0)
    return np.where(np.isfinite(voice_amp[:, cols[0]]), 127 * (1 + bright / BREATH_RANGE_DB), np.nan)


def automation_lanes(voice: Voice, wanted_ol: np.ndarray, breath_cc: np.ndarray | None, sysex_ops: list[int],
                     channel: int, cc_lanes: bool) -> list[perf.Lane]:
    """The lanes to thin: OUTPUT LEVEL parameter changes of ``sysex_ops``, the breath lane (CC 2)
    when ``breath_cc`` (T,) is given, and with ``cc_lanes`` every sounding operator's CC lane.

    ``wanted_ol``: (T, 6) output levels (:func:`wanted_output_levels`).
    """
    from dx7tools.midi import parameter_change

    ch = channel - 1
    lanes = [perf.Lane(f"op{k}_output_level", wanted_ol[:, k - 1],
                       (lambda v, key=f"op{k}_output_level": parameter_change(key, v, channel)), weight=DB_PER_LEVEL)
             for k in sysex_ops]
    if breath_cc is not None:
        lanes.append(perf.Lane("cc2", breath_cc, lambda v: bytes([0xB0 | ch, 2, v]), 0, 127, 1.0,
                               BREATH_RANGE_DB / 127))
    if cc_lanes:
        for k in range(1, 7):
            if voice[f"op{k}_output_level"] > 0:
                lanes.append(perf.Lane(f"cc{OPERATOR_CC[k - 1]}", wanted_ol[:, k - 1] * 127 / 99,
                                       (lambda v, c=OPERATOR_CC[k - 1]: bytes([0xB0 | ch, c, v])), 0, 127,
                                       CC_LANE_STEP, CC_LANE_WEIGHT))
    return lanes


def stream_figures(events: list[Event], lanes: list[perf.Lane], times: np.ndarray, budget: float) -> dict:
    """Bytes per second of the stream and the output-level error of the thinned level lanes.

    Errors are in output levels: ``rms_levels``/``max_levels`` of what is in force (``sent``)
    against what is wanted, ``quantisation_rms_levels`` of whole levels alone; ``level_rms_db``
    converts the RMS at :data:`DB_PER_LEVEL`.
    """
    from dx7tools.midi import max_bytes_per_window

    level_lanes = [ln for ln in lanes if ln.name.startswith("op")]
    sizes = [len(e.data) for e in events]
    total_seconds = float(times[-1] + 1 / FRAME_RATE)
    per_op = {}
    for ln in level_lanes:
        active = np.isfinite(ln.wanted) & np.isfinite(ln.sent)
        if active.any():
            e = np.abs(ln.sent[active] - ln.wanted[active])
            q = np.abs(np.rint(ln.wanted[active]) - ln.wanted[active])
            per_op[ln.name] = {"messages": ln.count, "rms_levels": round(float(np.sqrt(np.mean(e ** 2))), 3),
                               "max_levels": round(float(e.max()), 3),
                               "quantisation_rms_levels": round(float(np.sqrt(np.mean(q ** 2))), 3)}
    rows = list(per_op.values())
    every = np.concatenate([np.abs(ln.sent - ln.wanted)[np.isfinite(ln.sent) & np.isfinite(ln.wanted)]
                            for ln in level_lanes] or [np.zeros(1)])

    def rms_of(key):
        return round(float(np.sqrt(np.mean([r[key] ** 2 for r in rows]))), 3) if rows else 0.0

    stream = {
        "messages": len(events), "bytes": int(sum(sizes)), "seconds": round(total_seconds, 3),
        "mean_bytes_per_second": round(sum(sizes) / total_seconds, 1),
        "max_bytes_in_one_second": int(max_bytes_per_window([e.time for e in events], sizes)),
        "budget_bytes_per_second": budget,
        "parameter_changes": sum(ln.count for ln in level_lanes),
        "level_rms_levels": rms_of("rms_levels"),
        "level_max_levels": max((r["max_levels"] for r in rows), default=0.0),
        "level_p99_levels": round(float(np.percentile(every, 99)), 3),
        "quantisation_rms_levels": rms_of("quantisation_rms_levels"),
        "per_operator": per_op,
    }
    stream["level_rms_db"] = round(stream["level_rms_levels"] * DB_PER_LEVEL, 3)
    return stream


def controllers(voice: Voice, sysex_ops: list[int], modulators: list[int], breath: bool, cc_lanes: bool
                ) -> tuple[dict, dict]:
    """The sidecar's ``controllers`` (what the stream sets and automates) and ``cc_map``."""
    sounding = [k for k in range(1, 7) if voice[f"op{k}_output_level"] > 0]
    used = {"pitch_bend_range_semitones": BEND_RANGE,
            "dx7_parameter_changes": [f"op{k}_output_level" for k in sysex_ops],
            "breath_cc2": ({"operators": modulators, "amp_mod_sensitivity": BREATH_AMS, "range_db": BREATH_RANGE_DB,
                            "function": "breath control range 99, assign EG BIAS"} if breath else None),
            "operator_cc": ({f"op{k}_output_level": OPERATOR_CC[k - 1] for k in sounding} if cc_lanes else None)}
    cc_map = {"2": "breath: modulator brightness (EG bias)" if breath else None,
              **({str(OPERATOR_CC[k - 1]): f"OP{k} output level x 127/99" for k in sounding} if cc_lanes else {})}
    return used, cc_map


# -- shared by every target -------------------------------------------------------------------------
@dataclass
class Phrase:
    """A recording ready to plan, whatever the target.

    Attributes:
        f0, loudness: (T,) the features; notes: the notes found; velocities: one per note.
        wanted_amp: (T, 6) the model's amplitude per operator at each frame's start.
        times: (T,) seconds at which each frame plays in the file (after :data:`LEAD_IN_SECONDS`).
    """

    f0: np.ndarray
    loudness: np.ndarray
    notes: list
    velocities: list
    wanted_amp: np.ndarray
    times: np.ndarray


def phrase(run: Run, voice_export: VoiceExport, f0_hz, loudness_db, segment, shortest: str,
           source: str | None = None) -> Phrase:
    """Notes (``segment(f0, loudness)``), velocities and the model's levels of a recording.

    Raises:
        DX7Error: no voiced frames, or no notes (``shortest``: the segmenter's shortest note).
    """
    f0, loud = perf.octave_errors_fixed(f0_hz), np.asarray(loudness_db)
    if not np.any(f0 > 0):
        raise DX7Error("no voiced frames: nothing to play (is it silence, noise or unpitched?)", source)
    notes = segment(f0, loud)
    if not notes:
        raise DX7Error(f"no notes found: the voiced parts are all shorter than {shortest}", source)
    with torch.no_grad():
        index = run.model().controls(torch.from_numpy(f0)[None], torch.from_numpy(loud)[None])
    amp = index[0].double().numpy() / 2.0  # (T, 6); frame i is reached at the end of frame i ...
    wanted_amp = np.vstack([amp[:1], amp[:-1]])  # ... so the level at frame i's start is frame i - 1's
    times = LEAD_IN_SECONDS + np.arange(len(f0)) / FRAME_RATE
    return Phrase(f0, loud, notes, note_velocities(notes, loud, voice_export.stats), wanted_amp, times)


def wire_budget(mandatory: list[Event], frames: int, budget: float) -> perf.WireBudget:
    """A :class:`dx7tools.performance.WireBudget` holding ``mandatory`` (set-up, notes, bends).

    Raises:
        DX7Error: those alone need more than ``budget`` bytes in one second.
    """
    wire = perf.WireBudget(frames + int(LEAD_IN_SECONDS * FRAME_RATE) + 2, FRAME_RATE, budget)
    for e in mandatory:
        wire.add(e.time, e.data)
    if wire.worst()["bytes per 1 s"] > 1.0:
        raise DX7Error(f"the notes and pitch bends alone need more than {budget:.0f} bytes in one second "
                       f"(raise --budget, at most {WIRE_BYTES_PER_SECOND:.0f})")
    return wire


# -- the whole --------------------------------------------------------------------------------------
@dataclass
class PerformancePlan:
    """A performance ready to write (:func:`plan_performance`).

    Attributes:
        events: the whole stream in time order (seconds from the file's start).
        times: (T,) seconds at which each feature frame plays (after :data:`LEAD_IN_SECONDS`).
        lanes: the automated values, each with ``wanted`` and ``sent`` (the value in force) per frame.
        sidecar: the JSON sidecar's content (voice, controllers, CC map, ``stream`` figures).
    """

    events: list[Event]
    times: np.ndarray
    lanes: list[perf.Lane]
    sidecar: dict


TARGETS = ("mk1", "dexed", "cc")
"""What a performance is written for: ``mk1`` a DX7 Mark I (:mod:`ddx7.export.mk1`: no parameter
changes while notes sound), ``dexed`` live output-level automation that only Dexed follows (this
module), ``cc`` the same plus per-operator CC lanes for soft synths with MIDI learn."""


def resolve_target(target: str | None, breath: bool = False, cc_lanes: bool = False) -> str:
    """The target: ``target`` if given, else what the older flags asked for (``cc_lanes`` -> cc,
    ``breath`` -> dexed with its breath lane), else ``mk1``."""
    if target is None:
        return "cc" if cc_lanes else "dexed" if breath else "mk1"
    if target not in TARGETS:
        raise DX7Error(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if cc_lanes and target != "cc":
        raise DX7Error(f"--cc-lanes is --target cc; it does not go with --target {target}")
    if breath and target == "mk1":
        raise DX7Error("--breath is a variant of --target dexed; --target mk1 has its own controller lane "
                       "(--controller)")
    return target


def plan_performance(run: Run | str | Path, voice_export: VoiceExport, f0_hz, loudness_db, *, channel: int = 1,
                     budget: float = WIRE_BUDGET, breath: bool = False, cc_lanes: bool = False,
                     source: str | None = None, target: str | None = None,
                     controller: str = "breath") -> PerformancePlan:
    """The stream that plays ``f0_hz`` / ``loudness_db`` ((T,) each, 250 frames/s) with the
    exported voice for ``target`` (:data:`TARGETS`, :func:`resolve_target`); ``source`` names the
    recording in errors; ``controller`` is the mk1 lane's (breath, foot, mod_wheel, aftertouch).

    Raises:
        DX7Error: no voiced frames or no notes; notes and pitch bends alone over ``budget``.
    """
    from dx7tools.midi import sort_events

    target = resolve_target(target, breath, cc_lanes)
    if target == "mk1" or (target == "dexed" and not breath):
        from ddx7.export.mk1 import plan_mk1

        return plan_mk1(run, voice_export, f0_hz, loudness_db, channel=channel, budget=budget,
                        controller=controller, source=source, live_levels=target == "dexed")
    cc_lanes = cc_lanes or target == "cc"
    run = ddx7_run(run)
    ph = phrase(run, voice_export, f0_hz, loudness_db, perf.segment_notes, "24 ms", source)
    f0, notes, velocities, wanted_amp, times = ph.f0, ph.notes, ph.velocities, ph.wanted_amp, ph.times
    voice, modulators = performance_voice(voice_export.voice, breath)
    mandatory = (setup_events(voice, channel, breath) + note_events(notes, velocities, times, channel)
                 + bend_events(notes, perf.midi_pitch(f0), times, channel))
    wire = wire_budget(mandatory, len(f0), budget)

    wanted_ol, voice_amp = wanted_output_levels(voice, notes, velocities, wanted_amp)
    sysex_ops = [k for k in range(1, 7) if voice[f"op{k}_output_level"] > 0 and not (breath and k in modulators)]
    breath_cc = breath_values(wanted_amp, voice_amp, modulators) if breath and modulators else None
    lanes = automation_lanes(voice, wanted_ol, breath_cc, sysex_ops, channel, cc_lanes)
    initial = {f"op{k}_output_level": voice[f"op{k}_output_level"] for k in range(1, 7)}
    events = sort_events(mandatory + perf.thin_lanes(lanes, wire, times, initial))

    used, cc_map = controllers(voice, sysex_ops, modulators, breath, cc_lanes)
    sidecar = {"voice": voice.name, "run": run.record.get("name"), "channel": channel, "target": target,
               "lead_in_seconds": LEAD_IN_SECONDS, "notes": len(notes),
               "velocity_loudness_range_db": list(voice_export.stats.loudness_range),
               "controllers": used, "cc_map": cc_map, "stream": stream_figures(events, lanes, times, budget)}
    return PerformancePlan(events, times, lanes, sidecar)


def write_performance(plan: PerformancePlan, out_mid) -> dict:
    """Write ``plan`` as a Standard MIDI File and its sidecar ``OUT.json`` (never one without the other).

    Returns:
        the sidecar's content plus ``output`` and ``sidecar`` (the two paths).
    """
    from dx7tools.files import atomic_write_bytes

    out_mid = Path(out_mid)
    sidecar_path = out_mid.with_suffix(".json")
    existed = out_mid.exists()
    perf.write_midi_file(out_mid, plan.events)
    try:
        atomic_write_bytes(sidecar_path, (json.dumps(plan.sidecar, indent=2) + "\n").encode())
    except BaseException:
        if not existed:  # no .mid without its sidecar
            out_mid.unlink(missing_ok=True)
        raise
    return {**plan.sidecar, "output": str(out_mid), "sidecar": str(sidecar_path)}


def export_performance(run: Run | str | Path, wav, out_mid, *, home=None, voice_export: VoiceExport | None = None,
                       channel: int = 1, budget: float = WIRE_BUDGET, breath: bool = False,
                       cc_lanes: bool = False, features=None, target: str | None = None,
                       controller: str = "breath", plan: PerformancePlan | None = None) -> dict:
    """A recording as a Standard MIDI File played by the run's exported voice (module notes).

    Args:
        run: the run (its model is loaded once, by :meth:`Run.model`), or its folder.
        wav: the recording; ``features``: its ``(f0_hz, loudness_db)`` if already computed.
        out_mid: the .mid to write; its sidecar goes next to it as ``OUT.json``.
        home: data home of the run's corpus, for :func:`ddx7.export.voice.export_voice`
            when no ``voice_export`` is given.
        channel: MIDI channel 1-16; budget: most bytes in any one-second window.
        target, controller: see :func:`plan_performance`.
        plan: the plan, if already made for this recording (then nothing is planned again).

    Returns:
        dict: the sidecar's content (voice, controllers, CC map, ``stream`` figures: bytes/s,
        level errors), plus ``seconds_to_export``, ``output`` and ``sidecar``.
    """
    started = time.perf_counter()
    out_mid = Path(out_mid)
    if not out_mid.parent.is_dir():
        raise DX7Error("cannot write: the folder does not exist", str(out_mid))
    run = ddx7_run(run)
    run.model()  # weights that do not load fail here, before the features' work
    if voice_export is None:
        voice_export = export_voice(run, home)
    if plan is None:
        f0, loud = features if features is not None else performance_features(run, wav)
        plan = plan_performance(run, voice_export, f0, loud, channel=channel, budget=budget, breath=breath,
                                cc_lanes=cc_lanes, source=str(wav), target=target, controller=controller)
    written = write_performance(plan, out_mid)
    return {**plan.sidecar, "seconds_to_export": round(time.perf_counter() - started, 3),
            "output": written["output"], "sidecar": written["sidecar"]}
