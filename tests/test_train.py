"""Models, loss and the training loop on a known-answer corpus rendered by our own synth."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from ddx7 import run as runs

from ddx7.fit import train
from ddx7.fit.loss import multiscale_spectral_loss
from ddx7.fit.models import DDX7, HpN, Reverb, count_parameters, fft_convolution, partitioned_convolution
from ddx7.rank.choose import paper_config, resolve_config
from ddx7.synth import FMSynth
from dx7tools.errors import DX7Error


def synthetic_examples(n: int = 6, frames: int = 200, seed: int = 0) -> list[train.Example]:
    """Phrases rendered by the violin configuration with index curves that follow loudness."""
    rng = np.random.default_rng(seed)
    synth = FMSynth(paper_config("violin"))
    out = []
    for i in range(n):
        f0 = np.full(frames, 220.0 * 2 ** (rng.integers(0, 12) / 12), np.float32)
        env = np.clip(np.linspace(0, 3, frames), 0, 1) * np.clip(np.linspace(3, 0, frames), 0, 1)
        loud = (-60 + 50 * env).astype(np.float32)
        index = torch.from_numpy(np.stack([env * 2, env * 0.5, env * 2, env, env * 0.3, env * 0.1], -1)).float()
        with torch.no_grad():
            audio = synth(torch.from_numpy(f0)[None], index[None])[0].numpy()
        out.append(train.Example(audio, f0, loud, f"seg{i}"))
    return out


@pytest.fixture(scope="module")
def data():
    ex = synthetic_examples(8)
    return {"train": ex[:6], "valid": ex[6:7], "test": ex[7:]}


def test_parameter_counts():
    ddx7 = count_parameters(DDX7(paper_config("violin")))
    hpn = count_parameters(HpN())
    assert 400_000 < ddx7 < 500_000  # the paper's TCN: 5 blocks x 2 convs, 128 channels, kernel 3
    assert hpn > 9.5 * ddx7


def test_loss_known_answers():
    x = torch.randn(2, 16000)
    assert float(multiscale_spectral_loss(x, x)) == 0.0
    louder = float(multiscale_spectral_loss(2 * x, x))
    assert louder > 0 and float(multiscale_spectral_loss(x, 2 * x)) == pytest.approx(louder, rel=0.5)
    with pytest.raises(ValueError):
        multiscale_spectral_loss(x, x[:, :-1])


def test_reverb_streams_like_a_whole_render():
    r = Reverb()
    with torch.no_grad():
        r.gain.fill_(-1.0)
        x = torch.randn(1, 30000)
        whole = r(x)
        tail, parts = torch.zeros(1, 15999), []
        for a in range(0, 30000, 7000):
            y, tail = r(x[:, a:a + 7000], tail)
            parts.append(y)
    torch.testing.assert_close(torch.cat(parts, 1), whole, atol=1e-5, rtol=0)


@pytest.mark.parametrize("n, m", [(1, 1), (5, 300), (64, 64), (65, 130), (1000, 1), (3000, 700), (200, 128),
                                  (10, 192)])
def test_partitioned_convolution_is_the_full_convolution(n, m):
    rng = np.random.default_rng(n + m)
    x, h = rng.normal(size=(2, n)), rng.normal(size=m)
    got = partitioned_convolution(torch.from_numpy(x), torch.from_numpy(h), part=64)
    want = np.stack([np.convolve(row, h) for row in x])
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fft_convolution(torch.from_numpy(x), torch.from_numpy(h)).numpy(), want, rtol=0,
                               atol=1e-9)


def test_partitioned_convolution_in_float32_at_the_default_part_any_leading_shape():
    rng = np.random.default_rng(1)
    x, h = rng.normal(size=(2, 3, 9000)).astype(np.float32), rng.normal(size=16000).astype(np.float32)
    got = partitioned_convolution(torch.from_numpy(x), torch.from_numpy(h))
    assert got.dtype == torch.float32 and got.shape == (2, 3, 9000 + 16000 - 1)
    want = np.convolve(x[1, 2].astype(np.float64), h.astype(np.float64))
    np.testing.assert_allclose(got[1, 2].numpy(), want, rtol=0, atol=2e-3)   # float32 over 16,000 taps
    assert np.abs(want).max() > 50


def test_reverb_trains_and_renders_the_same_convolution():
    """Reverb takes the single FFT when a gradient is wanted and the partitioned one when not."""
    r = Reverb()
    x = torch.randn(2, 20000)
    trained = r(x)
    assert trained.requires_grad
    with torch.no_grad():
        rendered = r(x)
    torch.testing.assert_close(rendered, trained.detach(), atol=1e-5, rtol=0)


def test_partitioned_convolution_has_the_full_gradient():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(1, 150))).requires_grad_(True)
    h = torch.from_numpy(rng.normal(size=70)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: partitioned_convolution(a, b, part=32), (x, h))


def test_hpn_renders_harmonics_and_noise():
    model = HpN()
    f0 = torch.full((1, 50), 440.0)
    loud = torch.full((1, 50), -20.0)
    with torch.no_grad():
        amps, bands, _ = model.controls(f0, loud)
        assert amps.shape == (1, 50, 100) and bands.shape == (1, 50, 65)
        assert torch.all(amps[..., 18:] == 0)  # harmonics 19+ of 440 Hz are above 8 kHz
        audio = model(f0, loud)
    assert audio.shape == (1, 3200) and torch.isfinite(audio).all()


@pytest.mark.parametrize("kind", ["ddx7", "hpn"])
def test_training_lowers_the_loss(tmp_path, data, kind):
    cfg = train.FitConfig(corpus="synthetic", model=kind, steps=40 if kind == "ddx7" else 8,
                          batch_size=4 if kind == "ddx7" else 2, segment_seconds=0.5, learning_rate=3e-3,
                          valid_every=4, minutes=None)
    config = paper_config("violin") if kind == "ddx7" else None
    before = train.evaluate(_fresh(kind, config), data["valid"])
    result = train.fit(None, tmp_path / "run", cfg, config, data=data)
    assert result.steps == cfg.steps
    assert result.best_valid < before
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, cfg.steps + 1))
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "trained" and info["parameters"] == result.parameters
    model, _ = runs.load_model(tmp_path / "run")
    assert train.evaluate(model, data["valid"]) == pytest.approx(result.best_valid, rel=1e-5)


def _fresh(kind, config):
    torch.manual_seed(0)
    from ddx7.fit.models import build_model

    return build_model(kind, config)


def test_resume_repeats_the_same_loss_curve(tmp_path, data):
    config = paper_config("violin")
    kw = dict(corpus="synthetic", batch_size=2, segment_seconds=0.5, valid_every=3, minutes=None, checkpoint_seconds=0)
    train.fit(None, tmp_path / "straight", train.FitConfig(steps=8, **kw), config, data=data)
    train.fit(None, tmp_path / "split", train.FitConfig(steps=5, **kw), config, data=data)
    # what a kill after the step-5 checkpoint leaves: later metric rows are dropped on resume
    with open(tmp_path / "split" / "metrics.csv", "a") as fh:
        fh.write("6,123.0,,0.001,1.0\n7,12")
    train.fit(None, tmp_path / "split", train.FitConfig(steps=8, **kw), config, data=data, resume=True)
    a = list(csv.DictReader(open(tmp_path / "straight" / "metrics.csv")))
    b = list(csv.DictReader(open(tmp_path / "split" / "metrics.csv")))
    assert [r["step"] for r in a] == [r["step"] for r in b] == [str(i) for i in range(1, 9)]
    np.testing.assert_allclose([float(r["train_loss"]) for r in a], [float(r["train_loss"]) for r in b], rtol=1e-5)
    both = [(x["valid_loss"], y["valid_loss"]) for x, y in zip(a, b) if x["valid_loss"] and y["valid_loss"]]
    assert len(both) >= 2 and all(float(x) == pytest.approx(float(y), rel=1e-5) for x, y in both)


def test_fit_refuses_existing_run_and_bad_settings(tmp_path, data):
    config = paper_config("violin")
    cfg = train.FitConfig(corpus="synthetic", steps=1, batch_size=1, segment_seconds=0.5, minutes=None)
    train.fit(None, tmp_path / "r", cfg, config, data=data)
    with pytest.raises(DX7Error, match="exists; pass --resume"):
        train.fit(None, tmp_path / "r", cfg, config, data=data)
    with pytest.raises(DX7Error, match="nothing to resume"):
        train.fit(None, tmp_path / "other", cfg, config, data=data, resume=True)
    for bad, message in [(dict(model="wavenet"), "unknown model"), (dict(steps=0), "--steps"),
                         (dict(crepe="huge"), "CREPE")]:
        with pytest.raises(DX7Error, match=message):
            train.fit(None, tmp_path / "x", train.FitConfig(**{**cfg.__dict__, **bad}), config, data=data)
    with pytest.raises(DX7Error, match="bad run name"):
        runs.check_name("../evil")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, data):
    config = paper_config("violin")
    cfg = train.FitConfig(corpus="synthetic", steps=2, batch_size=1, segment_seconds=0.5, minutes=None,
                          checkpoint_seconds=0)
    train.fit(None, tmp_path / "r", cfg, config, data=data)
    (tmp_path / "r" / "checkpoint.safetensors").write_bytes(b"\x80\x04 not safetensors")
    with pytest.raises(DX7Error, match="not a readable checkpoint"):
        train.fit(None, tmp_path / "r", train.FitConfig(**{**cfg.__dict__, "steps": 3}), config, data=data, resume=True)


def test_resolve_config():
    assert resolve_config(None, None, "violin").algorithm == 2
    assert resolve_config(None, None, "trumpet").algorithm == 18
    with pytest.raises(DX7Error, match="pass --voice"):
        resolve_config(None, None, "oboe")
    with pytest.raises(DX7Error, match="--voice auto"):
        resolve_config(None, "auto", "violin")


def test_streaming_blocks_match_whole_renders():
    from ddx7.resynth import model_block

    torch.manual_seed(0)
    ddx7 = DDX7(paper_config("flute")).eval()
    hpn = HpN().eval()
    f0 = torch.full((1, 300), 330.0) * torch.linspace(1, 1.5, 300)
    loud = torch.linspace(-60, -10, 300)[None]
    with torch.no_grad():
        whole = ddx7(f0, loud)
        state, parts = None, []
        for a in range(0, 300, 70):
            y, state = model_block(ddx7, f0[:, a:a + 70], loud[:, a:a + 70], state)
            parts.append(y)
        torch.testing.assert_close(torch.cat(parts, 1), whole, atol=2e-4, rtol=0)
        amps, _, _ = hpn.controls(f0, loud)
        harm_whole = hpn.harmonic(f0, amps)
        state, parts = None, []
        for a in range(0, 300, 70):
            y, state = hpn.harmonic_block(f0[:, a:a + 70], amps[:, a:a + 70], state)
            parts.append(y)
        torch.testing.assert_close(torch.cat(parts, 1), harm_whole, atol=1e-5, rtol=0)


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(tmp_path, data):
    """The kernel refuses a checkpoint write halfway through, as on a full disk: the previous
    checkpoint stays whole, no temporary file is left behind, and --resume carries on.

    The refusal is real, not mocked: a file-size limit (RLIMIT_FSIZE, which binds root too) below
    the checkpoint's size makes write(2) fail with EFBIG, as a full disk makes it fail with ENOSPC.
    """
    import errno
    import signal

    resource = pytest.importorskip("resource", reason="no RLIMIT_FSIZE on this platform (POSIX only)")
    config = paper_config("violin")
    kw = dict(corpus="synthetic", batch_size=1, segment_seconds=0.5, minutes=None, checkpoint_seconds=0,
              valid_every=100)
    run = tmp_path / "r"
    train.fit(None, run, train.FitConfig(steps=2, **kw), config, data=data)
    checkpoint = run / "checkpoint.safetensors"
    before, files_before = checkpoint.read_bytes(), sorted(p.name for p in run.iterdir())
    # resuming writes run.json, then metrics.csv and the checkpoint after step 3: only the
    # checkpoint is over the limit
    limit = len(before) // 2
    assert max((run / "run.json").stat().st_size, (run / "metrics.csv").stat().st_size) < limit // 100
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if hard != resource.RLIM_INFINITY and hard < limit:
        pytest.skip(f"the hard file-size limit ({hard} bytes) is below this test's own limit ({limit})")
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failing write(2), not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(OSError) as failed:
            train.fit(None, run, train.FitConfig(steps=4, **kw), config, data=data, resume=True)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert failed.value.errno == errno.EFBIG
    assert checkpoint.read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == files_before  # the partial temporary file is gone
    result = train.fit(None, run, train.FitConfig(steps=4, **kw), config, data=data, resume=True)
    assert result.steps == 4
    assert [r["step"] for r in csv.DictReader(open(run / "metrics.csv"))] == ["1", "2", "3", "4"]


def test_feedback_cap_holds_the_feedback_operator_below_chaos_and_legacy_runs_keep_their_levels(tmp_path, data):
    from ddx7.synth.feedback import STABLE_LOOP_GAIN, feedback_beta, stable_index_limit

    # FEEDBACK 7 at level 99 (index 2) is twice the stable loop gain; FEEDBACK 6 at level 99 is it.
    assert stable_index_limit(7, 2) == pytest.approx(1.0) and stable_index_limit(6, 2) == pytest.approx(2.0)
    assert stable_index_limit(7, 32) == pytest.approx(4.0) and stable_index_limit(0, 2) == math.inf
    config = paper_config("violin")                       # algorithm 2, OP2 feeds itself at FEEDBACK 7
    torch.manual_seed(0)
    capped = DDX7(config, feedback_cap=True)
    f0, loud = torch.full((1, 50), 220.0), torch.linspace(-80, 0, 50)[None]
    with torch.no_grad():
        for p in capped.decoder.parameters():
            p.add_(10.0)                                 # drive every sigmoid towards 1
        index = capped.controls(f0, loud)
    assert float(index[..., 1].max()) <= 1.0 + 1e-6 < float(index[..., 0].max())
    gain = feedback_beta(7, 2) * float(index[..., 1].max()) / 2
    assert gain <= STABLE_LOOP_GAIN + 1e-6
    assert DDX7(paper_config("trumpet"), feedback_cap=True).ceiling.tolist() == [2.0] * 6   # FEEDBACK 6: no cap

    # A run saved before the cap existed loads, resumes and plays without it.
    cfg = train.FitConfig(corpus="synthetic", steps=2, batch_size=1, segment_seconds=0.5, minutes=None,
                          checkpoint_seconds=0)
    assert cfg.feedback_cap
    train.fit(None, tmp_path / "old", cfg, config, data=data)
    info = json.loads((tmp_path / "old" / "run.json").read_text())
    assert info["config"]["feedback_cap"] is True
    del info["config"]["feedback_cap"]
    (tmp_path / "old" / "run.json").write_text(json.dumps(info))
    model, _ = runs.load_model(tmp_path / "old")
    assert not model.feedback_cap and model.ceiling.tolist() == [2.0] * 6
    assert train.FitConfig.from_saved(info["config"]).feedback_cap is False
    train.fit(None, tmp_path / "old", train.FitConfig(**{**cfg.__dict__, "steps": 3}), config, data=data, resume=True)
    info = json.loads((tmp_path / "old" / "run.json").read_text())
    assert info["config"]["feedback_cap"] is False and info["steps"] == 3


def test_loss_gradient_is_finite_where_the_prediction_fades_into_denormals():
    # A model's silent tail (sigmoid levels at float32's bottom) leaves denormal samples; the
    # backward pass of a complex abs there gives NaN, which Adam then spreads into every weight.
    torch.manual_seed(0)
    pred = torch.randn(1, 16000)
    pred[0, 15000:] = 1e-41 * torch.randn(1000)
    target = torch.randn(1, 16000)
    raw = pred.clone().requires_grad_()
    spec = torch.stft(raw, 1024, 256, window=torch.hann_window(1024), center=True, return_complex=True)
    spec.abs().sum().backward()
    assert not torch.isfinite(raw.grad).all()          # the trap this loss avoids
    pred.requires_grad_()
    loss = multiscale_spectral_loss(pred, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_a_non_finite_step_is_skipped_and_a_run_of_them_stops_training(tmp_path, data, monkeypatch):
    config = paper_config("violin")
    kw = dict(corpus="synthetic", batch_size=1, segment_seconds=0.5, minutes=None, checkpoint_seconds=0,
              valid_every=100)
    real = train.multiscale_spectral_loss
    calls = {"n": 0}

    def nan_on_third_step(pred, target):
        calls["n"] += 1
        loss = real(pred, target)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(train, "multiscale_spectral_loss", nan_on_third_step)
    result = train.fit(None, tmp_path / "r", train.FitConfig(steps=5, **kw), config, data=data)
    assert result.steps == 5 and math.isfinite(result.best_valid)
    model, info = runs.load_model(tmp_path / "r")
    assert info["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())

    monkeypatch.setattr(train, "multiscale_spectral_loss", lambda p, t: real(p, t) * float("nan"))
    monkeypatch.setattr(train, "MAX_NONFINITE_STEPS", 3)
    before, _ = runs.read_weights(tmp_path / "r" / "checkpoint.safetensors")
    with pytest.raises(DX7Error, match="training diverged: non-finite loss or gradients in 3 steps"):
        train.fit(None, tmp_path / "r", train.FitConfig(steps=10, **kw), config, data=data, resume=True)
    after, meta = runs.read_weights(tmp_path / "r" / "checkpoint.safetensors")
    assert meta["skipped_steps"] >= 2          # skipped steps change no weight
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("model."))


def test_a_new_model_starts_near_sines():
    # Modulators at a quarter of their ceiling, carriers at half (ddx7.fit.models.MODULATOR_START).
    from ddx7.fit.models import MODULATOR_START

    torch.manual_seed(0)
    model = DDX7(paper_config("violin"))                  # algorithm 2: carriers OP1, OP3
    with torch.no_grad():
        bias = torch.sigmoid(model.decoder.out.bias)
    carrier = model.synth.carrier_mask.bool()
    assert torch.allclose(bias[carrier], torch.full((int(carrier.sum()),), 0.5))
    assert torch.allclose(bias[~carrier], torch.full((int((~carrier).sum()),), MODULATOR_START))


def test_saturated_output_levels_get_a_gradient_back():
    # Pushed far into saturation the spectral loss has no gradient left; the penalty pulls back.
    from ddx7.fit.models import saturation_penalty

    torch.manual_seed(0)
    model = DDX7(paper_config("violin"))
    f0, loud = torch.full((1, 40), 220.0), torch.linspace(-80, 0, 40)[None]
    model.train()
    model(f0, loud)
    assert model.saturation.item() == 0.0                 # a new model's sigmoids are responsive
    with torch.no_grad():
        model.decoder.out.bias.sub_(50.0)                 # every level pinned at 0: silence
    audio = model(f0, loud)
    assert float(audio.detach().abs().max()) < 1e-6 and model.saturation.item() > 100.0
    model.saturation.backward()
    assert bool((model.decoder.out.bias.grad < 0).all())   # gradient descent raises the logits
    logits = torch.tensor([[[-7.0, 0.0, 7.0]]])
    assert float(saturation_penalty(logits)) == pytest.approx(2.0 / 3.0)
