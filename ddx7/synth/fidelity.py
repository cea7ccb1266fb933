"""How close our synth comes to Dexed: probe voices and a frame-by-frame spectral distance.

Used by ``tests/test_synth_fidelity.py`` and ``benchmarks/bench_synth.py``. A probe voice has
no LFO, pitch EG, velocity sensitivity or keyboard scaling (what the ddx7 engine leaves out),
random ratios (some fixed-frequency operators), output levels and envelopes, and a chosen
feedback level. The distance compares log-magnitude spectra (Hann window, 1024 points, hop 256
at 16 kHz) frame by frame, in dB, over bins within ``range_db`` of the reference's loudest bin;
it is reported separately for the attack (first 0.15 s) and the sustained part.
"""

from __future__ import annotations

import numpy as np
import torch

from dx7tools.audio import SAMPLE_RATE, log_spectrogram
from dx7tools.frequency import operator_frequency
from dx7tools.voice import Voice

from ddx7.synth.preview import render_ddx7, render_dexed

ATTACK_SECONDS = 0.15


def dexed_snaps(freq_hz, sample_rate: float = SAMPLE_RATE) -> bool:
    """True where Dexed's frequency table would not play ``freq_hz`` as asked.

    Measured on dexed-py 0.3.0 at 16 kHz: a frequency within about 2.5 % above
    ``sample_rate * 2**k`` (15.625 * 2**k Hz at 16 kHz) plays exactly at ``sample_rate * 2**k``
    (fixed 251.19 Hz plays at 250 Hz, 1023.3 Hz at 1000 Hz; 257.0 Hz and 1047 Hz are right).
    The DX7 has no such step, so our synth does not copy it and probe voices avoid it.
    """
    octave = np.log2(np.asarray(freq_hz, dtype=np.float64) / sample_rate)
    return bool(np.any((octave - np.floor(octave)) < 0.04))


def probe_voice(algorithm: int, rng: np.random.Generator, feedback: int | None = None, *, note: int = 60,
                fixed_probability: float = 0.15, sample_rate: float = SAMPLE_RATE) -> Voice:
    """A random voice for ``algorithm`` (1-32) that the ddx7 engine models completely.

    Operator frequencies at ``note`` stay below 0.4 x ``sample_rate`` and out of Dexed's
    frequency-table step (:func:`dexed_snaps`).
    """
    changes: dict[str, int] = {
        "algorithm": algorithm - 1,
        "feedback": int(rng.integers(0, 8)) if feedback is None else feedback,
        "lfo_pitch_mod_depth": 0, "lfo_amp_mod_depth": 0, "pitch_mod_sensitivity": 0, "transpose": 24,
    }
    for i in range(1, 5):
        changes[f"pitch_eg_level_{i}"] = 50
    f0 = 440.0 * 2.0 ** ((note - 69) / 12.0)
    for n in range(1, 7):
        while True:
            fixed = rng.random() < fixed_probability
            mode, detune = int(fixed), int(rng.integers(4, 11))
            # ratio 0.5-6 (a few fine steps), or fixed 10-1000 Hz
            coarse = int(rng.integers(1, 3)) if fixed else int(rng.integers(0, 7))
            fine = int(rng.integers(0, 100)) if fixed else int(rng.choice([0, 0, 0, 50, int(rng.integers(1, 100))]))
            hz = operator_frequency(mode, coarse, fine, detune, f0)
            if hz < 0.4 * sample_rate and not dexed_snaps(hz, sample_rate):
                break
        changes.update({
            f"op{n}_mode": mode, f"op{n}_coarse": coarse, f"op{n}_fine": fine, f"op{n}_detune": detune,
            f"op{n}_output_level": int(rng.integers(70, 100)),
            f"op{n}_velocity_sensitivity": 0, f"op{n}_amp_mod_sensitivity": 0, f"op{n}_rate_scaling": 0,
            f"op{n}_left_depth": 0, f"op{n}_right_depth": 0,
            f"op{n}_eg_rate_1": int(rng.integers(60, 100)), f"op{n}_eg_rate_2": int(rng.integers(30, 90)),
            f"op{n}_eg_rate_3": int(rng.integers(30, 90)), f"op{n}_eg_rate_4": int(rng.integers(40, 90)),
            f"op{n}_eg_level_1": 99, f"op{n}_eg_level_2": int(rng.integers(80, 100)),
            f"op{n}_eg_level_3": int(rng.integers(70, 100)), f"op{n}_eg_level_4": 0,
        })
    return Voice.init().replace(**changes).with_name(f"PROBE A{algorithm:02d}")


