"""Known-answer corpora: notes of one library voice rendered by Dexed, for testing the selector.

The selector must find the configuration a corpus was played with. These corpora are made by
rendering held notes and short phrases of a voice with Dexed's engine (dexed-py, the optional
GPL extra), at several pitches, velocities and lengths, and importing them like any recordings
(:func:`ddx7.data.corpus.add_corpus`), so CREPE, segmentation and the splits all take part.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from dx7tools.audio import SAMPLE_RATE, write_wav

from ddx7.data.corpus import add_corpus
from ddx7.synth.preview import render_dexed

DEFAULT_NOTES = (43, 50, 57, 64, 71, 78)
KNOWN_ANSWER_MIN_SECONDS = 0.25
"""Shortest sound kept (:func:`ddx7.data.corpus.add_corpus`): some voices die away within half a
second even when their keys are held (ROM1A's STRINGS 8 under Dexed)."""


def render_known_answer(voice, *, notes=DEFAULT_NOTES, velocities=(110, 70), seconds=(0.8, 1.4),
                        seed: int = 0) -> list[np.ndarray]:
    """Held notes of ``voice`` (Dexed, 16 kHz): every note at every velocity, lengths drawn from
    ``seconds`` at random, plus one phrase of the notes played legato-free in a row.

    Returns:
        a list of float32 mono recordings (each starting and ending in silence).
    """
    rng = np.random.default_rng(seed)
    out = []
    gap = np.zeros(int(0.25 * SAMPLE_RATE), np.float32)
    for note in notes:
        for vel in velocities:
            held = float(rng.uniform(*seconds))
            out.append(np.concatenate([render_dexed(voice, note, vel, held, tail=0.4), gap]))
    phrase = [render_dexed(voice, int(n), int(rng.integers(60, 120)), float(rng.uniform(0.3, 0.6)), tail=0.15)
              for n in rng.permutation(notes)]
    out.append(np.concatenate([x for p in phrase for x in (p, gap[:800])]))
    return out


def known_answer_corpus(home, name: str, voice, **kwargs):
    """Render ``voice`` (see :func:`render_known_answer`) and make the corpus ``name`` from it."""
    with tempfile.TemporaryDirectory() as tmp:
        for i, audio in enumerate(render_known_answer(voice, **kwargs)):
            peak = float(np.max(np.abs(audio))) or 1.0
            write_wav(Path(tmp) / f"take{i:02d}.wav", audio / peak * 0.9, SAMPLE_RATE)
        return add_corpus(home, name, audio_dir=tmp, instrument=None, overwrite=True,
                          min_seconds=KNOWN_ANSWER_MIN_SECONDS)
