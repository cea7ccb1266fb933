"""PESTO pitch estimation, re-implemented on the weights that the ``pesto-pitch`` wheel ships.

PESTO (Riou et al. 2023, "PESTO: Pitch Estimation with Self-supervised Transposition-equivariant
Objective"; v2 of the package adds a variable-Q front end) estimates pitch frame by frame from
one column of a constant-Q spectrum, so every frame is independent of the others (no context,
hence streaming-friendly). Only the trained weights (``pesto/weights/mir-1k_g7.ckpt``, LGPL)
come from the ``pesto-pitch`` 2.0.1 wheel; the package itself is never imported (it imports
torchaudio, which has no build for our torch). The checkpoint is read with
``torch.load(weights_only=True)``; its hyper-parameters are stored as omegaconf containers, which
are unpickled as inert placeholders (they run no code and nothing reads them).

The pipeline, per frame centred on sample ``k * hop`` of 16 kHz audio:

1. **Variable-Q transform**: 251 bins, 3 per semitone (36 per octave), the first centred one
   bin below 27.5 Hz so that bin ``3 m + 1`` is MIDI note ``21 + m`` (27.5 Hz ... 7.9 kHz).
   Bin ``k`` at ``f_k`` is a Hann-windowed complex exponential of ``ceil(Q sr / (f_k + gamma /
   alpha))`` samples with ``alpha = 2**(1/36) - 1``, ``Q = 1 / alpha``, ``gamma = 7`` (the
   longest, at the bottom, is 2127 samples = 133 ms), divided by its L1 norm and the result
   scaled by the square root of its length. Audio outside the signal is zeros.
2. **Log power** ``ln(max(|X|, eps)**2)`` (float32 eps); the 219 middle bins (16 cropped at each
   end) go to the network.
3. **Network**: layer norm over the 219 bins; a conv of 40 channels (kernel 39, "same"), two
   more with residual connections, then four 1x1 convs (40 -> 30 -> 30 -> 10 -> 3), each conv
   followed by a leaky ReLU (slope 0.3); the 3 x 219 values flattened (channel-major) go
   through a Toeplitz layer (one conv of kernel 657 + 384 - 1 over the flattened vector,
   padding 383) to 384 logits, a softmax gives the activations: 3 bins per semitone.
4. **Decoding**: the activation-weighted mean of the bins within one semitone of the strongest
   (5 bins), divided by 3, minus the checkpoint's calibration ``shift`` (6.678 semitones), is the
   pitch in MIDI semitones.
5. **Voicing confidence**: a small classifier on the linear power of all 251 bins: a conv
   (kernel 39, stride 3) -> ReLU -> 71 values plus the spectral flatness -> linear -> sigmoid.

Cost: the transform is one matrix product of (frames, 2128) windows by a (2128, 502) kernel
matrix (~1.1 MMAC per frame), the network ~28 MMAC per frame (the two residual convs dominate).
"""

from __future__ import annotations

import collections
import importlib.util
import math
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dx7tools.errors import DX7Error

PESTO_SAMPLE_RATE = 16000
PESTO_CHECKPOINT = "mir-1k_g7.ckpt"
_LEAKY_SLOPE = 0.3
_EPS = float(torch.finfo(torch.float32).eps)

# Names the checkpoint's pickle refers to for its hyper-parameters (omegaconf containers).
_PLACEHOLDER_NAMES = ("omegaconf.listconfig.ListConfig", "omegaconf.dictconfig.DictConfig",
                      "omegaconf.base.ContainerMetadata", "omegaconf.base.Metadata",
                      "omegaconf.nodes.AnyNode", "typing.Any")


class _Placeholder:
    """Stands in for a class the checkpoint names but we do not need: keeps its state, runs nothing."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


def pesto_weights_path() -> Path:
    """Where ``mir-1k_g7.ckpt`` of the installed ``pesto-pitch`` wheel is (found, not imported).

    Raises:
        DX7Error: pesto-pitch is not installed.
    """
    try:
        spec = importlib.util.find_spec("pesto")
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "weights" / PESTO_CHECKPOINT
        if path.is_file():
            return path
    raise DX7Error("PESTO weights not found: pip install --no-deps pesto-pitch==2.0.1")


def read_checkpoint(path) -> dict:
    """The checkpoint's ``state_dict`` and ``hcqt_params``, by the weights-only unpickler."""
    stubs = [(type(name.rsplit(".", 1)[1], (_Placeholder,), {}), name) for name in _PLACEHOLDER_NAMES]
    try:
        with torch.serialization.safe_globals(stubs + [list, dict, int, collections.defaultdict]):
            ckpt = torch.load(path, weights_only=True, map_location="cpu")
        return {"state_dict": dict(ckpt["state_dict"]), "vqt": dict(ckpt["hcqt_params"])}
    except Exception as exc:
        raise DX7Error(f"cannot read the PESTO weights: {type(exc).__name__}: "
                       f"{str(exc).splitlines()[0] if str(exc) else ''}", str(path)) from None