def spectral_distance_db(ours: np.ndarray, reference: np.ndarray, *, n_fft: int = 1024, hop: int = 256,
                         range_db: float = 60.0) -> np.ndarray:
    """Per-frame mean absolute log-magnitude difference (dB) between two renders.

    Both spectra are floored at ``range_db`` below the reference's loudest bin, and each frame's
    mean runs over the bins above that floor in either render (so that empty bins do not water
    it down: a 1.5 dB gain error reads as about 1.5 dB).

    Returns:
        float array (frames,) (0 for frames where both renders are below the floor).
    """
    n = min(len(ours), len(reference))
    a, b = log_spectrogram(ours[:n], n_fft, hop), log_spectrogram(reference[:n], n_fft, hop)
    floor = b.max() - range_db
    active = (a > floor) | (b > floor)
    diff = np.abs(np.maximum(a, floor) - np.maximum(b, floor))
    return np.where(active.any(axis=1), (diff * active).sum(axis=1) / np.maximum(active.sum(axis=1), 1), 0.0)


def long_term_spectrum_db(audio: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """Time-averaged power spectrum in dB (n_fft // 2 + 1,)."""
    return 10.0 * np.log10(np.mean(10.0 ** (log_spectrogram(audio, n_fft, hop) / 10.0), axis=0) + 1e-18)


def long_term_distance_db(ours: np.ndarray, reference: np.ndarray, *, range_db: float = 60.0) -> float:
    """Mean absolute difference (dB) of the long-term spectra, over the bins within ``range_db``
    of the reference's loudest in either (a distance that LFO phase does not affect)."""
    lt_ours, lt_ref = long_term_spectrum_db(ours), long_term_spectrum_db(reference)
    floor = lt_ref.max() - range_db
    active = (lt_ours > floor) | (lt_ref > floor)
    return float(np.mean(np.abs(np.maximum(lt_ours, floor) - np.maximum(lt_ref, floor))[active]))


def compare_with_dexed(voice: Voice, note: int = 60, seconds: float = 1.0, sample_rate: int = SAMPLE_RATE,
                       hop: int = 256, range_db: float = 60.0, chaos_db: float = 1.0) -> dict:
    """Render ``voice`` with both engines and measure how far apart they are.

    Strong feedback (7, and 5-6 in the 3-operator loop of algorithm 4) can make the recurrence
    chaotic: the last bit of rounding grows until the waveform's fine detail is unpredictable,
    so no two implementations can agree frame by frame. Such frames are found by rendering our
    synth in float32 and in float64: where those two differ by more than ``chaos_db`` the frame
    is *chaotic* and left out of the frame-by-frame figures; the long-term spectra (power
    averaged over the note) are compared instead, for every voice.

    Returns:
        dict: ``attack_db`` / ``sustain_db`` (mean frame distance over the first 0.15 s / the rest,
        non-chaotic frames; NaN if none), ``worst_db`` (worst non-chaotic frame),
        ``chaotic`` (fraction of chaotic frames), ``long_term_db`` (mean absolute difference of
        the long-term spectra) and the ``ddx7`` / ``dexed`` renders.
    """
    ours = render_ddx7(voice, note, 100, seconds, tail=0.0, sample_rate=sample_rate, antialias=False)
    ours64 = render_ddx7(voice, note, 100, seconds, tail=0.0, sample_rate=sample_rate, antialias=False,
                         dtype=torch.float64)
    ref = render_dexed(voice, note, 100, seconds, tail=0.0, sample_rate=sample_rate)
    d = spectral_distance_db(ours, ref, hop=hop, range_db=range_db)
    calm = spectral_distance_db(ours, ours64, hop=hop, range_db=range_db) <= chaos_db
    split = max(1, int(round(ATTACK_SECONDS * sample_rate / hop)))
    frames = np.arange(len(d))

    def mean(sel):
        return float(d[sel].mean()) if sel.any() else float("nan")

    return {
        "attack_db": mean(calm & (frames < split)),
        "sustain_db": mean(calm & (frames >= split)),
        "worst_db": float(d[calm].max()) if calm.any() else float("nan"),
        "chaotic": float(1.0 - calm.mean()),
        "long_term_db": long_term_distance_db(ours, ref, range_db=range_db),
        "ddx7": ours, "dexed": ref,
    }
