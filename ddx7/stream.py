"""Streaming resynthesis: blocks of samples in, blocks of samples out, as a live input arrives.

    streamer = Streamer(Run.open(home, "violin-ddx7"), block=256)
    for block in blocks:                       # float32 (256,) each, 16 kHz mono
        out = streamer.process(block)          # float32 (256,): the same 16 ms, resynthesised
        streamer.set("level_db", 5, -6.0)      # live controls between blocks (ddx7.live)

The causal pipeline, frame ``k`` covering samples ``[k * hop, (k + 1) * hop)``:

* Features from windows that **end at the frame's last sample** (lookahead 0): A-weighted
  loudness over the last 1024 samples, f0 and voicing confidence by CREPE over the same 1024
  (audio before the start is zeros). CREPE runs on every ``crepe_every``-th frame only (frames
  ``k % crepe_every == 0``) and the frames between hold its last answer.
* The DDX7 decoder (a causal TCN) carries each layer's last ``(kernel - 1) * dilation`` inputs,
  so a block costs only its own frames.
* The synth carries its phases, last frame and feedback memory; the reverb is a uniformly
  partitioned convolution (partitions of one frame) that carries its input spectra.

Output sample ``n`` depends on input samples ``<= n`` only, so the algorithmic latency is the
block: a host hands a block in once it is complete and plays the block out after it.
:func:`render_causal` runs the same pipeline on a whole signal at once; :class:`Streamer`'s
output equals it up to float rounding (tests/test_stream.py). See docs/live.md for what the
causal windows cost in quality.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dx7tools.audio import HOP, SAMPLE_RATE, write_wav_stream
from dx7tools.errors import DX7Error

from ddx7.data import features as feat
from ddx7.data.examples import CONFIDENCE
from ddx7.fit.models import scale_inputs
from ddx7.live import Controls, LiveSynth, Timeline, render_frames

LOUDNESS_FFT = 1024
"""Loudness window (samples): the offline features' formula over a window half as long as theirs
(2048, centred), so the loudness lags the input by 32 ms instead of 64. Measured on the test
excerpts of three trained runs (benchmarks/bench_stream.py, docs/live.md): closer to the
recording than 2048 on every corpus (violin 9.02 vs 9.12 dB spectral, 11.45 vs 12.47 dB loudness
error), and half the FFT work. It must hold a CREPE window (1024). The shorter window reads a
little differently from the training feature on the same steady sound (white noise 3.0 dB lower,
a sine 1.1 dB higher); the measured quality includes that."""
LOOKAHEAD = 0
"""Samples of input after a frame's last sample that its features read."""
TRACKER = "tiny"
"""CREPE model of the streaming f0 (full costs ~60 ms a window on one thread)."""
CREPE_EVERY = 4
"""Frames per CREPE window by default (16 ms): one window per 256-sample block."""
BLOCKS = (64, 128, 256)
"""Block sizes the command line offers (samples)."""
_CREPE_DEFAULTS = inspect.signature(feat.crepe_f0).parameters
_FMIN, _FMAX = _CREPE_DEFAULTS["fmin"].default, _CREPE_DEFAULTS["fmax"].default


