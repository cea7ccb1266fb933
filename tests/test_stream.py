"""Streaming resynthesis and live controls.

* :class:`ddx7.stream.Streamer` block by block equals the same causal pipeline on the whole signal
  (:func:`ddx7.stream.render_causal`), controls changed between blocks included; 10,000 live
  changes keep the timeline small, never rebuild it and play as the same changes given up front;
  bad blocks, a rate change, silence and NaN input.
* Live controls (:mod:`ddx7.live`) on a synth whose six operators are all carriers at ratios 1-6
  and constant levels, so each operator is one partial: a muted operator's partial is gone, a
  level offset moves its partial by the stated dB, a ratio moves it, transpose moves f0, feedback
  adds harmonics; on the violin configuration (modulators too) muting equals zeroing that
  operator's level and brightness equals the same offset on every modulator.
* A controls .mid: changes at the right frame, CCs outside the map counted, transpose clamped, an
  out-of-range value named with file and time; the command line.
"""

from __future__ import annotations

import mido
import numpy as np
import pytest
import soundfile
import torch

from dx7tools.audio import FRAME_RATE, HOP, SAMPLE_RATE
from dx7tools.errors import DX7Error
from dx7tools.fixed_config import FixedConfig
from dx7tools.levels import STEP_DB

from ddx7.fit.models import DDX7
from ddx7.live import (CC_MAP, CCRow, Controls, LiveSynth, Timeline, cc_map_markdown, read_controls_mid,
                       settings_controls, timeline_from)
from ddx7.rank.choose import paper_config
from ddx7.stream import Streamer, render_causal

F0 = 200.0


def random_model(config: FixedConfig, seed: int = 0) -> DDX7:
    """An untrained DDX7 model with seeded weights (eval mode, weight norm fused as runs load)."""
    torch.manual_seed(seed)
    model = DDX7(config).eval()
    model.decoder.fuse_weight_norm()
    return model


def glide(seconds: float = 1.2) -> np.ndarray:
    """A 0.3-amplitude harmonic glide 196 -> 294 Hz with fades and 0.1 s of silence inside."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(196.0 * 1.5 ** (t / seconds)) / SAMPLE_RATE
    x = 0.3 * (np.sin(phase) + 0.4 * np.sin(2 * phase)) * np.minimum(1.0, t / 0.05)
    x[int(0.6 * SAMPLE_RATE): int(0.7 * SAMPLE_RATE)] = 0.0
    return x.astype(np.float32)


def stream(streamer: Streamer, x: np.ndarray, changes: dict | None = None) -> np.ndarray:
    """``x`` through ``streamer`` block by block; ``changes``: {block number: (name, op, value)}."""
    b = streamer.block
    x = np.pad(x, (0, -len(x) % b))
    out = []
    for i in range(0, len(x), b):
        if changes and i // b in changes:
            streamer.set(*changes[i // b])
        out.append(streamer.process(x[i:i + b]))
    return np.concatenate(out)


@pytest.fixture(scope="module")
def violin():
    return random_model(paper_config("violin"))


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here on one torch thread (what a stream runs on; small blocks on two threads of
    a busy machine cost ten times more)."""


@pytest.mark.parametrize("block", [64, 256])
def test_streaming_equals_the_causal_pipeline_on_the_whole_signal(violin, block):
    x = glide()
    whole = render_causal(violin, x)
    out = stream(Streamer(violin, block=block), x)
    assert np.abs(whole).max() > 0.05  # it plays
    np.testing.assert_allclose(out[: len(whole)], whole, atol=1e-4 * np.abs(whole).max())


def test_controls_set_between_blocks_equal_a_timeline_at_that_frame(violin):
    x = glide(0.8)
    block = 128
    at = 40  # frames: block 20 starts at frame 40
    timeline = Timeline()
    timeline.add(at, "on", 1, False)
    timeline.add(at, "transpose", None, 7)
    whole = render_causal(violin, x, controls=timeline)
    s = Streamer(violin, block=block)
    xs = np.pad(x, (0, -len(x) % block))
    pieces = []
    for i in range(0, len(xs), block):
        if i == at * HOP:
            s.set("on", 1, False)
            s.set("transpose", value=7)
            assert s.controls == Controls(on=(False,) + (True,) * 5, transpose=7)
        pieces.append(s.process(xs[i:i + block]))
    out = np.concatenate(pieces)[: len(whole)]
    np.testing.assert_allclose(out, whole, atol=1e-4 * np.abs(whole).max())
    plain = render_causal(violin, x)
    assert np.abs(plain[: at * HOP] - whole[: at * HOP]).max() < 1e-6      # nothing changes before
    assert np.abs(plain[at * HOP + HOP:] - whole[at * HOP + HOP:]).max() > 0.05  # and it does after


