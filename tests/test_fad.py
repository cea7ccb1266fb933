"""FAD numerics against closed forms, and the embedding plug-ins (CREPE offline default, VGGish
with randomly initialised weights of the exact shape, since none can be downloaded here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ddx7.evaluate import embeddings as E
from ddx7.evaluate.fad import fad, frechet_distance, gaussian_stats, min_frames, stats_distance
from dx7tools.errors import DX7Error


def random_spd(rng, d: int, scale: float = 1.0) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


def reference_distance(mu1, s1, mu2, s2) -> float:
    """Independent formula: tr sqrt(S1^1/2 S2 S1^1/2) from symmetric eigendecompositions."""
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(inner, 0, None)).sum())


def test_closed_forms(rng):
    # 1-D: (mu1 - mu2)^2 + (sigma1 - sigma2)^2
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1)
    # commuting diagonal covariances: |dmu|^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 1.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(
        5.0 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    # S2 = c S1 (non-diagonal): tr(S1) (1 - sqrt c)^2
    s = random_spd(rng, 12)
    assert frechet_distance(np.zeros(12), s, np.zeros(12), 2.25 * s) == pytest.approx(np.trace(s) * 0.25, rel=1e-9)
    # general non-commuting case against the eigendecomposition formula
    s1, s2 = random_spd(rng, 20), random_spd(rng, 20, 3.0)
    m1, m2 = rng.normal(size=20), rng.normal(size=20)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(reference_distance(m1, s1, m2, s2), rel=1e-8)


def test_samples_converge_to_the_gaussians_distance(rng):
    d = 6
    s1, s2 = random_spd(rng, d), random_spd(rng, d, 2.0)
    m1, m2 = np.zeros(d), np.full(d, 0.5)
    x = rng.multivariate_normal(m1, s1, size=40000)
    y = rng.multivariate_normal(m2, s2, size=40000)
    assert fad(x, y) == pytest.approx(frechet_distance(m1, s1, m2, s2), rel=0.03)


def test_symmetric_and_zero_on_identical_sets(rng):
    x = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16))
    y = rng.normal(size=(500, 16)) * 2 + 1
    assert fad(x, y) == pytest.approx(fad(y, x), rel=1e-9)
    assert fad(x, x) == pytest.approx(0.0, abs=1e-8)
    assert fad(x, y, diagonal=True) == pytest.approx(fad(y, x, diagonal=True), rel=1e-12)
    assert fad(x, x, diagonal=True) == pytest.approx(0.0, abs=1e-12)


def test_stable_on_small_and_degenerate_sets(rng):
    d = 32
    n = min_frames(d)                              # the smallest set accepted
    x, y = rng.normal(size=(n, d)), rng.normal(size=(n, d)) + 0.1
    value = fad(x, y)
    assert np.isfinite(value) and value > 0 and value == pytest.approx(fad(y, x), rel=1e-6)
    # embeddings confined to a subspace (a dead unit, duplicated units): singular covariances
    x[:, 0] = 0.0
    x[:, 1] = x[:, 2]
    y[:, 0] = 0.0
    value = fad(x, y)
    ref = reference_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert np.isfinite(value) and value == pytest.approx(ref, rel=1e-4)
    assert fad(x, x) == pytest.approx(0.0, abs=1e-6)


def test_too_few_frames_says_how_many_and_offers_diagonal(rng):
    x = rng.normal(size=(100, 64))
    with pytest.raises(DX7Error, match=r"100 embedding frames are too few for a stable 64x64 covariance "
                                       r"\(need at least 128\).*--diagonal"):
        gaussian_stats(x, what="test split")
    diag = gaussian_stats(x, diagonal=True)
    assert diag.diagonal and np.count_nonzero(diag.cov - np.diag(np.diag(diag.cov))) == 0
    full = gaussian_stats(rng.normal(size=(200, 64)))
    with pytest.raises(DX7Error, match="diagonal estimate with a full one"):
        stats_distance(diag, full)
    with pytest.raises(DX7Error, match="even a diagonal estimate needs 2"):
        gaussian_stats(x[:1], diagonal=True)
    with pytest.raises(DX7Error, match="NaN"):
        gaussian_stats(np.full((300, 4), np.nan))


# -- embeddings --------------------------------------------------------------------------------
def tone(f0: float, seconds: float, partials=(1.0, 0.5, 0.25), sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * sum(a * np.sin(2 * np.pi * f0 * (k + 1) * t) for k, a in enumerate(partials))).astype(np.float32)


def test_registry_and_crepe_default():
    assert {"crepe-tiny", "vggish"} <= set(E.EMBEDDINGS)
    with pytest.raises(DX7Error, match="unknown embedding 'nope'; choose one of crepe-tiny"):
        E.get_embedding("nope")
    with pytest.raises(DX7Error, match="ships its own weights"):
        E.get_embedding("crepe-tiny", weights="x.safetensors")
    emb = E.get_embedding()
    assert emb.name == "crepe-tiny" and emb.dim == 272 and "272-d" in emb.describe()
    audio = tone(220.0, 1.0)
    frames = emb(audio)
    assert frames.shape == (1 + (16000 - 1024) // 320, 272) and np.isfinite(frames).all()
    # silence is skipped; level does not matter (CREPE normalises each window)
    assert emb(np.zeros(16000, np.float32)).shape == (0, 272)
    np.testing.assert_allclose(emb(audio * 0.1), frames, rtol=1e-3, atol=1e-3)
    # timbre does: a sine and a bright tone at the same pitch are farther apart than the bright
    # tone and itself 25 cents higher (measured: 4.4 vs 2.6) ...
    sine, bright = emb(tone(220.0, 1.0, (1.0,))), frames
    cents_25, octave = emb(tone(220.0 * 2 ** (25 / 1200), 1.0)), emb(tone(440.0, 1.0))
    d = lambda a, b: float(np.linalg.norm(a.mean(0) - b.mean(0)))  # noqa: E731
    assert d(sine, bright) > 1.3 * d(bright, cents_25)
    # ... but pitch moves it too, as much as that timbre change from a quarter tone on: an octave
    # of one timbre is farther apart than two timbres at one pitch (measured: 10.5 vs 4.4).
    # FADs compare fairly only between sets with similar pitch distributions.
    assert d(bright, octave) > 1.5 * d(sine, bright)


def test_plugin_registration():
    class Energy(E.Embedder):
        name, dim, hop_seconds = "energy", 2, 0.01

        def __call__(self, audio):
            frames = np.asarray(audio[: len(audio) // 160 * 160], np.float64).reshape(-1, 160)
            return np.stack([frames.std(1), np.abs(frames).max(1)], 1)

    E.register_embedding(E.EmbeddingSpec("energy-test", Energy, "test plug-in"))
    try:
        assert E.get_embedding("energy-test")(tone(100.0, 0.5)).shape == (50, 2)
    finally:
        del E.EMBEDDINGS["energy-test"]


class NotWeights:
    """An arbitrary object: torch.load(weights_only=True) must refuse to unpickle it."""


VGGISH_SHAPES = {  # the standard VGGish, parameter by parameter
    "features.0.weight": (64, 1, 3, 3), "features.3.weight": (128, 64, 3, 3),
    "features.6.weight": (256, 128, 3, 3), "features.8.weight": (256, 256, 3, 3),
    "features.11.weight": (512, 256, 3, 3), "features.13.weight": (512, 512, 3, 3),
    "embeddings.0.weight": (4096, 12288), "embeddings.2.weight": (4096, 4096), "embeddings.4.weight": (128, 4096),
}


@pytest.fixture(scope="module")
def vggish_state():
    torch.manual_seed(0)
    net = E.VGGish()
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_vggish_architecture_is_the_standard_one(vggish_state):
    for key, shape in VGGISH_SHAPES.items():
        assert tuple(vggish_state[key].shape) == shape
        assert tuple(vggish_state[key.replace("weight", "bias")].shape) == (shape[0],)
    assert len(vggish_state) == 2 * len(VGGISH_SHAPES)
    assert sum(v.numel() for v in vggish_state.values()) == 72_141_184


def test_vggish_front_end():
    mel = E.vggish_mel_matrix()
    assert mel.shape == (257, 64) and not mel[0].any()
    bin_hz = np.linspace(0, 8000, 257)
    centres = bin_hz[mel.argmax(0)]
    assert 125 < centres[0] < 200 and 7000 < centres[-1] < 7500 and np.all(np.diff(centres) >= 0)
    audio = tone(1000.0, 2.0, (1.0,))
    log_mel = E.vggish_log_mel(audio)
    assert log_mel.shape == (1 + (32000 - 400) // 160, 64)
    edges = E.hz_to_mel_htk(np.array([125.0, 7500.0]))
    band = int(np.floor((E.hz_to_mel_htk(1000.0) - edges[0]) / ((edges[1] - edges[0]) / 65))) - 1
    assert abs(int(log_mel.mean(0).argmax()) - band) <= 1
    assert E.vggish_examples(audio).shape == (2, 96, 64)
    assert E.vggish_examples(audio[:15000]).shape == (0, 96, 64)
    assert np.log(0.01) == pytest.approx(E.vggish_log_mel(np.zeros(800)).max())


def test_vggish_loads_weights_of_the_exact_shape(vggish_state, tmp_path, monkeypatch):
    path = tmp_path / "vggish.safetensors"
    save_file(vggish_state, str(path))
    emb = E.get_embedding("vggish", weights=path)
    audio = tone(330.0, 3.0)
    frames = emb(audio)
    assert frames.shape == (3, 128) and "vggish" in emb.describe()
    net = E.VGGish()
    net.load_state_dict(vggish_state)
    with torch.no_grad():
        expected = net(torch.from_numpy(E.vggish_examples(audio))).double().numpy()
    np.testing.assert_allclose(frames, expected, rtol=1e-5, atol=1e-6)
    # the environment variable works too, and the settings (cache key) name the weights
    monkeypatch.setenv(E.VGGISH_WEIGHTS_ENV, str(path))
    assert E.get_embedding("vggish").settings()["weights_sha256"] == emb.sha256


def test_vggish_bad_weights(vggish_state, tmp_path, monkeypatch):
    monkeypatch.delenv(E.VGGISH_WEIGHTS_ENV, raising=False)
    with pytest.raises(DX7Error, match="vggish needs its weights: pass --weights FILE or set DX7TOOLS_VGGISH_WEIGHTS"):
        E.get_embedding("vggish")
    with pytest.raises(DX7Error, match="VGGish weights file not found"):
        E.get_embedding("vggish", weights=tmp_path / "missing.pt")
    wrong = dict(vggish_state)
    wrong["embeddings.4.weight"] = torch.zeros(64, 4096)
    wrong["embeddings.4.bias"] = torch.zeros(64)
    pt = tmp_path / "wrong.pt"
    torch.save(wrong, pt)  # a plain state dict: read with torch.load(weights_only=True)
    with pytest.raises(DX7Error, match=r"wrong VGGish weights shape for embeddings.4.weight: \(64, 4096\), "
                                       r"expected \(128, 4096\)"):
        E.load_vggish(pt)
    partial = tmp_path / "partial.safetensors"
    save_file({k: v for k, v in vggish_state.items() if k.startswith("features")}, str(partial))
    with pytest.raises(DX7Error, match="not VGGish weights: missing embeddings.0.bias"):
        E.load_vggish(partial)

    pickled = tmp_path / "pickled.pt"
    torch.save({"model": NotWeights()}, pickled)  # an arbitrary pickle is refused, never executed
    with pytest.raises(DX7Error, match="cannot read VGGish weights"):
        E.load_vggish(pickled)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(DX7Error, match="cannot read VGGish weights"):
        E.load_vggish(junk)
