"""Audio: the project's rates, float WAV writing (atomic) and reading, a log spectrogram.

The rates below are defined here once and nowhere else: corpora, features, DDX7 models, the
selector, the exporter and the envelope curves all work at ``SAMPLE_RATE`` with frames of ``HOP``
samples (the DDX7 paper's 16 kHz and 4 ms).
"""

from __future__ import annotations

import io
import os

import numpy as np

from .errors import DX7Error
from .files import atomic_target, atomic_write_bytes

SAMPLE_RATE = 16000
"""Hz: the rate of corpora, features and DDX7 models (the paper's)."""
HOP = 64
"""Samples per frame: 4 ms at :data:`SAMPLE_RATE`."""
FRAME_RATE = SAMPLE_RATE / HOP
"""Frames per second (250.0): f0, loudness, operator levels and envelopes are sampled at this rate."""


def write_wav(path: str | os.PathLike, audio, sample_rate: int) -> None:
    """Write mono or (samples, channels) audio as 32-bit float WAV, atomically.

    Float keeps renders that peak above 1.0 (several carriers at full level) unclipped.
    """
    import soundfile

    x = np.asarray(audio, dtype=np.float32)
    if x.ndim not in (1, 2) or x.shape[0] == 0:
        raise DX7Error(f"audio must be (samples,) or (samples, channels) and not empty, got {x.shape}", str(path))
    if not np.all(np.isfinite(x)):
        raise DX7Error("audio has non-finite samples", str(path))
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise DX7Error(f"sample rate must be a whole number > 0, got {sample_rate!r}", str(path))
    buf = io.BytesIO()
    soundfile.write(buf, x, int(sample_rate), format="WAV", subtype="FLOAT")
    data = bytearray(buf.getvalue())
    peak = data.find(b"PEAK", 12)
    if peak > 0:  # libsndfile stamps its PEAK chunk with the time: zero it, same audio -> same bytes
        data[peak + 12: peak + 16] = b"\0\0\0\0"
    atomic_write_bytes(path, bytes(data))


def write_wav_stream(path: str | os.PathLike, chunks, sample_rate: int) -> int:
    """Write audio that arrives in chunks (float32 (samples,) each) as a 32-bit float WAV, in
    constant memory and atomically: if the chunks stop with an error, no file is left.

    Returns:
        the number of samples written.

    Raises:
        DX7Error: a chunk with non-finite samples, or no audio at all.
    """
    import soundfile

    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise DX7Error(f"sample rate must be a whole number > 0, got {sample_rate!r}", str(path))
    written = 0
    with atomic_target(path) as tmp:
        with soundfile.SoundFile(tmp, "w", int(sample_rate), 1, subtype="FLOAT", format="WAV") as f:
            for chunk in chunks:
                x = np.asarray(chunk, dtype=np.float32)
                if not np.all(np.isfinite(x)):
                    raise DX7Error("audio has non-finite samples", str(path))
                f.write(x)
                written += len(x)
        if written == 0:
            raise DX7Error("nothing to write: the audio is empty", str(path))
    return written


def read_audio(path: str | os.PathLike, *, mono: bool = True) -> tuple[np.ndarray, int]:
    """Read any file libsndfile reads (wav, flac, ogg, mp3...).

    Returns:
        ``(audio, sample_rate)``: float32 (samples,) if ``mono`` (channels averaged), else
        (samples, channels).
    """
    import soundfile

    try:
        x, sr = soundfile.read(os.fspath(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError, soundfile.LibsndfileError) as exc:
        raise DX7Error(f"cannot read audio: {exc}", str(path)) from None
    return (x.mean(axis=1) if mono else x), int(sr)


def log_spectrogram(audio: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """Magnitude in dB of a Hann-windowed STFT, frames starting at sample 0 (no centring).

    Args:
        audio: (samples,) float; shorter than ``n_fft`` is zero-padded to one frame.

    Returns:
        float64 (frames, n_fft // 2 + 1), frames = 1 + (samples - n_fft) // hop; dB of the
        magnitude plus 1e-9 (about -180 dB for silence).
    """
    x = np.asarray(audio, dtype=np.float64)
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    n = 1 + (len(x) - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop][:n] * np.hanning(n_fft)
    return 20.0 * np.log10(np.abs(np.fft.rfft(frames, axis=1)) + 1e-9)
