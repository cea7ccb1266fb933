"""The differentiable FM synth: fixed configurations, core functions, a per-sample reference,
gradients, streaming, long-file phase, anti-aliasing and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ddx7.synth import core
from ddx7.synth.feedback import FEEDBACK_SCALE, feedback_beta, feedback_chain
from ddx7.synth import FMSynth
from dx7tools import Voice
from dx7tools.algorithms import get_algorithm
from dx7tools.audio import HOP, SAMPLE_RATE as SR
from dx7tools.errors import DX7Error
from dx7tools.fixed_config import FixedConfig
from dx7tools.frequency import operator_frequency


def random_config(rng: np.random.Generator, algorithm: int | None = None, feedback: int | None = None,
                  fixed_probability: float = 0.2) -> FixedConfig:
    return FixedConfig(
        algorithm=int(rng.integers(1, 33)) if algorithm is None else algorithm,
        mode=tuple(int(rng.random() < fixed_probability) for _ in range(6)),
        coarse=tuple(int(c) for c in rng.integers(0, 5, 6)),
        fine=tuple(int(f) for f in rng.integers(0, 100, 6)),
        detune=tuple(int(d) for d in rng.integers(0, 15, 6)),
        feedback=int(rng.integers(0, 8)) if feedback is None else feedback,
    )


def controls(rng: np.random.Generator, frames: int, batch: int = 2, unvoiced: bool = False):
    f0 = torch.from_numpy(rng.uniform(80, 600, (batch, 1)) * np.exp(np.cumsum(rng.normal(0, 0.01, (batch, frames)), 1)))
    if unvoiced:
        f0[:, frames // 3: frames // 2] = 0.0
    index = torch.from_numpy(rng.uniform(0, 2, (batch, frames, 6)))
    return f0.float(), index.float()


# --- fixed configuration ------------------------------------------------------------------------
def test_fixed_config_from_voice_and_back():
    v = Voice.init().replace(algorithm=17, feedback=6, op3_mode=1, op3_coarse=2, op3_fine=50,
                             op5_coarse=3, op5_fine=18, op2_detune=10)
    cfg = FixedConfig.from_voice(v)
    assert cfg.algorithm == 18 and cfg.feedback == 6 and cfg.name == "INIT VOICE"
    assert cfg.is_fixed == (False, False, True, False, False, False)
    assert cfg.ratios[4] == pytest.approx(3.54) and cfg.fixed_hz[2] == pytest.approx(316.2278, rel=1e-6)
    again = FixedConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.key == cfg.key
    assert FixedConfig.from_voice(cfg.apply_to(Voice.init())) == cfg
    assert "alg 18" in cfg.describe() and "316.228Hz" in cfg.describe()


def test_fixed_config_frequencies_match_dx7tools(rng):
    for _ in range(20):
        cfg = random_config(rng)
        f0 = rng.uniform(30, 2000, 5)
        want = np.stack([operator_frequency(cfg.mode[i], cfg.coarse[i], cfg.fine[i], cfg.detune[i], f0)
                         for i in range(6)], -1)
        np.testing.assert_allclose(cfg.frequencies(f0), want, rtol=1e-12)
        got = core.operator_frequencies(torch.from_numpy(f0), torch.tensor(cfg.ratios, dtype=torch.float64),
                                        torch.tensor(cfg.fixed_hz, dtype=torch.float64), torch.tensor(cfg.is_fixed),
                                        torch.tensor(cfg.detune, dtype=torch.float64) - 7)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("bad, message", [
    (dict(algorithm=33), "algorithm"),
    (dict(mode=(0, 0, 2, 0, 0, 0)), "mode"),
    (dict(coarse=(0, 0, 0, 0, 0)), "coarse"),
    (dict(fine=(0, 0, 0, 0, 0, 100)), "fine"),
    (dict(feedback=8), "feedback"),
    (dict(detune=(7, 7, 7, 7, 7, 7.5)), "detune"),
])
def test_fixed_config_rejects_bad_values(bad, message):
    good = dict(algorithm=1, mode=(0,) * 6, coarse=(1,) * 6, fine=(0,) * 6)
    with pytest.raises(DX7Error, match=message):
        FixedConfig(**{**good, **bad})


def test_fixed_config_from_bad_dict():
    with pytest.raises(DX7Error, match="not a fixed configuration"):
        FixedConfig.from_dict({"algorithm": 1})
    data = FixedConfig.from_voice(Voice.init()).to_dict()
    data["operators"] = data["operators"][:5]
    with pytest.raises(DX7Error, match="op 1-6"):
        FixedConfig.from_dict(data)


# --- core functions -----------------------------------------------------------------------------
def test_upsample_causal_known_answer():
    frames = torch.tensor([[[1.0, 3.0, 3.0]]])
    out = core.upsample_causal(frames, torch.tensor([[0.0]]), 4)[0, 0]
    torch.testing.assert_close(out, torch.tensor([0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0, 3.0, 3.0, 3.0]))


def test_phase_is_exact_over_ten_minutes():
    frames = 10 * 60 * 250
    f = 440.0 * 2 ** (1 / 12)  # an awkward frequency
    freq = torch.full((1, 1, frames), f, dtype=torch.float64)
    phase, end = core.accumulate_phase(freq, freq[..., 0], SR, HOP, torch.zeros(1, 1, dtype=torch.int64),
                                       torch.float64)
    n = torch.tensor([0, 1, 63, 64, frames * HOP // 2 + 5, frames * HOP - 1])
    ideal = (n.double() * f / SR) % 1.0
    # frame advances are rounded to 2^-40 cycle: < 1e-7 cycle after 150,000 frames
    err = (phase[0, 0, n] - ideal + 0.5) % 1.0 - 0.5
    assert err.abs().max() < frames * 2.0 ** -41 + 1e-12
    assert abs(int(end) / 2 ** 40 - (frames * HOP * f / SR) % 1.0) < frames * 2.0 ** -41 + 1e-12


def test_phase_follows_a_frequency_ramp():
    # 100 Hz -> 300 Hz within one frame: the phase is the running sum of the ramped increments.
    freq = torch.tensor([[[300.0]]], dtype=torch.float64)
    phase, _ = core.accumulate_phase(freq, torch.tensor([[100.0]], dtype=torch.float64), SR, HOP,
                                     torch.zeros(1, 1, dtype=torch.int64), torch.float64)
    inc = (100.0 + 200.0 * np.arange(1, HOP + 1) / HOP) / SR
    want = np.concatenate([[0.0], np.cumsum(inc)[:-1]])
    np.testing.assert_allclose(phase[0, 0].numpy(), want, atol=1e-12)


def test_feedback_kernel_matches_a_per_sample_loop(rng):
    for length in (1, 2, 3):
        theta = rng.uniform(-4, 4, (2, length, 300))
        amp = rng.uniform(0, 1, (2, length, 300))
        beta = np.array([0.5, 2 * np.pi])
        memory = rng.normal(0, 0.3, (2, 2))
        want = np.zeros_like(theta)
        for b in range(2):
            m1, m2 = memory[b]
            for i in range(300):
                y = amp[b, 0, i] * np.sin(theta[b, 0, i] + beta[b] * (m1 + m2) / 2)
                want[b, 0, i] = y
                for k in range(1, length):
                    y = amp[b, k, i] * np.sin(theta[b, k, i] + 4 * np.pi * y)
                    want[b, k, i] = y
                m1, m2 = y, m1
        got = feedback_chain(*(torch.from_numpy(a) for a in (theta, amp, beta, memory)))
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)


def test_feedback_kernel_in_float32_follows_float64(rng):
    """float32 inputs give float32 output within float32 rounding of the float64 run (a chain of 2,
    a loop gain below the chaotic regime, so rounding differences do not grow)."""
    theta = rng.uniform(-4, 4, (1, 2, 4000))
    amp = rng.uniform(0, 0.5, (1, 2, 4000))
    beta, memory = np.array([0.8]), rng.normal(0, 0.3, (1, 2))
    wide = feedback_chain(*(torch.from_numpy(a) for a in (theta, amp, beta, memory))).numpy()
    narrow = feedback_chain(*(torch.from_numpy(a.astype(np.float32)) for a in (theta, amp, beta, memory)))
    assert narrow.dtype == torch.float32
    np.testing.assert_allclose(narrow.numpy(), wide, rtol=0, atol=5e-5)


def test_feedback_kernels_take_float32_sines_for_float32_audio():
    """The point of casting the kernels' constants: with float32 arrays, numba types every sine and
    cosine of the forward and backward loops as float32 -> float32 (a Python float in the
    arithmetic would promote them to float64, which the output's dtype alone would not show)."""
    import io

    from ddx7.synth.feedback import _backward, _forward

    args = [torch.rand(1, 2, 50), torch.rand(1, 2, 50, requires_grad=True), torch.tensor([0.5]), torch.zeros(1, 2)]
    feedback_chain(*args).sum().backward()
    for kernel in (_forward, _backward):
        sig = next(s for s in kernel.signatures if str(s[0]).startswith("array(float32"))
        buf = io.StringIO()
        kernel.inspect_types(file=buf, signature=sig)
        calls = [line for line in buf.getvalue().splitlines() if "= call $" in line and "load_attr" in line]
        assert calls and all(line.endswith(":: (float32,) -> float32") for line in calls), kernel


def test_feedback_scale():
    assert feedback_beta(0, 1) == 0.0
    assert feedback_beta(7, 1) == pytest.approx(2 * np.pi)
    assert feedback_beta(6, 2) == pytest.approx(np.pi)
    for alg in FEEDBACK_SCALE:
        assert feedback_beta(7, alg) == pytest.approx(np.pi / 2)
    t = feedback_beta(torch.tensor([0.0, 7.0]), 1)
    torch.testing.assert_close(t, torch.tensor([0.0, 2 * np.pi]))


def reference_render(cfg: FixedConfig, f0: np.ndarray, index: np.ndarray, hop: int = HOP) -> np.ndarray:
    """Per-sample float64 DX7 from the algorithm table, written independently of ddx7.synth.core."""
    alg = get_algorithm(cfg.algorithm)
    src, dst = alg.feedback
    beta = feedback_beta(cfg.feedback, cfg.algorithm)
    voiced = f0 > 0
    freq = np.stack([np.where(cfg.is_fixed[i] | voiced, operator_frequency(
        cfg.mode[i], cfg.coarse[i], cfg.fine[i], cfg.detune[i], np.maximum(f0, 1e-3)), 0.0) for i in range(6)], 1)
    gated = index * (np.array(cfg.is_fixed)[None, :] | voiced[:, None])  # ratio operators off when unvoiced
    prev_f, prev_i = freq[0], gated[0]
    phase = np.zeros(6)
    fb = [0.0, 0.0]
    out = []
    for k in range(len(f0)):
        for j in range(hop):
            w = (j + 1) / hop
            f = prev_f + (freq[k] - prev_f) * w
            amp = (prev_i + (gated[k] - prev_i) * w) / 2
            y = {}
            for op in range(6, 0, -1):  # modulators always have higher numbers
                arg = 2 * np.pi * phase[op - 1] + sum(4 * np.pi * y[m] for m in alg.modulators_of(op))
                if op == dst:
                    arg += beta * (fb[0] + fb[1]) / 2
                y[op] = amp[op - 1] * np.sin(arg)
            fb = [y[src], fb[0]]
            out.append(sum(y[c] for c in alg.carriers))
            phase = (phase + f / SR) % 1.0
        prev_f, prev_i = freq[k], gated[k]
    return np.array(out)


@pytest.mark.parametrize("algorithm", [1, 2, 4, 6, 16, 18, 21, 32])
def test_synth_matches_per_sample_reference(algorithm, rng):
    cfg = random_config(rng, algorithm, feedback=int(rng.integers(1, 6)))
    f0, index = controls(rng, 6, batch=1, unvoiced=True)
    index = index * 0.4  # keep clear of the chaotic corner, where any rounding difference grows
    synth = FMSynth(cfg, antialias=False).double()
    got = synth(f0.double(), index.double())[0].numpy()
    want = reference_render(cfg, f0[0].double().numpy(), index[0].double().numpy())
    # phases agree to 1e-12 cycle (frame starts are rounded to 2^-40); feedback and deep chains amplify it
    np.testing.assert_allclose(got, want, atol=1e-5)


# --- gradients ----------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", [1, 4, 6, 32])
def test_gradcheck_levels_and_feedback(algorithm):
    cfg = FixedConfig(algorithm=algorithm, mode=(0, 0, 0, 0, 0, 1), coarse=(1, 2, 1, 3, 1, 2),
                      fine=(0, 0, 50, 0, 0, 0), feedback=5)
    synth = FMSynth(cfg, sample_rate=2000, hop_length=4, learn_feedback=True).double()
    f0 = torch.full((1, 5), 110.0, dtype=torch.float64)
    index = torch.rand(1, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda i: synth(f0, i), (index,))

    def with_feedback(fb):
        return torch.func.functional_call(synth, {"feedback": fb}, (f0, index.detach()))

    assert torch.autograd.gradcheck(with_feedback, (torch.tensor(5.3, dtype=torch.float64, requires_grad=True),))


def test_gradients_reach_every_operator_in_float32(rng):
    cfg = random_config(rng, 2, feedback=7)
    synth = FMSynth(cfg)
    f0, index = controls(rng, 20)
    index.requires_grad_(True)
    synth(f0, index).pow(2).mean().backward()
    assert torch.isfinite(index.grad).all()
    assert (index.grad.abs().sum((0, 1)) > 0).all()


# --- streaming and long input -------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", [2, 4, 6, 32])
def test_streaming_equals_whole(algorithm, rng):
    cfg = random_config(rng, algorithm, feedback=6)
    synth = FMSynth(cfg)
    f0, index = controls(rng, 100, unvoiced=True)
    whole = synth(f0, index)
    state, parts, k = None, [], 0
    for size in [1, 7, 2, 40, 1, 49]:
        audio, state = synth.render(f0[:, k:k + size], index[:, k:k + size], state)
        parts.append(audio)
        k += size
    assert k == 100
    streamed = torch.cat(parts, 1)
    assert streamed.shape == whole.shape
    assert (streamed - whole).abs().max().item() <= 1e-6  # measured: 0 (bit-identical)


def test_long_render_keeps_pitch_and_amplitude():
    # 3 minutes of a single carrier: the last second is still a clean sine at the right phase.
    cfg = FixedConfig(algorithm=32, mode=(0,) * 6, coarse=(1,) * 6, fine=(0,) * 6)
    synth = FMSynth(cfg)
    frames = 3 * 60 * 250
    f0 = torch.full((1, frames), 261.6255653)
    index = torch.zeros(1, frames, 6)
    index[..., 0] = 2.0
    audio = synth(f0, index)[0, -SR:].double().numpy()
    n = np.arange(frames * HOP - SR, frames * HOP)
    f = float(np.float32(261.6255653))  # f0 enters as float32
    want = np.sin(2 * np.pi * ((n * f / SR) % 1.0))
    assert np.abs(audio - want).max() < 2e-6  # float32 sine of a phase that has not drifted


# --- documented behaviour -----------------------------------------------------------------------
def test_unvoiced_frames_keep_only_fixed_operators():
    cfg = FixedConfig(algorithm=32, mode=(0, 1, 0, 0, 0, 0), coarse=(1, 2, 1, 1, 1, 1), fine=(0,) * 6)
    synth = FMSynth(cfg)
    index = torch.zeros(1, 20, 6)
    index[..., :2] = 2.0
    f0 = torch.zeros(1, 20)
    audio = synth(f0, index)[0].double().numpy()
    fixed_only = np.sin(2 * np.pi * ((np.arange(20 * HOP) * 100 / SR) % 1.0))
    np.testing.assert_allclose(audio, fixed_only, atol=1e-6)


def test_antialias_mutes_operators_above_nyquist():
    cfg = FixedConfig(algorithm=32, mode=(0,) * 6, coarse=(1, 20, 0, 0, 0, 0), fine=(0,) * 6)
    index = torch.zeros(1, 50, 6)
    index[..., :2] = 2.0
    f0 = torch.full((1, 50), 440.0)  # OP2 at 8.8 kHz > 8 kHz Nyquist
    muted = FMSynth(cfg)(f0, index)[0]
    plain = FMSynth(cfg, antialias=False)(f0, index)[0]
    alone = FMSynth(cfg)(f0, index * torch.tensor([1.0, 0, 0, 0, 0, 0]))[0]
    torch.testing.assert_close(muted, alone)
    assert (plain - alone).abs().max() > 0.5
    gain = core.antialias_gain(torch.tensor([1000.0, 7200.0, 7600.0, 8000.0, 9000.0]), SR)
    torch.testing.assert_close(gain, torch.tensor([1.0, 1.0, 0.5, 0.0, 0.0]))


def test_any_sample_rate():
    cfg = FixedConfig.from_voice(Voice.init())
    synth = FMSynth(cfg, sample_rate=44100, hop_length=441)
    audio = synth(torch.full((1, 10), 440.0), torch.full((1, 10, 6), 2.0))
    assert audio.shape == (1, 4410) and synth.frame_rate == 100
    assert FMSynth(cfg, sample_rate=48000).hop_length == 192


# --- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("f0, index, message", [
    (torch.full((1, 4), -1.0), torch.ones(1, 4, 6), "f0 must be finite"),
    (torch.tensor([[100.0, float("nan"), 100, 100]]), torch.ones(1, 4, 6), "f0 must be finite"),
    (torch.full((1, 4), float("inf")), torch.ones(1, 4, 6), "f0 must be finite"),
    (torch.full((1, 4), 100.0), torch.ones(1, 4, 5), "index"),
    (torch.full((1, 4), 100.0), torch.ones(1, 3, 6), "index"),
    (torch.full((1, 4), 100.0), torch.full((1, 4, 6), float("nan")), "finite"),
    (torch.full((1, 0), 100.0), torch.ones(1, 0, 6), "no frames"),
])
def test_bad_controls(f0, index, message):
    synth = FMSynth(FixedConfig.from_voice(Voice.init()))
    with pytest.raises(DX7Error, match=message):
        synth(f0, index)


def test_bad_synth_settings():
    cfg = FixedConfig.from_voice(Voice.init())
    for kwargs, message in [(dict(sample_rate=0), "sample rate"), (dict(sample_rate=-16000), "sample rate"),
                            (dict(sample_rate=44100), "hop_length"), (dict(hop_length=0), "hop_length")]:
        with pytest.raises(DX7Error, match=message):
            FMSynth(cfg, **kwargs)
    with pytest.raises(DX7Error, match="FixedConfig"):
        FMSynth("alg 1")


def test_huge_levels_never_give_nan(rng):
    synth = FMSynth(random_config(rng, 4, feedback=7))
    audio = synth(torch.full((1, 30), 8000.0), torch.full((1, 30, 6), 1e4))
    assert torch.isfinite(audio).all()
