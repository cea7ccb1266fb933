"""The two decoders of the paper, their synths and the shared reverb, small enough to read at once.

* :class:`DDX7` — a causal TCN maps (f0, loudness) per frame to six output levels (modulation
  indexes, sigmoid x Imax) that drive :class:`ddx7.synth.fm.FMSynth` for a fixed configuration.
* :class:`HpN` — the DDSP harmonic-plus-noise decoder (MLPs, GRU, 100 harmonics, 65 noise bands).
* :class:`Reverb` — a learnable 1-second exponentially decaying noise impulse response, after
  either synth.

Inputs: ``f0_hz`` (B, T) (0 = unvoiced) and ``loudness_db`` (B, T) at the synth's frame rate
(250/s at 16 kHz), scaled by :func:`scale_inputs` to about [0, 1]. Outputs: audio (B, T * hop).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from dx7tools.audio import HOP, SAMPLE_RATE
from dx7tools.fixed_config import FixedConfig

from ddx7.synth import core
from ddx7.synth.feedback import index_ceiling
from ddx7.synth.fm import FMSynth


def scale_inputs(f0_hz: torch.Tensor, loudness_db: torch.Tensor) -> torch.Tensor:
    """(B, T) f0 and loudness -> (B, 2, T): MIDI pitch / 127 (0 when unvoiced), (dB + 80) / 80."""
    pitch = torch.where(f0_hz > 0, 69.0 + 12.0 * torch.log2(f0_hz.clamp_min(1e-3) / 440.0), torch.zeros_like(f0_hz))
    return torch.stack([pitch.clamp(0.0, 127.0) / 127.0, (loudness_db + 80.0) / 80.0], dim=1).float()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# -- reverb -------------------------------------------------------------------------------------
class Reverb(nn.Module):
    """``y = x + x * ir``, ``ir = gain * exp(-decay * t) * noise`` over ``seconds`` (noise fixed, seeded)."""

    def __init__(self, sample_rate: float = SAMPLE_RATE, seconds: float = 1.0, seed: int = 0):
        super().__init__()
        n = int(sample_rate * seconds)
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("noise", torch.rand(n, generator=g) * 2.0 - 1.0)
        self.register_buffer("t", torch.arange(n, dtype=torch.float32) / sample_rate)
        self.decay = nn.Parameter(torch.tensor(2.0))     # softplus -> about 2.1 / s
        self.gain = nn.Parameter(torch.tensor(-4.0))      # exp -> 0.018 wet gain

    def impulse_response(self) -> torch.Tensor:
        ir = torch.exp(self.gain) * torch.exp(-F.softplus(self.decay) * 4.0 * self.t) * self.noise
        return torch.cat([ir.new_zeros(1), ir[1:]])  # the dry path is the identity

    def forward(self, audio: torch.Tensor, tail: torch.Tensor | None = None):
        """(B, N) -> (B, N). With ``tail`` (B, len(ir) - 1) given, also returns the next block's tail
        (block-by-block rendering equals rendering at once)."""
        ir = self.impulse_response()
        n, m = audio.shape[-1], ir.shape[0]
        training = ir.requires_grad or audio.requires_grad
        wet = fft_convolution(audio, ir) if training else partitioned_convolution(audio, ir)
        out = audio + wet[..., :n]
        if tail is None:
            return out
        out = out + F.pad(tail, (0, max(0, n - tail.shape[-1])))[..., :n]
        rest = F.pad(tail[..., n:], (0, m - 1 - tail[..., n:].shape[-1]))
        return out, rest + F.pad(wet[..., n:], (0, m - 1 - wet[..., n:].shape[-1]))


PARTITION = 4096
"""Samples per part of :func:`partitioned_convolution`: FFTs of 8192 points. On the development
machine 10 s of audio against the 1 s response took 1.7-2.9 ms this way (benchmarks/bench_stream.py
times it) and 14-21 ms as one FFT over the whole signal; parts of 1024, 2048 and 8192 samples took
5.0, 4.1 and 4.0 ms in one comparison."""


def fft_convolution(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Full linear convolution ``x * h`` by one FFT over the whole signal: (..., N), (M,) -> (..., N + M - 1).

    What :class:`Reverb` trains with: its backward pass is a few large FFTs, where the partitioned
    form's is many copies (2-3x slower on a training batch)."""
    n, m = x.shape[-1], h.shape[0]
    size = 1 << math.ceil(math.log2(n + m - 1))
    return torch.fft.irfft(torch.fft.rfft(x, size) * torch.fft.rfft(h, size), size)[..., : n + m - 1]