def vqt_kernels(sample_rate: float, fmin: float, n_bins: int, bins_per_semitone: int, gamma: float
                ) -> tuple[np.ndarray, int, np.ndarray]:
    """The variable-Q kernels as one matrix over a centred window.

    Returns:
        ``(kernels, left, freqs)``: kernels (W, 2 * n_bins) float32, the real parts then the
        imaginary parts, scaled (divided by their L1 norm, times the square root of their
        length); the samples ``x[c - left : c - left + W]`` times ``kernels`` are the bins of the
        frame centred on sample ``c``. freqs (n_bins,) Hz.
    """
    bpo = 12 * bins_per_semitone
    fmin_centred = fmin / 2.0 ** ((bins_per_semitone - 1) / (24 * bins_per_semitone))
    freqs = fmin_centred * 2.0 ** (np.arange(n_bins) / bpo)
    if freqs[-1] >= sample_rate / 2:
        raise DX7Error(f"the top PESTO bin ({freqs[-1]:.0f} Hz) is above Nyquist at {sample_rate:g} Hz")
    alpha = 2.0 ** (1.0 / bpo) - 1.0
    lengths = np.ceil((1.0 / alpha) * sample_rate / (freqs + gamma / alpha)).astype(int)
    left = int(lengths.max() + 1) // 2          # offsets run from -ceil(l / 2) to floor(l / 2) - 1
    width = left + int(lengths.max()) // 2
    kernels = np.zeros((width, 2 * n_bins), dtype=np.float64)
    for k, (f, n) in enumerate(zip(freqs, lengths)):
        offsets = np.arange(n) - (n + 1) // 2
        window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)    # periodic Hann
        scale = math.sqrt(n) / window.sum()
        rows = offsets + left
        kernels[rows, k] = scale * window * np.cos(2 * np.pi * f * offsets / sample_rate)
        kernels[rows, n_bins + k] = scale * window * np.sin(2 * np.pi * f * offsets / sample_rate)
    return kernels.astype(np.float32), left, freqs