# -- features -------------------------------------------------------------------------------------
_WEIGHTING = torch.from_numpy(feat.a_weighting_db(np.arange(LOUDNESS_FFT // 2 + 1) * (SAMPLE_RATE / LOUDNESS_FFT))
                              .astype(np.float32))
_WINDOW = torch.hann_window(LOUDNESS_FFT, periodic=True, dtype=torch.float32)


def loudness_frames(frames: np.ndarray) -> np.ndarray:
    """(n, LOUDNESS_FFT) windows -> (n,) float32 A-weighted loudness in dB, the formula of
    :func:`ddx7.data.features.a_weighted_loudness` applied to given windows."""
    with torch.inference_mode():
        mag = torch.fft.rfft(torch.from_numpy(np.array(frames, np.float32)) * _WINDOW, dim=1).abs()
        db = 20.0 * torch.log10(mag.clamp_min(feat.LOUDNESS_FLOOR)) + _WEIGHTING
        return (db.mean(dim=1) - feat.LOUDNESS_REF_DB).numpy().astype(np.float32)


def crepe_frames(windows: np.ndarray, tracker: str) -> tuple[np.ndarray, np.ndarray]:
    """(n, 1024) windows -> f0 (n,) Hz and confidence (n,), as :func:`ddx7.data.features.crepe_f0`
    decodes them (bins within its default fmin..fmax)."""
    net = feat.Crepe.load(tracker)
    with torch.inference_mode():
        x = torch.from_numpy(windows)
        # one window per call: the same kernels whatever the block, so streaming equals the whole-signal run
        activation = torch.cat([net(x[i:i + 1]) for i in range(len(x))]) if len(x) else x.new_zeros(0, feat.CREPE_BINS)
        cents, conf = feat._decode(activation, torch.from_numpy(feat._bin_mask(_FMIN, _FMAX)),
                                   torch.from_numpy(feat.BIN_CENTS))
    return feat.cents_to_hz(cents.numpy()).astype(np.float32), conf.numpy().astype(np.float32)


def _window_starts(first_frame: int, n: int, every: int) -> np.ndarray:
    """Which of frames first_frame..first_frame+n-1 run CREPE (relative indexes)."""
    k = np.arange(n)
    return k[(first_frame + k) % every == 0]


def _hold(values: np.ndarray, at: np.ndarray, n: int, previous: float) -> np.ndarray:
    """(n,) ``values`` given at indexes ``at``, held until the next; ``previous`` before the first."""
    out = np.full(n, previous, dtype=np.float32)
    for i, k in enumerate(at):
        out[k:] = values[i]
    return out


_CHUNK = 1024  # frames per loudness batch in a whole-signal run (4 MB of windows)


def causal_features(audio: np.ndarray, *, tracker: str = TRACKER, crepe_every: int = CREPE_EVERY) -> dict:
    """The streaming features of a whole signal at once.

    Args:
        audio: (N,) 16 kHz mono; ``T = ceil(N / hop)`` frames (the last one zero-padded).

    Returns:
        ``{"f0_hz", "confidence", "loudness_db"}``, (T,) float32 each.
    """
    x = np.asarray(audio, dtype=np.float32)
    t = -(-len(x) // HOP)
    padded = np.concatenate([np.zeros(LOUDNESS_FFT - HOP, np.float32), x, np.zeros(t * HOP - len(x), np.float32)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, LOUDNESS_FFT)[::HOP][:t]
    at = _window_starts(0, t, crepe_every)
    f0, conf = crepe_frames(np.ascontiguousarray(frames[at, LOUDNESS_FFT - feat.CREPE_WINDOW:]), tracker)
    loud = np.concatenate([loudness_frames(frames[i:i + _CHUNK]) for i in range(0, t, _CHUNK)])
    return {"f0_hz": _hold(f0, at, t, 0.0), "confidence": _hold(conf, at, t, 0.0), "loudness_db": loud}


class CausalFeatures:
    """:func:`causal_features` block by block: keeps the last ``LOUDNESS_FFT - hop`` samples."""

    def __init__(self, tracker: str = TRACKER, crepe_every: int = CREPE_EVERY):
        self.tracker, self.every = tracker, int(crepe_every)
        self.reset()

    def reset(self) -> None:
        self.history = np.zeros(LOUDNESS_FFT - HOP, np.float32)
        self.frame = 0
        self.held = (0.0, 0.0)

    def __call__(self, x: np.ndarray) -> dict:
        """(n * hop,) float32 samples -> the n frames' features (as :func:`causal_features`)."""
        n = len(x) // HOP
        buf = np.concatenate([self.history, x])
        frames = np.lib.stride_tricks.sliding_window_view(buf, LOUDNESS_FFT)[::HOP][:n]
        at = _window_starts(self.frame, n, self.every)
        f0 = np.full(n, self.held[0], np.float32)
        conf = np.full(n, self.held[1], np.float32)
        if len(at):
            f, c = crepe_frames(np.ascontiguousarray(frames[at, LOUDNESS_FFT - feat.CREPE_WINDOW:]), self.tracker)
            f0, conf = _hold(f, at, n, self.held[0]), _hold(c, at, n, self.held[1])
            self.held = (float(f0[-1]), float(conf[-1]))
        self.history = buf[len(buf) - len(self.history):].copy()
        self.frame += n
        return {"f0_hz": f0, "confidence": conf, "loudness_db": loudness_frames(np.ascontiguousarray(frames))}


# -- decoder and reverb state ---------------------------------------------------------------------
class DecoderStream:
    """A DDX7 model's TCN frame block by frame block: each causal layer keeps its last
    ``(kernel - 1) * dilation`` inputs (zeros at the start, as the whole-signal padding).

    The dilated convolutions run as one float32 matrix product per layer (taps stacked) in
    numpy: on a few frames the per-call overhead of torch ops, not the arithmetic, is the cost.
    """

    def __init__(self, model):
        self.model = model
        self.layers = [(_taps(blk.conv1), _taps(blk.conv2),
                        None if isinstance(blk.residual, torch.nn.Identity) else _taps(blk.residual),
                        blk.pad, blk.conv1.dilation[0]) for blk in model.decoder.blocks]
        self.out = _taps(model.decoder.out)
        self.ceiling = model.ceiling.numpy().astype(np.float32)
        self.reset()

    def reset(self) -> None:
        self.memory: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(self.layers)

    def __call__(self, f0: torch.Tensor, loud: torch.Tensor) -> torch.Tensor:
        """(1, n) f0 (Hz) and loudness (dB) -> (1, n, 6) modulation indexes, as ``model.controls``."""
        x = scale_inputs(f0, loud)[0].numpy()                 # (2, n)
        n = x.shape[1]
        for i, (conv1, conv2, residual, pad, dilation) in enumerate(self.layers):
            past = self.memory[i]
            if past is None:
                past = (np.zeros((x.shape[0], pad), np.float32), np.zeros((conv1[0].shape[0], pad), np.float32))
            xin = np.concatenate([past[0], x], 1)
            h = np.maximum(_dilated(conv1, xin, dilation, n), 0.0)
            hin = np.concatenate([past[1], h], 1)
            skip = x if residual is None else _dilated(residual, x, 1, n)
            self.memory[i] = (xin[:, n:], hin[:, n:])
            x = np.maximum(np.maximum(_dilated(conv2, hin, dilation, n), 0.0) + skip, 0.0)
        logits = _dilated(self.out, x, 1, n)
        return torch.from_numpy((self.ceiling / (1.0 + np.exp(-logits.T)))[None].astype(np.float32))


def _taps(conv) -> tuple[np.ndarray, np.ndarray, int]:
    """A Conv1d's weight as (out, kernel * in) float32 (tap-major), its bias (out, 1), its kernel size."""
    w = conv.weight.detach().numpy()
    return (np.ascontiguousarray(w.transpose(0, 2, 1).reshape(w.shape[0], -1), np.float32),
            conv.bias.detach().numpy().astype(np.float32)[:, None], w.shape[2])


def _dilated(taps, x: np.ndarray, dilation: int, n: int) -> np.ndarray:
    """Valid dilated convolution of (in, (k - 1) * dilation + n) -> (out, n) as one matrix product."""
    w, b, k = taps
    cols = x if k == 1 else np.concatenate([x[:, j * dilation: j * dilation + n] for j in range(k)], 0)
    return w @ cols + b


class ReverbStream:
    """:class:`ddx7.fit.models.Reverb` (dry + wet) as a uniformly partitioned convolution whose
    partitions are one block long: per block one FFT of two blocks and ``len(ir) / block``
    spectral products."""

    def __init__(self, reverb, block: int):
        with torch.no_grad():
            ir = reverb.impulse_response().double().numpy()
        self.block = int(block)
        parts = -(-len(ir) // self.block)
        ir = np.pad(ir, (0, parts * self.block - len(ir))).reshape(parts, self.block)
        self.spectra = np.fft.rfft(ir, 2 * self.block, axis=1)[::-1].copy()  # the oldest input meets the last part
        self.reset()

    def reset(self) -> None:
        parts = len(self.spectra)
        self.inputs = np.zeros((2 * parts, self.block + 1), np.complex128)  # each spectrum twice: a ring in one slice
        self.newest = parts - 1
        self.previous = np.zeros(self.block)

    def __call__(self, dry: np.ndarray) -> np.ndarray:
        """(block,) dry -> (block,) dry + wet (float64)."""
        parts = len(self.spectra)
        x = dry.astype(np.float64)
        self.newest = (self.newest + 1) % parts
        self.inputs[self.newest] = self.inputs[self.newest + parts] = np.fft.rfft(np.concatenate([self.previous, x]))
        window = self.inputs[self.newest + 1: self.newest + 1 + parts]  # oldest .. newest
        wet = np.fft.irfft(np.einsum("jf,jf->f", window, self.spectra), 2 * self.block)[self.block:]
        self.previous = x
        return x + wet


# -- the streamer ---------------------------------------------------------------------------------
def _ddx7_model(run_or_model):
    model = run_or_model.model() if hasattr(run_or_model, "record") else run_or_model
    if getattr(model, "kind", None) != "ddx7":
        raise DX7Error("streaming resynthesis needs a DDX7 run (HpN's noise is not reproducible block by block)")
    return model


def _threshold(run_or_model, tracker: str) -> float:
    """The voicing threshold: the run's own if it was trained with this CREPE model, else the
    model's default (a threshold set for CREPE full means little for tiny's lower confidences)."""
    cfg = run_or_model.record.get("config", {}) if hasattr(run_or_model, "record") else {}
    own = cfg.get("confidence") if cfg.get("crepe", "full") == tracker else None
    return own if own is not None else CONFIDENCE[tracker]


class Streamer:
    """Streaming resynthesis with a DDX7 run (see the module notes).

    Args:
        run: a :class:`ddx7.run.Run` (or a DDX7 model in eval mode).
        block: samples per :meth:`process` call, a positive multiple of the hop (64); sets
            :attr:`latency_ms`.
        controls: a :class:`ddx7.live.Timeline` (or :class:`ddx7.live.Controls`) of live settings;
            the streamer keeps its own copy (:attr:`timeline`), changed by :meth:`set`.
        tracker: CREPE model, "tiny" (default) or "full".
        crepe_every: frames per CREPE window (1 = every frame).
    """

    def __init__(self, run, *, block: int = 256, controls=None, tracker: str = TRACKER,
                 crepe_every: int = CREPE_EVERY):
        self.block = check_block(block)
        if tracker not in feat.CREPE_MODELS:
            raise DX7Error(f"unknown f0 tracker {tracker!r}; choose one of {', '.join(feat.CREPE_MODELS)}")
        if int(crepe_every) != crepe_every or crepe_every < 1:
            raise DX7Error(f"crepe_every must be a whole number >= 1, got {crepe_every!r}")
        self.model = _ddx7_model(run)
        self.threshold = _threshold(run, tracker)
        self.timeline = controls.copy() if isinstance(controls, Timeline) else Timeline(controls or Controls())
        self.features = CausalFeatures(tracker, crepe_every)
        self.decoder = DecoderStream(self.model)
        self.reverb = ReverbStream(self.model.reverb, self.block)
        self.live = LiveSynth(self.model, self.timeline)
        self.reset()

    @property
    def latency_ms(self) -> float:
        """Algorithmic latency: lookahead of the feature windows (0) plus one block, in ms."""
        return 1000.0 * (LOOKAHEAD + self.block) / SAMPLE_RATE

    @property
    def controls(self):
        """The :class:`ddx7.live.Controls` in force for the next block."""
        return self.timeline.at(self.frame)

    def reset(self) -> None:
        """Back to the start of a stream (silence before), controls kept (the changes that
        :meth:`set` folded in hold from the start)."""
        self.features.reset()
        self.decoder.reset()
        self.reverb.reset()
        self.synth_state, self.frame, self.nonfinite = None, 0, 0

    def set(self, name: str, op: int | None = None, value=None) -> None:
        """Change a live control from the next block on, e.g. ``set("level_db", 5, -6.0)``,
        ``set("on", 2, False)``, ``set("transpose", value=12)`` (see :class:`ddx7.live.Controls`).

        The changes before the current frame are folded into the timeline's starting controls
        (:meth:`ddx7.live.Timeline.fold`), so a long live session keeps only the changes of the
        current block and those still to come, and a change costs O(1) when none of a take's is
        still to come. After :meth:`reset` the stream starts from the folded controls."""
        self.timeline.fold(self.frame)
        self.timeline.add(self.frame, name, op, value)

    def process(self, block: np.ndarray, sample_rate: float = SAMPLE_RATE) -> np.ndarray:
        """One block of input samples -> the same number of output samples (float32).

        Non-finite input samples are taken as silence (counted in :attr:`nonfinite`).

        Raises:
            DX7Error: not a 1-D block of :attr:`block` samples, or ``sample_rate``
                is not the stream's 16 kHz (a rate change mid-stream needs a new Streamer).
        """
        x = np.asarray(block, dtype=np.float32)
        if sample_rate != SAMPLE_RATE:
            raise DX7Error(f"the stream runs at {SAMPLE_RATE} Hz and got a block at {sample_rate} Hz: a sample "
                           "rate change mid-stream needs a new Streamer on resampled input")
        if x.shape != (self.block,):
            raise DX7Error(f"this stream takes blocks of {self.block} samples (1-D), got shape {x.shape}")
        bad = ~np.isfinite(x)
        if bad.any():
            self.nonfinite += int(bad.sum())
            x = np.where(bad, np.float32(0.0), x)
        feats = self.features(x)
        with torch.inference_mode():
            f0 = _voiced(feats, self.threshold) * self.timeline.f0_factors(self.frame, len(x) // HOP)[None]
            index = self.decoder(f0, torch.from_numpy(feats["loudness_db"])[None])
            dry, self.synth_state = self.live.render(f0, index, self.frame, self.synth_state)
        self.frame += len(x) // HOP
        return self.reverb(dry[0].numpy()).astype(np.float32)


def check_block(block) -> int:
    if not isinstance(block, (int, np.integer)) or block <= 0 or block % HOP:
        raise DX7Error(f"--block must be a positive multiple of {HOP} samples (e.g. {', '.join(map(str, BLOCKS))}), "
                       f"got {block!r}")
    return int(block)


def _voiced(feats: dict, threshold: float) -> torch.Tensor:
    f0 = np.where(feats["confidence"] >= threshold, feats["f0_hz"], 0.0).astype(np.float32)
    return torch.from_numpy(f0)[None]


def render_causal(run, audio: np.ndarray, *, controls=None, tracker: str = TRACKER,
                  crepe_every: int = CREPE_EVERY) -> np.ndarray:
    """The streaming pipeline on a whole 16 kHz signal at once: (N,) -> (ceil(N / hop) * hop,) float32."""
    model = _ddx7_model(run)
    timeline = controls if isinstance(controls, Timeline) else Timeline(controls) if controls else Timeline()
    feats = causal_features(audio, tracker=tracker, crepe_every=crepe_every)
    f0, loud = _voiced(feats, _threshold(run, tracker)), torch.from_numpy(feats["loudness_db"])[None]
    return render_frames(model, f0, loud, timeline)[0].numpy().astype(np.float32)


# -- files ----------------------------------------------------------------------------------------
def stream_file(run_dir, src, dst, *, block: int = 256, controls: Timeline | None = None,
                tracker: str = TRACKER, crepe_every: int = CREPE_EVERY,
                progress: Callable[[float, float], None] | None = None) -> dict:
    """Resynthesise ``src`` into ``dst`` through a :class:`Streamer` on one thread, timing each block.

    Returns:
        dict with ``seconds``, ``frames``, ``output``, ``block``, ``latency_ms``, ``block_ms``
        (``median``, ``p99``, ``max`` wall-clock milliseconds per :meth:`Streamer.process` call),
        ``block_cpu_ms`` (the same in the thread's CPU time, which excludes waits for a busy CPU),
        ``block_budget_ms`` (the block's duration),
        ``real_time_factor`` (audio seconds per compute second), ``tracker``, ``crepe_every``,
        ``nonfinite_samples``.
    """
    import tempfile

    import soundfile

    from ddx7.resynth import _to_16k_mono
    from ddx7.run import Run

    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise DX7Error("no such file", str(src))
    if not dst.parent.is_dir():
        raise DX7Error("cannot write: the folder does not exist", str(dst))
    streamer = Streamer(Run.at(run_dir), block=block, controls=controls, tracker=tracker, crepe_every=crepe_every)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        streamer.process(np.zeros(streamer.block, np.float32))  # loads CREPE, first-call costs
        streamer.reset()
        with tempfile.TemporaryDirectory(prefix="dx7tools-stream-") as tmp:
            total = _to_16k_mono(src, Path(tmp) / "in16k.wav")
            times: list[float] = []
            with soundfile.SoundFile(str(Path(tmp) / "in16k.wav")) as fin:
                write_wav_stream(dst, _timed_blocks(streamer, fin, total, times, progress), SAMPLE_RATE)
    finally:
        torch.set_num_threads(threads)
    wall, cpu = (np.asarray(times) * 1000.0).T
    return {"seconds": total / SAMPLE_RATE, "frames": -(-total // HOP), "output": str(dst), "block": streamer.block,
            "latency_ms": streamer.latency_ms, "block_ms": _spread(wall), "block_cpu_ms": _spread(cpu),
            "block_budget_ms": 1000.0 * streamer.block / SAMPLE_RATE,
            "real_time_factor": total / SAMPLE_RATE / max(float(wall.sum()) / 1000.0, 1e-9),
            "tracker": tracker, "crepe_every": crepe_every, "threads": 1, "nonfinite_samples": streamer.nonfinite}


def _spread(ms: np.ndarray) -> dict:
    return {"median": float(np.median(ms)), "p99": float(np.percentile(ms, 99)), "max": float(ms.max())}


def _timed_blocks(streamer: Streamer, fin, total: int, times: list, progress):
    """Blocks of ``fin`` through ``streamer`` (the last zero-padded, its output cut to the input)."""
    done = 0
    while done < total:
        x = fin.read(streamer.block, dtype="float32")
        n = len(x)
        if n < streamer.block:
            x = np.pad(x, (0, streamer.block - n))
        t0, c0 = time.perf_counter(), time.thread_time()
        y = streamer.process(x)
        times.append((time.perf_counter() - t0, time.thread_time() - c0))
        done += n
        if progress:
            progress(done / SAMPLE_RATE, total / SAMPLE_RATE)
        yield y[:n]