def partitioned_convolution(x: torch.Tensor, h: torch.Tensor, part: int = PARTITION) -> torch.Tensor:
    """Full linear convolution ``x * h``: (..., N), (M,) -> (..., N + M - 1), differentiable.

    Both are cut into parts of ``part`` samples; every pair of parts meets in one batch of FFTs of
    ``2 part`` points (a uniformly partitioned convolution, overlap-add), which keeps each FFT small
    enough to stay in cache: what :class:`Reverb` renders with when no gradient is wanted. Equals
    :func:`fft_convolution` up to float rounding.
    """
    lead, n = x.shape[:-1], x.shape[-1]
    x = x.reshape(-1, n)
    b, m = x.shape[0], h.shape[0]
    k = -(-m // part)
    blocks = -(-(n + m - 1) // part)
    hs = torch.fft.rfft(F.pad(h, (0, k * part - m)).reshape(k, part), 2 * part)          # (k, part + 1)
    xs = torch.fft.rfft(F.pad(x, (0, blocks * part - n)).reshape(b, blocks, part), 2 * part)
    ys = xs * hs[0]
    for j in range(1, min(k, blocks)):
        ys[:, j:] += xs[:, :-j] * hs[j]        # part j of h delays its product by j blocks
    y = torch.fft.irfft(ys, 2 * part)                                                  # (b, blocks, 2 part)
    out = y[..., :part] + F.pad(y[:, :-1, part:], (0, 0, 1, 0))                          # overlap-add
    return out.reshape(b, blocks * part)[:, : n + m - 1].reshape(*lead, n + m - 1)


# -- DDX7 ---------------------------------------------------------------------------------------
class CausalBlock(nn.Module):
    """Two weight-normalised causal dilated convolutions with ReLU and dropout, plus a residual."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.conv1 = weight_norm(nn.Conv1d(c_in, c_out, kernel, dilation=dilation))
        self.conv2 = weight_norm(nn.Conv1d(c_out, c_out, kernel, dilation=dilation))
        self.drop = nn.Dropout(dropout)
        self.residual = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(F.relu(self.conv1(F.pad(x, (self.pad, 0)))))
        h = self.drop(F.relu(self.conv2(F.pad(h, (self.pad, 0)))))
        return F.relu(h + self.residual(x))


class TCN(nn.Module):
    """Causal TCN: (B, 2, T) -> (B, outputs, T); receptive field ``1 + 2 (k-1) (2^blocks - 1)`` frames."""

    def __init__(self, inputs: int = 2, outputs: int = 6, hidden: int = 128, blocks: int = 5, kernel: int = 3,
                 dropout: float = 0.1):
        super().__init__()
        layers, c = [], inputs
        for i in range(blocks):
            layers.append(CausalBlock(c, hidden, kernel, 2 ** i, dropout))
            c = hidden
        self.blocks = nn.Sequential(*layers)
        self.out = nn.Conv1d(hidden, outputs, 1)
        self.receptive_field = 1 + 2 * (kernel - 1) * (2 ** blocks - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(x))

    def fuse_weight_norm(self) -> "TCN":
        """Bake the weight-norm parametrisations into plain weights (inference only; same outputs)."""
        from torch.nn.utils import parametrize

        for m in self.modules():
            if isinstance(m, nn.Conv1d) and parametrize.is_parametrized(m, "weight"):
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
        return self


MODULATOR_START = 0.25
"""A new model's modulators start at this fraction of their ceiling, its carriers at half.

With every index at half its ceiling (an unbiased sigmoid) a deeply modulated configuration
starts as broadband noise, and the spectral loss first falls by silencing the carriers: their
sigmoids saturate at 0 and never recover. Measured (violin/flute, 200 steps, seed 0):
FB:PercBr1 (algorithm 14, FEEDBACK 7) validation loss 67.8 -> 9.35 and HARP 2 (algorithm 3,
FEEDBACK 6) 59.5 -> 12.0; configurations that trained did about the same (the paper's violin
9.17 -> 9.19, POWERSYN A 9.79 -> 10.00). A start at 0.1 also trained them (9.52) but cost the
good ones more (9.44, 10.18)."""


def start_logits(carrier_mask: torch.Tensor) -> torch.Tensor:
    """(6,) carrier mask -> (6,) output logits a new DDX7 model starts from (its output layer's
    bias): 0 for carriers (half their ceiling), :data:`MODULATOR_START` of it for modulators."""
    modulator = torch.full((6,), math.log(MODULATOR_START / (1.0 - MODULATOR_START)))
    return torch.where(carrier_mask.bool(), torch.zeros(6), modulator)


LIVE_LOGIT = 6.0
"""Beyond this the output sigmoids are taken as saturated (0.25 % from their bound)."""


def saturation_penalty(logits: torch.Tensor) -> torch.Tensor:
    """Mean squared excess of ``|logits|`` over :data:`LIVE_LOGIT`: (B, 6, T) -> scalar.

    Zero while the sigmoids are responsive. Adam's first full-size steps can throw the output
    levels far into saturation, where the spectral loss has no gradient left and the model plays
    constant levels (often silence) for good; this term is the only gradient there, and it
    pulls them back.
    """
    return F.relu(logits.abs() - LIVE_LOGIT).pow(2).mean()


class DDX7(nn.Module):
    """TCN -> six output levels (sigmoid x ``imax``) -> FM synth -> reverb."""

    kind = "ddx7"

    def __init__(self, config: FixedConfig, sample_rate: float = SAMPLE_RATE, hop_length: int = HOP, imax: float = 2.0,
                 hidden: int = 128, blocks: int = 5, kernel: int = 3, dropout: float = 0.1,
                 feedback_cap: bool = False):
        super().__init__()
        self.imax = float(imax)
        # Per-operator ceiling of the index. ``feedback_cap``: the feedback operator's ceiling keeps
        # its loop out of the chaotic regime (see ddx7.synth.feedback.STABLE_LOOP_GAIN), where training
        # gets stuck; the sigmoid is scaled, not clipped, so its gradient never vanishes.
        self.register_buffer("ceiling", index_ceiling(config.algorithm, config.feedback, feedback_cap, self.imax),
                             persistent=False)
        self.feedback_cap = bool(feedback_cap)
        self.decoder = TCN(2, 6, hidden, blocks, kernel, dropout)
        self.synth = FMSynth(config, sample_rate, hop_length)
        self.reverb = Reverb(sample_rate)
        self.hop_length = hop_length
        with torch.no_grad():   # start near plain sines (see MODULATOR_START)
            self.decoder.out.bias.copy_(start_logits(self.synth.carrier_mask))

    @property
    def context_frames(self) -> int:
        return self.decoder.receptive_field - 1

    def controls(self, f0_hz: torch.Tensor, loudness_db: torch.Tensor) -> torch.Tensor:
        """(B, T) features -> (B, T, 6) modulation indexes in [0, imax] (the feedback operator's
        in [0, its stable limit] with ``feedback_cap``)."""
        logits = self.decoder(scale_inputs(f0_hz, loudness_db))
        if self.training:
            self.saturation = saturation_penalty(logits)
        return self.ceiling * torch.sigmoid(logits).transpose(1, 2)

    def forward(self, f0_hz: torch.Tensor, loudness_db: torch.Tensor) -> torch.Tensor:
        return self.reverb(self.synth(f0_hz, self.controls(f0_hz, loudness_db)))


# -- HpN ----------------------------------------------------------------------------------------
def mlp(c_in: int, width: int = 512, layers: int = 3) -> nn.Sequential:
    mods = []
    for i in range(layers):
        mods += [nn.Linear(c_in if i == 0 else width, width), nn.LayerNorm(width), nn.LeakyReLU()]
    return nn.Sequential(*mods)


def modified_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """DDSP's output nonlinearity: 2 sigmoid(x)^ln(10) + 1e-7 (positive, wide dynamic range)."""
    return 2.0 * torch.sigmoid(x) ** math.log(10.0) + 1e-7


class HpN(nn.Module):
    """DDSP harmonic-plus-noise decoder: 100 harmonics + 65-band filtered noise, then reverb."""

    kind = "hpn"

    def __init__(self, sample_rate: float = SAMPLE_RATE, hop_length: int = HOP, harmonics: int = 100,
                 noise_bands: int = 65, width: int = 512):
        super().__init__()
        self.sample_rate, self.hop_length = float(sample_rate), int(hop_length)
        self.harmonics, self.noise_bands = harmonics, noise_bands
        self.f0_mlp, self.loud_mlp = mlp(1, width), mlp(1, width)
        self.gru = nn.GRU(2 * width, width, batch_first=True)
        self.out_mlp = mlp(width + 2, width)
        self.dense = nn.Linear(width, 1 + harmonics + noise_bands)
        self.reverb = Reverb(sample_rate)
        self.context_frames = 0  # recurrent: streaming carries the GRU state instead

    def controls(self, f0_hz, loudness_db, hidden=None):
        x = scale_inputs(f0_hz, loudness_db).transpose(1, 2)  # (B, T, 2)
        h, hidden = self.gru(torch.cat([self.f0_mlp(x[..., :1]), self.loud_mlp(x[..., 1:])], -1), hidden)
        y = self.dense(self.out_mlp(torch.cat([h, x], -1)))
        amplitude = modified_sigmoid(y[..., :1])
        k = torch.arange(1, self.harmonics + 1, device=y.device, dtype=y.dtype)
        audible = (f0_hz[..., None] * k < 0.5 * self.sample_rate) & (f0_hz[..., None] > 0)
        dist = modified_sigmoid(y[..., 1:1 + self.harmonics]) * audible
        dist = dist / dist.sum(-1, keepdim=True).clamp_min(1e-7)
        return amplitude * dist, modified_sigmoid(y[..., 1 + self.harmonics:] - 5.0), hidden

    def harmonic(self, f0_hz: torch.Tensor, amps: torch.Tensor) -> torch.Tensor:
        """(B, T) f0, (B, T, K) amplitudes -> (B, N): sum_k a_k sin(2 pi k phase)."""
        return self.harmonic_block(f0_hz, amps, None)[0]

    def harmonic_block(self, f0_hz: torch.Tensor, amps: torch.Tensor, state: tuple | None):
        """Streaming :meth:`harmonic`: ``state`` = (phase int64 (B, 1), previous f0 (B,), previous amps
        (B, K)) or None at the start. Returns ``(audio, state)``."""
        b, t = f0_hz.shape
        f = f0_hz.double()[:, None, :]
        if state is None:
            state = (torch.zeros(b, 1, dtype=torch.int64, device=f0_hz.device), f0_hz[:, 0], amps[:, 0])
        start, prev_f0, prev_amps = state
        phase, end = core.accumulate_phase(f, prev_f0.double()[:, None], self.sample_rate, self.hop_length, start)
        a = core.upsample_causal(amps.transpose(1, 2), prev_amps, self.hop_length)  # (B, K, N)
        k = torch.arange(1, self.harmonics + 1, device=a.device, dtype=a.dtype)[None, :, None]
        audio = (a * torch.sin(2.0 * math.pi * torch.remainder(k * phase, 1.0))).sum(1)
        return audio, (end, f0_hz[:, -1].detach(), amps[:, -1].detach())

    def noise(self, bands: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """(B, T, bands) linear magnitudes -> (B, T * hop) filtered noise (windowed FIR per frame)."""
        b, t, _ = bands.shape
        hop, n_ir = self.hop_length, 2 * (self.noise_bands - 1)
        ir = torch.fft.irfft(bands.to(torch.float32), n_ir)                     # zero phase
        ir = torch.roll(ir, n_ir // 2, -1) * torch.hann_window(n_ir, device=bands.device)
        g = None if seed is None else torch.Generator(device=bands.device).manual_seed(seed)
        white = torch.rand(b, t, hop, generator=g, device=bands.device) * 2.0 - 1.0
        size = 1 << math.ceil(math.log2(hop + n_ir - 1))
        frames = torch.fft.irfft(torch.fft.rfft(white, size) * torch.fft.rfft(ir, size), size)  # (B, T, size)
        out = F.fold(frames.transpose(1, 2), (1, (t - 1) * hop + size), (1, size), stride=(1, hop))
        return out.reshape(b, -1)[:, n_ir // 2: n_ir // 2 + t * hop]

    def forward(self, f0_hz: torch.Tensor, loudness_db: torch.Tensor) -> torch.Tensor:
        amps, bands, _ = self.controls(f0_hz, loudness_db)
        return self.reverb(self.harmonic(f0_hz, amps) + self.noise(bands))


def build_model(kind: str, config: FixedConfig | None = None, **kwargs) -> nn.Module:
    if kind == "ddx7":
        if config is None:
            raise ValueError("DDX7 needs a fixed configuration")
        return DDX7(config, **kwargs)
    if kind == "hpn":
        return HpN(**{k: v for k, v in kwargs.items() if k in ("sample_rate", "hop_length")})
    raise ValueError(f"unknown model {kind!r}")