class Pesto(nn.Module):
    """The PESTO network with its variable-Q front end (inference only).

    :meth:`load` gives the trained model; ``forward`` maps windows to activations and confidence.
    """

    def __init__(self, state: dict, vqt: dict, sample_rate: float = PESTO_SAMPLE_RATE):
        super().__init__()
        if list(vqt.get("harmonics", [1])) != [1]:
            raise DX7Error("only single-harmonic PESTO checkpoints are supported")
        self.bins_per_semitone = int(vqt["bins_per_semitone"])
        kernels, self.left, _ = vqt_kernels(sample_rate, float(vqt["fmin"]), int(vqt["n_bins"]),
                                            self.bins_per_semitone, float(vqt.get("gamma", 0)))
        self.register_buffer("kernels", torch.from_numpy(kernels))
        self.n_bins = int(vqt["n_bins"])
        self.n_in = state["encoder.layernorm.weight"].shape[-1]
        self.crop = (self.n_bins - self.n_in) // 2
        self.params = {k: v.float() for k, v in state.items()}
        self.prefilt = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.prefilt_layers.")})
        self.pointwise = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.conv_layers.")})
        self.shift = float(state["shift"])

    @property
    def window(self) -> int:
        """Samples each frame reads (2128 at 16 kHz)."""
        return self.kernels.shape[0]

    @classmethod
    def load(cls) -> "Pesto":
        """The trained model, loaded once per process and shared (do not modify it)."""
        with _LOAD_LOCK:
            if "pesto" not in _LOADED:
                ckpt = read_checkpoint(pesto_weights_path())
                _LOADED["pesto"] = cls(ckpt["state_dict"], ckpt["vqt"]).eval().requires_grad_(False)
            return _LOADED["pesto"]

    def spectrum(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, W) windows -> (B, n_bins) magnitudes ``max(|X|, eps)``."""
        z = windows @ self.kernels
        return torch.hypot(z[:, : self.n_bins], z[:, self.n_bins:]).clamp_min(_EPS)

    def encoder(self, log_power: torch.Tensor) -> torch.Tensor:
        """(B, n_in) log power -> (B, 384) activations (softmax)."""
        p = self.params
        x = F.layer_norm(log_power[:, None, :], (1, self.n_in), p["encoder.layernorm.weight"],
                         p["encoder.layernorm.bias"])
        w = p["encoder.conv1.0.weight"]
        x = F.leaky_relu(F.conv1d(x, w, p["encoder.conv1.0.bias"], padding=w.shape[-1] // 2), _LEAKY_SLOPE)
        for i in self.prefilt:
            w = p[f"encoder.prefilt_layers.{i}.0.weight"]
            x = x + F.leaky_relu(F.conv1d(x, w, p[f"encoder.prefilt_layers.{i}.0.bias"], padding=w.shape[-1] // 2),
                                 _LEAKY_SLOPE)
        for i in self.pointwise:
            x = F.leaky_relu(F.conv1d(x, p[f"encoder.conv_layers.{i}.weight"], p[f"encoder.conv_layers.{i}.bias"]),
                             _LEAKY_SLOPE)
        fc = p["encoder.fc.weight"]                       # (1, 1, n_flat + 384 - 1)
        n_out = fc.shape[-1] - x.shape[1] * x.shape[2] + 1
        logits = F.conv1d(x.flatten(1)[:, None, :], fc, padding=n_out - 1)[:, 0, :]
        return torch.softmax(logits, dim=-1)

    def confidence(self, power: torch.Tensor) -> torch.Tensor:
        """(B, n_bins) linear power -> (B,) voicing confidence in (0, 1)."""
        p = self.params
        flatness = power.log().mean(dim=-1, keepdim=True).exp() / power.mean(dim=-1, keepdim=True).clamp_min(1e-8)
        x = F.relu(F.conv1d(power[:, None, :], p["confidence.conv.weight"], p["confidence.conv.bias"],
                            stride=3)[:, 0, :])
        return torch.sigmoid(F.linear(torch.cat([x, flatness], dim=-1), p["confidence.linear.weight"],
                                      p["confidence.linear.bias"]))[:, 0]

    def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, W) windows of 16 kHz audio -> ``(activations (B, 384), confidence (B,))``."""
        magnitude = self.spectrum(windows)
        log_power = 2.0 * magnitude.log()
        return self.encoder(log_power[:, self.crop: self.crop + self.n_in]), self.confidence(magnitude.square())

    def decode(self, activations: torch.Tensor) -> torch.Tensor:
        """(B, 384) activations -> (B,) pitch in MIDI semitones (float64)."""
        act = activations.double()
        n = act.shape[-1]
        bps = self.bins_per_semitone
        centre = act.argmax(dim=-1, keepdim=True)
        idx = (centre + torch.arange(1 - bps, bps)).clamp(0, n - 1)
        weight = act.gather(-1, idx)
        bins = (weight * idx).sum(-1) / weight.sum(-1).clamp_min(1e-300)
        return bins / bps - self.shift


_LOADED: dict[str, Pesto] = {}
_LOAD_LOCK = threading.Lock()


def midi_to_hz(midi):
    """MIDI semitones -> Hz (A4 = 69 = 440 Hz)."""
    return 440.0 * np.exp2((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def pesto_frames(audio: np.ndarray, step: int, count: int, batch_frames: int = 512, progress=None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Pitch (MIDI, float64) and confidence of ``count`` frames centred on ``j * step``.

    Args:
        audio: (N,) float32 at 16 kHz (validated by the caller); zeros outside.
        step: samples between frames; count: frames (may reach past the end).
        batch_frames: frames per forward pass; progress: ``progress(done, count)`` per batch.
    """
    net = Pesto.load()
    n = len(audio)
    left = net.left
    tail = max(0, (count - 1) * step + net.window - left - n)
    midi = np.empty(count)
    conf = np.empty(count)
    with torch.inference_mode():
        padded = F.pad(torch.from_numpy(audio), (left, tail))
        windows = padded.unfold(0, net.window, step)[:count]
        for start in range(0, count, batch_frames):
            stop = min(count, start + batch_frames)
            act, c = net(windows[start:stop].contiguous())
            midi[start:stop] = net.decode(act).numpy()
            conf[start:stop] = c.double().numpy()
            if progress is not None:
                progress(stop, count)
    return midi, conf


__all__ = ["PESTO_SAMPLE_RATE", "Pesto", "midi_to_hz", "pesto_frames", "pesto_weights_path",
           "read_checkpoint", "vqt_kernels"]
