"""Audio files: float WAV writing (atomic) and reading, via soundfile (libsndfile)."""

from __future__ import annotations

import io
import os

import numpy as np

from .errors import DX7Error
from .sysex import atomic_write_bytes


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
