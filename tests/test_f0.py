"""The f0 trackers (ddx7.data.f0, ddx7.data.pesto): accuracy on a tone whose f0 is known by
construction, the options that choose a tracker, the feature cache key, and old run records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ddx7.data import f0 as f0mod
from ddx7.data.examples import _feature_settings, confidence_threshold
from ddx7.data.features import FeatureCache, compute_features
from ddx7.run import FitConfig, Run, resume_settings
from dx7tools.errors import DX7Error

SR, HOP = 16000, 64
PATCHES = Path(__file__).parent.parent / "patches" / "dx7tools-starters.syx"


def bent_tone() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """0.1 s silence, 220 Hz for 0.45 s, a bend up 150 cents over 0.2 s, held 0.45 s, 0.3 s silence.

    Returns (audio, truth Hz per frame, steady-frame mask, silent-frame mask)."""
    n = int(1.5 * SR)
    t = np.arange(n) / SR
    cents = np.interp(t, [0.55, 0.75], [0.0, 150.0])
    f = 220.0 * 2 ** (cents / 1200)
    phase = 2 * np.pi * np.cumsum(f) / SR
    env = ((t >= 0.1) & (t < 1.2)).astype(float)
    env = np.convolve(env, np.hanning(161) / np.hanning(161).sum(), "same")       # 10 ms fades
    audio = (env * (0.4 * np.sin(phase) + 0.2 * np.sin(2 * phase) + 0.1 * np.sin(3 * phase))).astype(np.float32)
    frames_t = np.arange(-(-n // HOP)) * HOP / SR
    truth = np.interp(frames_t, t, f)
    steady = ((frames_t > 0.2) & (frames_t < 0.45)) | ((frames_t > 0.85) & (frames_t < 1.1))
    silent = (frames_t > 1.35) | (frames_t < 0.02)
    return audio, truth, steady, silent


@pytest.fixture(scope="module")
def tone():
    return bent_tone()


@pytest.mark.parametrize("tracker, step, tolerance", [
    ("crepe-tiny", 320, 10.0), ("pyin", 160, 10.0),
    ("pesto", None, 20.0)])    # PESTO answers on a 1/3-semitone grid: the bend ends 1/6 semitone off it
def test_tracker_follows_a_tone_and_its_bend(tone, tracker, step, tolerance):
    audio, truth, steady, silent = tone
    f0, conf = f0mod.track_f0(audio, SR, hop=HOP, tracker=tracker, step=step)
    assert f0.shape == conf.shape == truth.shape and f0.dtype == np.float32
    err = 1200 * np.log2(f0 / truth)
    assert np.mean(np.abs(err[steady]) <= tolerance) >= 0.95, np.percentile(np.abs(err[steady]), [50, 95])
    bend = (np.arange(len(truth)) * HOP / SR > 0.6) & (np.arange(len(truth)) * HOP / SR < 0.7)
    assert np.all(np.abs(err[bend]) <= 50), err[bend]            # follows the bend, no octave slip
    threshold = f0mod.CONFIDENCE[tracker]
    assert np.mean(conf[steady] >= threshold) >= 0.95 and np.mean(conf[silent] < threshold) >= 0.95


def test_compute_features_takes_a_tracker(tone):
    audio = tone[0][SR // 4: SR // 2]
    by_tracker = compute_features(audio, SR, hop=HOP, tracker="crepe-tiny")
    by_model = compute_features(audio, SR, hop=HOP, model="tiny")
    assert np.array_equal(by_tracker["f0_hz"], by_model["f0_hz"])
    with pytest.raises(DX7Error, match="unknown f0 tracker 'yin'"):
        compute_features(audio, SR, hop=HOP, tracker="yin")


def test_pesto_spectrum_bins_are_on_the_midi_grid():
    """Bin 3m + 1 of the variable-Q transform is MIDI note 21 + m: A4 peaks in bin 145."""
    from ddx7.data.pesto import Pesto

    net = Pesto.load()
    t = np.arange(net.window) / SR
    window = np.sin(2 * np.pi * 440.0 * t).astype(np.float32)[None]
    import torch

    with torch.inference_mode():
        assert int(net.spectrum(torch.from_numpy(window)).argmax()) == 3 * (69 - 21) + 1


# -- options ------------------------------------------------------------------------------------------
def test_options_resolve_to_a_tracker():
    resolve = f0mod.resolve_tracker
    assert resolve(None, None, None, "full") == f0mod.DEFAULT_F0 == {"f0": "crepe-tiny", "crepe": "tiny",
                                                                     "crepe_hop": 320}
    # --crepe / --crepe-hop alone keep their old meaning, with each command's old default model
    assert resolve(None, "full", None, "full") == {"f0": "crepe-full", "crepe": "full", "crepe_hop": None}
    assert resolve(None, None, 320, "full") == {"f0": "crepe-full", "crepe": "full", "crepe_hop": 320}
    assert resolve(None, None, 320, "tiny")["f0"] == "crepe-tiny"
    assert resolve("pesto", None, None, "full") == {"f0": "pesto", "crepe": "full", "crepe_hop": None}
    assert resolve("crepe-tiny", "tiny", 128, "full")["crepe_hop"] == 128
    for bad, match in (((None, "huge", None), "unknown CREPE model"), (("pesto", "tiny", None), "contradicts"),
                       (("pyin", None, 320), "applies to CREPE only"), (("swipe", None, None), "unknown f0 tracker")):
        with pytest.raises(DX7Error, match=match):
            resolve(*bad, "full")


def test_fit_and_rank_reject_a_bad_tracker_before_any_work(run_cli, home):
    from ddx7.rank.ranking import rank

    r = run_cli("fit", "--corpus", "violin", "--f0", "pesto", "--crepe", "tiny")
    assert r.returncode == 1 and "error: --crepe tiny contradicts --f0 pesto" in r.stderr
    with pytest.raises(DX7Error, match="unknown f0 tracker 'swipe'"):
        rank(home, "violin", f0="swipe")
    assert not (home / "corpora").exists() and not (home / "runs").exists()


# -- cache key and run records -------------------------------------------------------------------
def test_cache_key_tells_trackers_apart(tone):
    audio = tone[0]
    cache = FeatureCache("unused")
    keys = {(name, step): cache.key(audio, SR, f0mod.feature_settings(name, step))
            for name in f0mod.TRACKERS for step in (None, 320)}
    assert len(set(keys.values())) == len(keys)
    # CREPE keeps the settings (hence keys) of caches made before other trackers existed
    assert f0mod.feature_settings("crepe-full", None) == {"hop": 64, "model": "full", "crepe_hop": None,
                                                          "sample_rate": 16000}
    assert _feature_settings(FitConfig(corpus="c", crepe="tiny", crepe_hop=320)) == \
        f0mod.feature_settings("crepe-tiny", 320)
    assert _feature_settings(FitConfig(corpus="c", f0="pesto"))["f0"] == "pesto"


def _old_record(folder, crepe: str) -> None:
    """A run record as written before the ``f0`` setting existed."""
    folder.mkdir(parents=True)
    config = {"corpus": "violin", "model": "ddx7", "voice": None, "steps": 10, "minutes": None,
              "segment_seconds": 1.0, "batch_size": 8, "learning_rate": 0.005, "crepe": crepe, "crepe_hop": None,
              "confidence": None, "valid_every": 50, "checkpoint_seconds": 20.0, "seed": 0, "threads": None,
              "feedback_cap": True}
    (folder / "run.json").write_text(json.dumps({"name": folder.name, "model": "ddx7", "config": config,
                                                 "status": "stopped"}))


@pytest.mark.parametrize("crepe, threshold", [("full", 0.85), ("tiny", 0.5)])
def test_old_run_records_keep_their_tracker(tmp_path, crepe, threshold):
    _old_record(tmp_path / "old", crepe)
    run = Run.at(tmp_path / "old")
    cfg, _ = resume_settings(run, steps=20)
    assert cfg.f0 is None and cfg.tracker == f"crepe-{crepe}" and cfg.steps == 20
    assert confidence_threshold(cfg) == confidence_threshold(run.record["config"]) == threshold
    assert _feature_settings(cfg) == {"hop": 64, "model": crepe, "crepe_hop": None, "sample_rate": 16000}


def test_new_settings_record_the_default_tracker(tmp_path):
    cfg = FitConfig(corpus="c", **f0mod.DEFAULT_F0)
    cfg.check()
    saved = json.loads(json.dumps(cfg.__dict__))
    assert FitConfig.from_saved(saved).tracker == "crepe-tiny" and saved["crepe_hop"] == 320
    with pytest.raises(DX7Error, match="unknown f0 tracker"):
        FitConfig(corpus="c", f0="crepe-huge").check()


def test_fit_records_the_tracker_it_used(run_cli, home, tmp_path):
    """A short fit with --f0 pesto: the record names pesto and the corpus cache holds its features."""
    audio = bent_tone()[0]
    rec = tmp_path / "rec"
    rec.mkdir()
    for i in range(3):
        soundfile.write(rec / f"take{i}.wav", np.tile(audio, 2) * (0.5 + 0.1 * i), SR)
    assert run_cli("import", PATCHES).returncode == 0
    assert run_cli("corpus", "add", "tone", "--audio", rec).returncode == 0
    r = run_cli("fit", "--corpus", "tone", "--voice", "DDX7 VIOLN", "--f0", "pesto", "--steps", "1",
                "--batch-size", "2", "--segment-seconds", "0.5", "--no-test-audio", "--run", "p", "--json")
    assert r.returncode == 0, r.stderr
    config = json.loads((home / "runs" / "p" / "run.json").read_text())["config"]
    assert config["f0"] == "pesto" and config["crepe_hop"] is None
    assert any((home / "corpora" / "tone" / "features").glob("*.npz"))
