"""Resynthesis of any recording with a trained run, block by block in constant memory.

The input (any length, rate or channel count soundfile reads) is converted to 16 kHz mono in a
stream (soxr) into a temporary file; features are then computed per block with enough audio on
both sides that every frame sees what it would see in a whole-file pass; the decoder keeps its
left context (the TCN's receptive field) or its recurrent state (HpN's GRU); the synth and the
reverb carry their state across blocks. The output is 16 kHz 32-bit float WAV, written to a
temporary file and renamed into place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dx7tools.errors import DX7Error

from dx7tools.audio import FRAME_RATE, HOP, SAMPLE_RATE

from ddx7.data.examples import confidence_threshold, voiced_f0
from ddx7.live import LiveSynth
from ddx7.run import Run

MARGIN = 1024  # samples of context on each side of a block (loudness n_fft / 2; CREPE needs 512)


def _to_16k_mono(src: Path, dst: Path, block: int = 1 << 16) -> int:
    import soundfile
    import soxr

    try:
        info = soundfile.info(str(src))
    except Exception as exc:  # soundfile raises several types for unreadable files
        raise DX7Error(f"cannot read audio: {exc}", str(src)) from None
    stream = soxr.ResampleStream(info.samplerate, SAMPLE_RATE, 1, dtype="float32") \
        if info.samplerate != SAMPLE_RATE else None
    n = 0
    with soundfile.SoundFile(str(dst), "w", SAMPLE_RATE, 1, "FLOAT") as out:
        for x in _blocks(src, block):
            mono = x.mean(axis=1)
            if not np.all(np.isfinite(mono)):
                raise DX7Error("audio has NaN or infinite samples", str(src))
            y = stream.resample_chunk(mono, last=False) if stream else mono
            out.write(y)
            n += len(y)
        if stream:
            y = stream.resample_chunk(np.zeros(0, np.float32), last=True)
            out.write(y)
            n += len(y)
    if n == 0:
        raise DX7Error("the audio file is empty", str(src))
    return n


def _blocks(src: Path, block: int):
    """``soundfile.blocks`` of ``src`` (float32, 2-D); a stream that cannot be read to its end (a
    truncated or corrupt file whose header reads fine) is a DX7Error naming the file."""
    import soundfile

    try:
        yield from soundfile.blocks(str(src), blocksize=block, dtype="float32", always_2d=True)
    except soundfile.SoundFileError as exc:
        raise DX7Error(f"cannot read audio: {exc}", str(src)) from None


def _read(fh, start: int, stop: int, total: int) -> np.ndarray:
    """Samples [start, stop) of an open SoundFile, zeros outside the file."""
    out = np.zeros(stop - start, np.float32)
    a, b = max(start, 0), min(stop, total)
    if b > a:
        fh.seek(a)
        out[a - start: b - start] = fh.read(b - a, dtype="float32")
    return out


def resynthesize_file(run_dir, src, dst, *, block_seconds: float = 10.0, controls=None,
                      progress: Callable[[float, float], None] | None = None) -> dict:
    """Resynthesise ``src`` with the run's best model into ``dst`` (16 kHz float WAV).

    ``controls``: a :class:`ddx7.live.Timeline` of live DX7 settings (DDX7 runs only), or None.

    Returns:
        dict with ``seconds`` (audio length), ``frames`` and ``output``.
    """
    import soundfile

    from ddx7.data.features import compute_features

    run = Run.at(run_dir)
    model, cfg = run.model(), run.fit_config
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise DX7Error("no such file", str(src))
    if not dst.parent.is_dir():
        raise DX7Error("cannot write: the folder does not exist", str(dst))
    live = None if controls is None else LiveSynth(model, controls)
    block = max(1, int(block_seconds * SAMPLE_RATE / HOP))
    with tempfile.TemporaryDirectory(prefix="dx7tools-resynth-") as tmp:
        mono = Path(tmp) / "in16k.wav"
        total = _to_16k_mono(src, mono)
        frames = -(-total // HOP)
        fd, part = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
        os.close(fd)
        try:
            with soundfile.SoundFile(str(mono)) as fin, \
                    soundfile.SoundFile(part, "w", SAMPLE_RATE, 1, "FLOAT", format="WAV") as fout, torch.no_grad():
                state = None
                for k0 in range(0, frames, block):
                    k1 = min(frames, k0 + block)
                    chunk = _read(fin, k0 * HOP - MARGIN, k1 * HOP + MARGIN, total)
                    feats = compute_features(chunk, SAMPLE_RATE, hop=HOP, tracker=cfg.tracker, crepe_hop=cfg.crepe_hop)
                    sl = slice(MARGIN // HOP, MARGIN // HOP + (k1 - k0))
                    f0 = voiced_f0(np.asarray(feats["f0_hz"])[sl], np.asarray(feats["confidence"])[sl],
                                   confidence_threshold(cfg))
                    loud = np.asarray(feats["loudness_db"], dtype=np.float32)[sl]
                    audio, state = model_block(model, torch.from_numpy(f0)[None], torch.from_numpy(loud)[None], state,
                                               live)
                    fout.write(audio[0].numpy()[: max(0, min((k1 - k0) * HOP, total - k0 * HOP))])
                    if progress:
                        progress(k1 / FRAME_RATE, frames / FRAME_RATE)
            os.replace(part, dst)
        except BaseException:
            Path(part).unlink(missing_ok=True)
            raise
    return {"seconds": total / SAMPLE_RATE, "frames": frames, "output": str(dst)}


def model_block(model, f0: torch.Tensor, loud: torch.Tensor, state: dict | None, live: LiveSynth | None = None):
    """One block of a streaming render: (B, T) features -> (B, T * hop) audio, new state.

    ``live``: live controls over the DDX7 synth (transposition of the f0 the decoder and the
    synth see, operator levels, frequencies, feedback), frame-exact across blocks."""
    state = dict(state or {})
    k0 = state.get("frame", 0)
    state["frame"] = k0 + f0.shape[1]
    if model.kind == "ddx7":
        if live is not None:
            f0 = f0 * live.timeline.f0_factors(k0, f0.shape[1]).to(f0.dtype)
        ctx_f0, ctx_loud = state.get("ctx", (f0[:, :0], loud[:, :0]))
        all_f0, all_loud = torch.cat([ctx_f0, f0], 1), torch.cat([ctx_loud, loud], 1)
        index = model.controls(all_f0, all_loud)[:, ctx_f0.shape[1]:]
        c = model.context_frames
        state["ctx"] = (all_f0[:, -c:], all_loud[:, -c:]) if c else (f0[:, :0], loud[:, :0])
        if live is None:
            dry, state["synth"] = model.synth.render(f0, index, state.get("synth"))
        else:
            dry, state["synth"] = live.render(f0, index, k0, state.get("synth"))
    else:
        amps, bands, state["gru"] = model.controls(f0, loud, state.get("gru"))
        dry, state["harm"] = model.harmonic_block(f0, amps, state.get("harm"))
        dry = dry + model.noise(bands)
    tail = state.get("tail")
    if tail is None:
        tail = dry.new_zeros(dry.shape[0], model.reverb.noise.shape[0] - 1)
    out, state["tail"] = model.reverb(dry, tail)
    return out, state