def test_a_long_live_session_keeps_the_timeline_small_and_plays_as_the_same_changes_up_front(violin):
    """10,000 set() calls, 40 between each of 250 blocks: the stored changes stay at most one
    block's, the snapshots are never rebuilt (each change extends them), and the output is the
    output of a streamer given all the changes up front as a timeline."""
    block, per_block = 64, 40
    x = glide(250 * block / SAMPLE_RATE)
    rng = np.random.default_rng(3)
    choices = [("level_db", lambda: float(rng.uniform(-12, 6))), ("on", lambda: bool(rng.random() > 0.2)),
               ("brightness_db", lambda: float(rng.uniform(-9, 3))), ("feedback", lambda: int(rng.integers(8))),
               ("transpose", lambda: int(rng.integers(-3, 4)))]
    changes = []
    for k in range(len(x) // block):
        for _ in range(per_block):
            name, draw = choices[rng.integers(len(choices))]
            op = int(rng.integers(1, 7)) if name in ("level_db", "on") else None
            changes.append((k, name, op, draw()))
    up_front = Timeline()
    for change in changes:
        up_front.add(*change)
    live, given = Streamer(violin, block=block, crepe_every=64), Streamer(violin, block=block, controls=up_front,
                                                                          crepe_every=64)
    outs, most, rebuilds = [], 0, None
    for k in range(len(x) // block):
        for _, name, op, value in changes[k * per_block: (k + 1) * per_block]:
            live.set(name, op, value)
        rebuilds = live.timeline.rebuilds if rebuilds is None else rebuilds
        most = max(most, len(live.timeline.events))
        outs.append((live.process(x[k * block:(k + 1) * block]), given.process(x[k * block:(k + 1) * block])))
    assert len(changes) == 10_000 and most == per_block and live.timeline.rebuilds == rebuilds == 1
    assert up_front.rebuilds == 1                      # built in time order: extended, never rebuilt
    out, expected = (np.concatenate(o) for o in zip(*outs))
    assert np.abs(expected).max() > 0.05               # it plays
    np.testing.assert_array_equal(out, expected)
    assert live.controls == up_front.at(len(x) // block)


def test_timeline_changes_in_any_order_and_folded_answer_as_rebuilt_from_scratch():
    """Changes added out of time order (a re-sort) or in order (extended in place), then folded:
    every frame from the fold on answers as controls applied change by change."""
    rng = np.random.default_rng(5)
    changes = [(int(rng.integers(-2, 60)), "level_db", int(rng.integers(1, 7)), float(rng.integers(-20, 20)))
               for _ in range(300)]
    changes += [(60 + i // 3, "transpose", None, int(rng.integers(-5, 6))) for i in range(60)]

    def by_hand(frame: int, applied) -> Controls:
        c = Controls()
        for f, name, op, value in sorted(applied, key=lambda e: e[0]):  # stable: equal frames in order added
            c = c.apply(name, op, value) if max(f, 0) <= frame else c
        return c

    t = Timeline()
    for change in changes:
        t.add(*change)
    assert [t.at(k) for k in range(-1, 85)] == [by_hand(k, changes) for k in range(-1, 85)]
    for cut in (0, 30, 61, 70):
        t.fold(cut)
        assert all(e[0] >= cut for e in t.events) or cut == 0
        assert [t.at(k) for k in range(cut, 85)] == [by_hand(k, changes) for k in range(cut, 85)]
    assert len(t.events) == sum(f >= 70 for f, *_ in changes)


def test_bad_blocks_rates_silence_and_nan(violin):
    from ddx7.fit.models import HpN

    with pytest.raises(DX7Error, match="positive multiple of 64"):
        Streamer(violin, block=100)
    with pytest.raises(DX7Error, match="needs a DDX7 run"):
        Streamer(HpN().eval())
    s = Streamer(violin, block=128)
    with pytest.raises(DX7Error, match="blocks of 128 samples"):
        s.process(np.zeros(64, np.float32))
    with pytest.raises(DX7Error, match="sample rate change mid-stream"):
        s.process(np.zeros(128, np.float32), sample_rate=44100)
    silent = stream(s, np.zeros(2048, np.float32))
    assert np.all(silent == 0.0)
    bad = np.full(1024, np.nan, np.float32)
    bad[::3] = np.inf
    out = s.process(bad[:128])
    assert np.all(out == 0.0) and s.nonfinite == 128
    # a sound cut by NaN plays on as if cut by silence (the reverb's tail, then nothing)
    s.reset()
    stream(s, glide(0.4))
    after_nan = stream(s, bad)
    s.reset()
    stream(s, glide(0.4))
    after_zeros = stream(s, np.zeros_like(bad))
    assert np.all(np.isfinite(after_nan)) and np.abs(after_nan).max() > 0
    np.testing.assert_array_equal(after_nan, after_zeros)


# -- the controls' effects ----------------------------------------------------------------------
ALL_CARRIERS = FixedConfig(32, (0,) * 6, (1, 2, 3, 4, 5, 6), (0,) * 6, feedback=0)


def partials(controls: Controls | Timeline, *, level: float = 0.5, frames: int = 250, config=ALL_CARRIERS,
             harmonics: int = 14) -> np.ndarray:
    """dB of the partials k * F0 (k = 1..harmonics) of one second of the all-carrier synth at constant
    levels (every operator at index ``level``) through the live controls."""
    model = random_model(config)
    timeline = controls if isinstance(controls, Timeline) else Timeline(controls)
    f0 = torch.full((1, frames), F0)
    index = torch.full((1, frames, 6), level)
    with torch.no_grad():
        audio = LiveSynth(model, timeline).render(f0 * timeline.f0_factors(0, frames), index, 0, None)[0][0].numpy()
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    bins = (np.arange(1, harmonics + 1) * F0 * len(audio) / SAMPLE_RATE).round().astype(int)
    return 20 * np.log10(spectrum[bins] + 1e-12)


def test_muted_operator_partial_is_gone_and_the_others_stay():
    before, after = partials(Controls()), partials(settings_controls(op=["2=off"]))
    assert before[1] - after[1] > 100                     # OP2's partial (2 F0) is gone
    np.testing.assert_allclose(np.delete(after, 1)[:5], np.delete(before, 1)[:5], atol=1e-6)


@pytest.mark.parametrize("spec, db", [("5=-6dB", -6.0), ("5=+4.5db", 4.5), ("5=-6", -6 * STEP_DB)])
def test_level_offset_moves_the_operator_partial_by_the_stated_db(spec, db):
    before, after = partials(Controls()), partials(settings_controls(op=[spec]))
    assert after[4] - before[4] == pytest.approx(db, abs=0.01)
    np.testing.assert_allclose(np.delete(after, 4)[:5], np.delete(before, 4)[:5], atol=1e-6)


def test_raised_levels_stop_at_output_level_99():
    before, after = partials(Controls(), level=1.5), partials(settings_controls(op=["5=+12dB"]), level=1.5)
    assert after[4] - before[4] == pytest.approx(20 * np.log10(2.0 / 1.5), abs=0.01)


def test_ratio_moves_the_partial_and_transpose_moves_f0():
    before, after = partials(Controls()), partials(settings_controls(ratio=["6=7"]))
    assert before[5] - after[5] > 100 and after[6] - before[6] > 100   # 6 F0 -> 7 F0
    half = partials(settings_controls(ratio=["1=0"]))                   # coarse 0 is ratio 0.5
    assert half[0] < before[0] - 100
    up = partials(settings_controls(transpose=12))
    assert up[0] < before[0] - 100 and up[1] == pytest.approx(before[0], abs=0.1)  # OP1 now at 2 F0


def test_feedback_adds_harmonics_of_the_fed_back_operator():
    solo = Controls(on=(False,) * 5 + (True,))                 # OP6 alone at 6 F0, feedback on OP6
    before = partials(solo)
    after = partials(solo.apply("feedback", None, 7))
    assert after[11] - before[11] > 40                        # 12 F0: OP6's second harmonic


def test_mute_and_brightness_equal_the_same_levels_set_by_hand(violin):
    frames = 200
    f0 = torch.full((1, frames), 220.0)
    index = torch.rand(1, frames, 6, generator=torch.Generator().manual_seed(1)) * violin.ceiling
    modulators = [op for op in range(1, 7) if not violin.synth.carrier_mask[op - 1]]

    def live(c: Controls) -> np.ndarray:
        with torch.no_grad():
            return LiveSynth(violin, Timeline(c)).render(f0, index, 0, None)[0].numpy()

    def by_hand(gain: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return violin.synth.render(f0, index * torch.from_numpy(gain).float())[0].numpy()

    muted = np.ones(6, np.float32)
    muted[4] = 0.0
    np.testing.assert_allclose(live(settings_controls(op=["5=off"])), by_hand(muted), atol=1e-5)
    darker = np.where(np.isin(np.arange(1, 7), modulators), 10 ** (-3 / 20), 1.0).astype(np.float32)
    np.testing.assert_allclose(live(settings_controls(brightness="-3dB")), by_hand(darker), atol=1e-5)


# -- controls over time from a .mid ------------------------------------------------------------------
def controls_mid(path, events) -> None:
    """A one-track .mid at 120 bpm (480 ticks a beat, 1 s = 960 ticks) of (seconds, message)."""
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    now = 0
    for seconds, msg in events:
        tick = round(seconds * 960)
        track.append(msg.copy(time=tick - now))
        now = tick
    mid.save(path)


def test_controls_mid_applies_at_its_time_and_counts_unmapped_ccs(tmp_path):
    path = tmp_path / "take.mid"
    op2 = next(row.cc for row in CC_MAP.values() if row.name == "on" and row.op == 2)
    controls_mid(path, [(0.0, mido.Message("note_on", note=60)),
                        (0.25, mido.Message("control_change", control=74, value=10)),
                        (0.5, mido.Message("control_change", control=op2, value=0)),
                        (0.6, mido.Message("control_change", control=74, value=90, channel=3)),
                        (0.7, mido.Message("control_change", control=op2, value=127))])
    take = read_controls_mid(path)
    assert take.report() == {"applied": 2, "ignored_cc": 2, "ignored_cc_numbers": [74], "other_messages": 1}
    timeline = timeline_from(None, take)
    assert [e[0] for e in timeline.events] == [round(0.5 * FRAME_RATE), round(0.7 * FRAME_RATE)]
    assert timeline.at(124).on[1] and not timeline.at(125).on[1] and timeline.at(175).on[1]
    # the render: OP2's partial is there before 0.5 s, gone from 0.5 s + one frame to 0.7 s
    model = random_model(ALL_CARRIERS)
    frames = 250
    with torch.no_grad():
        audio = LiveSynth(model, timeline).render(torch.full((1, frames), F0), torch.full((1, frames, 6), 0.5),
                                                  0, None)[0][0].numpy()

    def partial2(a: float, b: float) -> float:
        seg = audio[int(a * SAMPLE_RATE): int(b * SAMPLE_RATE)]
        return float(np.abs(np.fft.rfft(seg * np.hanning(len(seg))))[round(2 * F0 * len(seg) / SAMPLE_RATE)])

    assert partial2(0.3, 0.5) > 1e3 * partial2(0.5 + 1 / FRAME_RATE, 0.7) and partial2(0.71, 0.95) > 1.0


def test_controls_mid_transpose_is_clamped_and_an_out_of_range_value_names_file_and_time(tmp_path, monkeypatch):
    path = tmp_path / "take.mid"
    controls_mid(path, [(0.1, mido.Message("control_change", control=9, value=0)),
                        (0.2, mido.Message("control_change", control=9, value=127)),
                        (0.3, mido.Message("control_change", control=9, value=70))])
    t = timeline_from(None, read_controls_mid(path))
    assert [t.at(k).transpose for k in (25, 50, 75)] == [-48, 48, 6]
    # no shipped controller converts out of range any more: a row that does (FINE = value) stands in
    fine = next(row for row in CC_MAP.values() if row.name == "fine" and row.op == 3)
    monkeypatch.setitem(CC_MAP, fine.cc, CCRow(fine.cc, "fine", 3, lambda v: v, fine.meaning))
    controls_mid(path, [(0.1, mido.Message("control_change", control=fine.cc, value=99)),
                        (0.25, mido.Message("control_change", control=fine.cc, value=120))])
    with pytest.raises(DX7Error) as err:
        read_controls_mid(path)
    assert err.value.source == str(path)
    assert str(err.value) == f"{path}: CC {fine.cc} value 120: FREQ FINE must be a whole number from 0 to 99, " \
                             "got 120 at 0.250 s"


def test_docs_hold_the_cc_map_and_bad_settings_name_the_problem():
    from pathlib import Path

    assert cc_map_markdown() in (Path(__file__).parent.parent / "docs" / "live.md").read_text()
    for kw, match in [({"op": ["7=-6dB"]}, "--op wants"), ({"op": ["5=loud"]}, "like -6dB"),
                      ({"ratio": ["6=32"]}, "FREQ COARSE"), ({"ratio": ["6=x"]}, "--ratio wants"),
                      ({"feedback": 8}, "FEEDBACK"), ({"transpose": 60}, "transpose")]:
        with pytest.raises(DX7Error, match=match):
            settings_controls(**kw)
    with pytest.raises(DX7Error, match="on .True. or off"):
        Controls().apply("on", 2, "off")
    with pytest.raises(DX7Error, match="unknown live control"):
        Controls().apply("volume", None, 1)


# -- the command line ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A DDX7 run trained one step on synthetic phrases (as tests/test_resynth.py)."""
    from ddx7.fit import train
    from ddx7.run import FitConfig

    from tests.test_resynth import phrases

    home = tmp_path_factory.mktemp("stream-home")
    ex = phrases(n=3, frames=150)
    cfg = FitConfig(corpus="synthetic", steps=1, batch_size=2, segment_seconds=0.5, minutes=None, crepe="tiny",
                    valid_every=1, checkpoint_seconds=0, threads=1)
    train.fit(None, home / "runs" / "tiny", cfg, paper_config("violin"), data={"train": ex[:2], "valid": ex[2:],
                                                                                "test": []})
    return home / "runs" / "tiny"


def test_cli_stream_reports_latency_and_block_times_and_counts_ignored_ccs(run_cli, run_dir, tmp_path):
    src = tmp_path / "in.wav"
    soundfile.write(src, glide(0.6), 22050)  # read as 22.05 kHz: resampled first
    path = tmp_path / "take.mid"
    controls_mid(path, [(0.1, mido.Message("control_change", control=74, value=1)),
                        (0.2, mido.Message("control_change", control=15, value=127))])
    r = run_cli("resynth", run_dir, src, "-o", tmp_path / "out.wav", "--stream", "--block", "128", "--op", "5=-6dB",
                "--controls", path, "--crepe-every", "8", "--json")
    assert r.returncode == 0, r.stderr
    info = r.json()
    assert info["latency_ms"] == 8.0 and info["block"] == 128 and info["crepe_every"] == 8
    assert 0 < info["block_ms"]["median"] <= info["block_ms"]["p99"] <= info["block_ms"]["max"]
    assert info["controls"] == {"settings": {"level_db": {"5": -6.0}},
                                "file": {"applied": 1, "ignored_cc": 1, "ignored_cc_numbers": [74],
                                         "other_messages": 0}}
    assert "1 controller change(s) outside the CC map ignored (CC 74" in r.stderr
    out, sr = soundfile.read(tmp_path / "out.wav")
    assert sr == SAMPLE_RATE and abs(len(out) - len(glide(0.6)) * SAMPLE_RATE / 22050) <= 1
    assert np.all(np.isfinite(out)) and np.abs(out).max() > 0
    bad = run_cli("resynth", run_dir, src, "-o", tmp_path / "bad.wav", "--stream", "--block", "100")
    assert bad.returncode == 1 and bad.stderr.strip().startswith("error: --block must be a positive multiple of 64")
    assert not (tmp_path / "bad.wav").exists()


def test_cli_offline_with_every_carrier_off_is_silent(run_cli, run_dir, tmp_path):
    src = tmp_path / "in.wav"
    soundfile.write(src, glide(0.5), SAMPLE_RATE)
    carriers = [op for op in range(1, 7) if paper_config("violin").algorithm_spec.carrier_mask[op - 1]]
    args = [a for op in carriers for a in ("--op", f"{op}=off")]
    r = run_cli("resynth", run_dir, src, "-o", tmp_path / "off.wav", *args, "--json")
    assert r.returncode == 0, r.stderr
    assert r.json()["controls"]["settings"] == {"on": {str(op): False for op in carriers}}
    out, _ = soundfile.read(tmp_path / "off.wav")
    assert len(out) == len(glide(0.5)) and np.all(out == 0.0)


def test_offline_controls_are_frame_exact_across_blocks(run_dir, tmp_path):
    from ddx7.resynth import resynthesize_file

    src = tmp_path / "in.wav"
    soundfile.write(src, glide(0.8), SAMPLE_RATE)
    timeline = Timeline(settings_controls(op=["5=-6dB"]))
    timeline.add(77, "on", 1, False)          # inside the first 0.32 s block
    timeline.add(80, "transpose", None, 5)    # the next block starts at frame 80
    outs = []
    for seconds in (0.32, 10.0):
        resynthesize_file(run_dir, src, tmp_path / f"{seconds}.wav", block_seconds=seconds, controls=timeline)
        outs.append(soundfile.read(tmp_path / f"{seconds}.wav", dtype="float32")[0])
    plain = tmp_path / "plain.wav"
    resynthesize_file(run_dir, src, plain)
    # (the offline features of a block see its margins only: CREPE's batches round alike to ~1e-5)
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-4 * np.abs(outs[1]).max())
    assert np.abs(outs[1] - soundfile.read(plain, dtype="float32")[0]).max() > 1e-3
