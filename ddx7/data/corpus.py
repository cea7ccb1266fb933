"""Instrument corpora for training: the rendered defaults, your recordings, URMP stems.

A corpus lives in ``<home>/corpora/<name>/``::

    manifest.json       what it is (kind, instrument, settings) and its segments
    audio/00000.wav     the segments, 16 kHz mono float32 WAV
    features/           added later by training (the feature cache)

Three ways to make one, all cut into segments the same way (:func:`segment_audio`: split at
silences, long pieces cut into near-equal parts of at most ``max_seconds``) and split 80/10/10
into train/valid/test by a hash of source name and piece number:

* :func:`build_corpus` renders phrases that we generate ourselves (sustained notes with
  crescendo and decrescendo, legato scales, arpeggios, repeated notes, melodies with delayed
  vibrato) for violin, flute or trumpet with the General MIDI soundfont that ships with
  ``pretty_midi`` (``TimGM6mb.sf2``), through ``tinysoundfont``, offline.
* :func:`add_corpus` with ``audio_dir``: every audio file soundfile reads under a folder.
* :func:`add_corpus` with ``urmp_dir`` and ``instrument``: the URMP dataset's separated stems
  ``AuSep_<track>_<instrument>_<piece>.wav``.

A build writes into a hidden temporary folder inside ``<home>/corpora/`` and renames it into
place at the end, so an interrupted build leaves no half corpus behind.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from dx7tools.audio import SAMPLE_RATE, read_audio, write_wav
from dx7tools.errors import DX7Error
from dx7tools.files import atomic_write_bytes, current_umask
from dx7tools.library import resolve_home

__all__ = [
    "DEFAULT_MINUTES",
    "INSTRUMENTS",
    "URMP_INSTRUMENTS",
    "SAMPLE_RATE",
    "SPLITS",
    "Corpus",
    "build_corpus",
    "open_or_build",
    "add_corpus",
    "list_corpora",
    "check_name",
    "segment_audio",
    "assign_splits",
    "phrase_events",
    "render_events",
    "render_phrases",
    "soundfont_path",
]

INSTRUMENTS = ("violin", "flute", "trumpet")
"""The instruments :func:`build_corpus` renders."""
DEFAULT_MINUTES = 5.0
"""Minutes of audio :func:`build_corpus` renders by default."""

URMP_INSTRUMENTS = {
    "vn": "violin", "va": "viola", "vc": "cello", "db": "double bass",
    "fl": "flute", "ob": "oboe", "cl": "clarinet", "sax": "saxophone", "bn": "bassoon",
    "tpt": "trumpet", "hn": "horn", "tbn": "trombone", "tba": "tuba",
}
"""URMP instrument codes and the instrument each names."""

SPLITS = ("train", "valid", "test")
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
SOUNDFONT = "TimGM6mb.sf2"

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_SEGMENT_FILE_RE = re.compile(r"^audio/[0-9]{5,}\.wav$")
_URMP_RE = re.compile(r"^AuSep_([0-9]+)_([A-Za-z]+)_(.+)\.wav$", re.IGNORECASE)

AUDIO_SUFFIXES = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
                  ".au", ".snd", ".caf", ".w64", ".rf64")
"""File name endings that :func:`add_corpus` reads under ``audio_dir`` (case-insensitive)."""

SILENT_PEAK = 1e-5
"""A source whose largest sample is below this (-100 dBFS) counts as silent."""

ProgressFn = Callable[[float, float], None]


# ---------------------------------------------------------------------------------------------
# names and paths
# ---------------------------------------------------------------------------------------------


def check_name(name: str) -> str:
    """``name`` if it is a valid corpus name (``^[a-z0-9][a-z0-9_-]{0,39}$``), else DX7Error."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise DX7Error(f"bad corpus name {name!r}: use 1-40 lowercase letters, digits, '-' and '_', "
                       "starting with a letter or digit")
    return name


def _corpora_dir(home) -> Path:
    return resolve_home(home) / "corpora"


def _missing_message(name: str) -> str:
    if name in INSTRUMENTS:
        return f"no corpus named {name!r}; build it with `dx7tools corpus build {name}`"
    return (f"no corpus named {name!r}; build one with `dx7tools corpus build violin` "
            "or add one with `dx7tools corpus add`")


# ---------------------------------------------------------------------------------------------
# the Corpus
# ---------------------------------------------------------------------------------------------


class Corpus:
    """A corpus on disk: its manifest and its segments. Open one with :meth:`Corpus.open`."""

    def __init__(self, path: str | os.PathLike, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest

    @classmethod
    def open(cls, home, name: str) -> "Corpus":
        """The corpus ``name`` in the data home ``home`` (see :func:`dx7tools.library.resolve_home`)."""
        check_name(name)
        path = _corpora_dir(home) / name
        if not (path / MANIFEST).is_file():
            raise DX7Error(_missing_message(name))
        return cls(path, _read_manifest(path))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def kind(self) -> str:
        return str(self.manifest.get("kind", ""))

    @property
    def instrument(self) -> str | None:
        return self.manifest.get("instrument")

    @property
    def sample_rate(self) -> int:
        return int(self.manifest.get("sample_rate", SAMPLE_RATE))

    @property
    def warnings(self) -> list[str]:
        """Files skipped when the corpus was made (one line each)."""
        return list(self.manifest.get("warnings", []))

    def segments(self, split: str | None = None) -> list[dict]:
        """Segment records ``{file, source, start_seconds, duration, split}``, all or of one split."""
        if split is not None and split not in SPLITS:
            raise DX7Error(f"unknown split {split!r} (use {', '.join(SPLITS)})")
        return [dict(s) for s in self.manifest["segments"] if split is None or s["split"] == split]

    def load(self, segment: dict | str) -> np.ndarray:
        """The audio of a segment (a record from :meth:`segments`, or its ``file``): float32 at 16 kHz."""
        rel = segment["file"] if isinstance(segment, dict) else str(segment)
        if not _SEGMENT_FILE_RE.fullmatch(rel):
            raise DX7Error(f"bad segment file name {rel!r} in the manifest", str(self.path / MANIFEST))
        audio, sr = read_audio(self.path / rel)
        if sr != self.sample_rate:
            raise DX7Error(f"segment is {sr} Hz, the manifest says {self.sample_rate} Hz", str(self.path / rel))
        return np.ascontiguousarray(audio, dtype=np.float32)

    def durations(self) -> dict[str, float]:
        """Seconds of audio per split: ``{"train": s, "valid": s, "test": s}``."""
        return _durations(self.manifest["segments"])

    def counts(self) -> dict[str, int]:
        """Number of segments per split."""
        return _counts(self.manifest["segments"])

    def to_dict(self) -> dict:
        """Name, path, kind, instrument, sample rate, settings, segment counts and durations per split."""
        return {
            "name": self.name,
            "path": str(self.path),
            "kind": self.kind,
            "instrument": self.instrument,
            "sample_rate": self.sample_rate,
            "created": self.manifest.get("created"),
            "settings": dict(self.manifest.get("settings", {})),
            "segments": self.counts(),
            "durations": {k: round(v, 3) for k, v in self.durations().items()},
            "warnings": self.warnings,
        }

    def __repr__(self) -> str:
        return f"Corpus({self.name!r}, kind={self.kind!r}, instrument={self.instrument!r})"


def _durations(segments: Iterable[dict]) -> dict[str, float]:
    out = {s: 0.0 for s in SPLITS}
    for seg in segments:
        out[seg["split"]] += float(seg["duration"])
    return out


def _counts(segments: Iterable[dict]) -> dict[str, int]:
    out = {s: 0 for s in SPLITS}
    for seg in segments:
        out[seg["split"]] += 1
    return out


def _read_manifest(path: Path) -> dict:
    file = path / MANIFEST
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DX7Error(f"unreadable corpus manifest: {exc}", str(file)) from None
    segs = manifest.get("segments") if isinstance(manifest, dict) else None
    if not isinstance(segs, list) or not all(
            isinstance(s, dict) and s.get("split") in SPLITS and isinstance(s.get("file"), str)
            and isinstance(s.get("duration"), (int, float)) for s in segs):
        raise DX7Error("corpus manifest has no valid segment list", str(file))
    return manifest


def list_corpora(home=None) -> list[dict]:
    """Every corpus in the data home: name, path, kind, instrument, segment counts and durations per split.

    A folder whose manifest cannot be read is listed with kind ``"broken"`` and an ``error``.
    """
    root = _corpora_dir(home)
    if not root.is_dir():
        return []
    rows = []
    for path in sorted(root.iterdir()):
        if not path.is_dir() or not NAME_RE.fullmatch(path.name) or not (path / MANIFEST).exists():
            continue
        try:
            rows.append(Corpus(path, _read_manifest(path)).to_dict())
        except DX7Error as exc:
            rows.append({"name": path.name, "path": str(path), "kind": "broken", "instrument": None,
                         "segments": {}, "durations": {}, "error": str(exc)})
    return rows


# ---------------------------------------------------------------------------------------------
# segmenting and splitting
# ---------------------------------------------------------------------------------------------


def segment_audio(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, *, max_seconds: float = 8.0,
                  threshold_db: float = -40.0, frame_seconds: float = 0.02, min_silence: float = 0.3,
                  min_seconds: float = 0.5, pad_seconds: float = 0.05) -> list[tuple[int, int]]:
    """Pieces of sound in ``audio`` as ``(start, stop)`` sample ranges.

    The RMS over ``frame_seconds`` windows (hop half of that) is compared with the loudest
    window: windows ``threshold_db`` or more below it are silent. Silences of at least
    ``min_silence`` seconds (and any silence at the start and end) separate pieces; each piece
    keeps up to ``pad_seconds`` of the silence around it. Pieces longer than ``max_seconds``
    are cut into the fewest near-equal parts that fit, and pieces shorter than ``min_seconds``
    are dropped. All-silent audio gives ``[]``.
    """
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    n = len(x)
    if n == 0:
        return []
    hop = max(1, int(round(frame_seconds * sample_rate / 2)))
    cells = -(-n // hop)
    # RMS of the window of two hops centred on each hop-long cell
    csum = np.concatenate([[0.0], np.cumsum(x * x)])
    centre = np.arange(cells) * hop + hop // 2
    lo = np.clip(centre - hop, 0, n)
    hi = np.clip(centre + hop, 0, n)
    rms = np.sqrt(np.maximum(csum[hi] - csum[lo], 0.0) / np.maximum(hi - lo, 1))
    ref = float(rms.max())
    if not np.isfinite(ref) or ref <= 0.0:
        return []
    loud = rms > ref * 10.0 ** (threshold_db / 20.0)
    if not loud.any():
        return []
    # runs of loud cells, merged across silences shorter than min_silence
    edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(np.int8), [0]])))
    starts, stops = edges[0::2], edges[1::2]
    min_gap = max(1, int(math.floor(min_silence * sample_rate / hop + 1e-9)) - 1)
    runs: list[list[int]] = [[int(starts[0]), int(stops[0])]]
    for a, b in zip(starts[1:], stops[1:]):
        if a - runs[-1][1] < min_gap:
            runs[-1][1] = int(b)
        else:
            runs.append([int(a), int(b)])
    pad = int(round(pad_seconds * sample_rate))
    max_len = max(1, int(round(max_seconds * sample_rate)))
    min_len = int(round(min_seconds * sample_rate))
    pieces: list[tuple[int, int]] = []
    for a, b in runs:
        start = max(0, a * hop - pad)
        stop = min(n, b * hop + pad)
        length = stop - start
        parts = max(1, -(-length // max_len))
        bounds = [start + int(round(k * length / parts)) for k in range(parts + 1)]
        for s, e in zip(bounds[:-1], bounds[1:]):
            if e - s >= min_len:
                pieces.append((s, e))
    return pieces


def _unit_hash(key: str) -> float:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def assign_splits(keys: Sequence[str], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> list[str]:
    """Deterministic train/valid/test split of the items named by ``keys`` (80/10/10 by count).

    The items are ordered by a hash of their key (SHA-256); the first 80 % are train, the next
    10 % valid, the rest test. The split depends only on the keys, not on their order or on the
    machine. With three or more items, valid and test get at least one item each; with fewer,
    everything is train.
    """
    n = len(keys)
    if n < 3:
        return ["train"] * n
    n_valid = max(1, int(round(fractions[1] * n)))
    n_test = max(1, int(round(fractions[2] * n)))
    order = sorted(range(n), key=lambda i: (_unit_hash(keys[i]), keys[i], i))
    split = ["train"] * n
    for rank, i in enumerate(order):
        if rank >= n - n_valid - n_test:
            split[i] = "valid" if rank < n - n_test else "test"
    return split


# ---------------------------------------------------------------------------------------------
# writing a corpus atomically
# ---------------------------------------------------------------------------------------------


class _Builder:
    """Collects segments in a temporary folder, then renames it into place."""

    def __init__(self, home, name: str, overwrite: bool):
        self.name = check_name(name)
        self.root = _corpora_dir(home)
        self.final = self.root / name
        self.overwrite = overwrite
        self._check_free()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=self.root))
            os.chmod(self.tmp, 0o777 & ~current_umask())
            (self.tmp / "audio").mkdir()
        except OSError as exc:
            raise DX7Error(f"cannot create the corpus folder: {exc.strerror or exc}", str(self.root)) from None
        self.segments: list[dict] = []
        self._keys: list[str] = []

    def _check_free(self) -> None:
        if not self.overwrite and (self.final.exists() or self.final.is_symlink()):
            raise DX7Error(f"a corpus named {self.name!r} already exists; pass overwrite=True "
                           "(--overwrite) to replace it", str(self.final))

    def add(self, source: str, audio: np.ndarray, pieces: list[tuple[int, int]]) -> None:
        """Write the pieces of ``audio`` (16 kHz) as segments; ``source`` names it in the manifest."""
        for k, (a, b) in enumerate(pieces):
            rel = f"audio/{len(self.segments):05d}.wav"
            write_wav(self.tmp / rel, audio[a:b], SAMPLE_RATE)
            self.segments.append({"file": rel, "source": source, "start_seconds": round(a / SAMPLE_RATE, 6),
                                  "duration": round((b - a) / SAMPLE_RATE, 6), "split": None})
            self._keys.append(f"{source}\0{k}")

    def finish(self, manifest: dict) -> Corpus:
        for seg, split in zip(self.segments, assign_splits(self._keys)):
            seg["split"] = split
        if len(self.segments) < 3:
            manifest = dict(manifest, warnings=list(manifest.get("warnings", [])) + [
                f"only {len(self.segments)} segment{'s' if len(self.segments) != 1 else ''}: "
                "the valid and test splits are empty (training validates on train)"])
        manifest = {
            "format": FORMAT_VERSION,
            "name": self.name,
            **manifest,
            "sample_rate": SAMPLE_RATE,
            "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
            "segment_counts": _counts(self.segments),
            "durations": {k: round(v, 6) for k, v in _durations(self.segments).items()},
            "segments": self.segments,
        }
        atomic_write_bytes(self.tmp / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode("utf-8"))
        self._install()
        return Corpus(self.final, manifest)

    def _install(self) -> None:
        self._check_free()
        old = None
        if self.final.exists() or self.final.is_symlink():
            old = self.root / f".{self.name}.{uuid.uuid4().hex[:8]}.old"
            os.rename(self.final, old)
        try:
            os.rename(self.tmp, self.final)
        except OSError as exc:
            if old is not None:
                os.rename(old, self.final)
            raise DX7Error(f"cannot move the new corpus into place: {exc.strerror or exc}", str(self.final)) from None
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)




# ---------------------------------------------------------------------------------------------
# the default corpora: generated phrases, rendered with the GM soundfont
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Profile:
    program: int            # General MIDI program, 0-based
    low: int                # lowest MIDI note
    high: int               # highest MIDI note
    velocity: tuple[int, int]
    expression: tuple[int, int]          # CC 11 range used by dynamics
    vibrato_rate: tuple[float, float]    # Hz
    vibrato_cents: tuple[float, float]   # depth, +- cents
    vibrato_delay: tuple[float, float]   # seconds after the note starts
    vibrato_chance: float                # chance that a long note has vibrato
    tremolo: float                       # CC 11 wobble with the vibrato (flute breath vibrato)
    kinds: tuple[tuple[str, float], ...]  # phrase kinds and weights
    beat: tuple[float, float]            # seconds per beat


_PROFILES = {
    "violin": _Profile(program=40, low=55, high=93, velocity=(45, 115), expression=(64, 127),
                       vibrato_rate=(5.0, 6.5), vibrato_cents=(20.0, 40.0), vibrato_delay=(0.12, 0.35),
                       vibrato_chance=0.9, tremolo=0.0,
                       kinds=(("sustained", 3), ("scale", 3), ("arpeggio", 2), ("repeated", 1), ("melody", 3)),
                       beat=(0.35, 0.7)),
    "flute": _Profile(program=73, low=60, high=96, velocity=(50, 110), expression=(64, 127),
                      vibrato_rate=(4.8, 6.0), vibrato_cents=(15.0, 30.0), vibrato_delay=(0.15, 0.4),
                      vibrato_chance=0.8, tremolo=5.0,
                      kinds=(("sustained", 3), ("scale", 3), ("arpeggio", 2), ("repeated", 1), ("melody", 3)),
                      beat=(0.35, 0.7)),
    "trumpet": _Profile(program=56, low=52, high=84, velocity=(55, 120), expression=(72, 127),
                        vibrato_rate=(5.0, 6.0), vibrato_cents=(10.0, 25.0), vibrato_delay=(0.3, 0.6),
                        vibrato_chance=0.4, tremolo=0.0,
                        kinds=(("sustained", 3), ("scale", 2), ("arpeggio", 3), ("repeated", 2), ("melody", 3)),
                        beat=(0.3, 0.6)),
}

_SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic minor": (0, 2, 3, 5, 7, 8, 11),
    "chromatic": tuple(range(12)),
}
_CHORDS = {
    "major": (0, 4, 7),
    "minor": (0, 3, 7),
    "dominant 7th": (0, 4, 7, 10),
    "diminished 7th": (0, 3, 6, 9),
}
CONTROL_RATE = 100.0
"""Control changes (expression, pitch bend) are sent this many times a second while notes sound."""
RENDER_RATE = 32000
"""tinysoundfont renders at this rate; soxr then resamples to 16 kHz (less aliasing than rendering at 16 kHz)."""
BEND_RANGE = 2.0


@dataclass
class _Note:
    start: float
    dur: float
    key: int
    velocity: int
    vibrato: tuple[float, float, float] | None = None   # rate Hz, depth cents, delay s


def _keys_in(profile: _Profile, tonic: int, steps: Sequence[int]) -> list[int]:
    """Every MIDI note in the instrument's range that belongs to the pitch set."""
    pcs = {(tonic + s) % 12 for s in steps}
    return [k for k in range(profile.low, profile.high + 1) if k % 12 in pcs]


def _walk(pos: int, step: int, size: int) -> tuple[int, int]:
    """Move ``step`` along a list of ``size`` keys, turning round at the ends; returns (pos, step)."""
    nxt = pos + step
    if nxt < 0 or nxt >= size:
        step = -step
        nxt = pos + step
    return min(max(nxt, 0), size - 1), step


def _start_index(rng: np.random.Generator, keys: Sequence[int]) -> int:
    """A starting key, favouring the lower middle of the range (where players spend most time)."""
    u = rng.triangular(0.0, 0.4, 1.0)
    return int(min(len(keys) - 1, u * len(keys)))


def _vibrato(profile: _Profile, rng: np.random.Generator, dur: float, min_dur: float = 0.45):
    if dur < min_dur or rng.random() >= profile.vibrato_chance:
        return None
    return (float(rng.uniform(*profile.vibrato_rate)), float(rng.uniform(*profile.vibrato_cents)),
            float(rng.uniform(*profile.vibrato_delay)))


def _dynamics(rng: np.random.Generator, profile: _Profile, shape: str, duration: float):
    """CC 11 keypoints ``[(t, value)]`` for a hairpin of the given shape over ``duration`` seconds."""
    lo_e, hi_e = profile.expression
    low = float(rng.uniform(lo_e, lo_e + 0.3 * (hi_e - lo_e)))
    high = float(rng.uniform(lo_e + 0.6 * (hi_e - lo_e), hi_e))
    if shape == "crescendo":
        return [(0.0, low), (duration, high)]
    if shape == "decrescendo":
        return [(0.0, high), (duration, low)]
    if shape == "hairpin":
        peak = float(rng.uniform(0.35, 0.65)) * duration
        return [(0.0, low), (peak, high), (duration, low + 0.3 * (high - low))]
    level = float(rng.uniform(low, high))
    return [(0.0, level), (duration, level)]


_SHAPES = ("crescendo", "decrescendo", "hairpin", "steady")
"""The dynamics shapes a phrase's expression keypoints follow (:func:`_dynamics`)."""


def _sustained_notes(profile: _Profile, rng: np.random.Generator):
    """One to three long notes in a major key, each with its own dynamics."""
    vel_lo, vel_hi = profile.velocity
    notes: list[_Note] = []
    curves: list[list[tuple[float, float]]] = []   # absolute-time expression keypoints, in order
    t = 0.0
    keys = _keys_in(profile, int(rng.integers(12)), _SCALES["major"])
    pos, step = _start_index(rng, keys), int(rng.choice([-1, 1]))
    for _ in range(int(rng.integers(1, 4))):
        dur = float(rng.uniform(1.5, 4.5))
        vel = int(rng.integers(vel_lo, vel_hi + 1))
        notes.append(_Note(t, dur, keys[pos], vel, _vibrato(profile, rng, dur)))
        shape = str(rng.choice(_SHAPES, p=[0.3, 0.3, 0.3, 0.1]))
        curves.append([(t + a, v) for a, v in _dynamics(rng, profile, shape, dur)])
        t += dur + (float(rng.uniform(0.05, 0.25)) if rng.random() < 0.6 else 0.0)
        pos, step = _walk(pos, step * int(rng.integers(1, 3)), len(keys))
        step = 1 if step > 0 else -1
    return notes, curves


def _line_steps(kind: str, rng: np.random.Generator, beat: float):
    """A scale's or an arpeggio's pitch set, note count, note length and legato."""
    if kind == "scale":
        steps = _SCALES[str(rng.choice(list(_SCALES), p=[0.45, 0.2, 0.2, 0.15]))]
        count = int(rng.integers(6, 17))
        dur_each = beat * float(rng.choice([0.5, 0.5, 1.0, 0.25 * 3]))
        legato = rng.random() < 0.7
    else:
        steps = _CHORDS[str(rng.choice(list(_CHORDS)))]
        count = int(rng.integers(5, 13))
        dur_each = beat * float(rng.choice([0.5, 0.75, 1.0]))
        legato = rng.random() < 0.35
    return steps, count, dur_each, legato


def _line_notes(kind: str, profile: _Profile, rng: np.random.Generator, beat: float):
    """A scale or an arpeggio up or down, perhaps turning once, under one dynamics shape."""
    vel_lo, vel_hi = profile.velocity
    notes: list[_Note] = []
    t = 0.0
    tonic = int(rng.integers(12))
    steps, count, dur_each, legato = _line_steps(kind, rng, beat)
    keys = _keys_in(profile, tonic, steps)
    pos, step = _start_index(rng, keys), int(rng.choice([-1, 1]))
    turn = int(rng.integers(count // 2, count + 1)) if rng.random() < 0.5 else count
    for i in range(count):
        dur = dur_each * (2.0 if i == count - 1 else 1.0)
        sound = dur if legato else dur * float(rng.uniform(0.6, 0.85))
        vel = int(np.clip(rng.normal((vel_lo + vel_hi) / 2, 12), vel_lo, vel_hi))
        notes.append(_Note(t, sound, keys[pos], vel, _vibrato(profile, rng, sound, 0.6)))
        t += dur
        if i == turn:
            step = -step
        pos, step = _walk(pos, step, len(keys))
    shape = str(rng.choice(_SHAPES, p=[0.3, 0.3, 0.25, 0.15]))
    return notes, [_dynamics(rng, profile, shape, t)]


def _repeated_notes(profile: _Profile, rng: np.random.Generator, beat: float):
    """One to three groups of short repeated notes with regular accents."""
    vel_lo, vel_hi = profile.velocity
    notes: list[_Note] = []
    t = 0.0
    keys = _keys_in(profile, int(rng.integers(12)), _SCALES["major"])
    pos = _start_index(rng, keys)
    for _group in range(int(rng.integers(1, 4))):
        dur_each = beat * float(rng.choice([0.25, 0.5, 0.5, 1.0]))
        accent_every = int(rng.choice([2, 3, 4]))
        for i in range(int(rng.integers(4, 13))):
            vel = int(rng.integers(vel_lo, (vel_lo + vel_hi) // 2 + 1))
            if i % accent_every == 0:
                vel = min(127, vel + 20)
            notes.append(_Note(t, dur_each * float(rng.uniform(0.45, 0.75)), keys[pos], vel))
            t += dur_each
        pos, _ = _walk(pos, int(rng.choice([-2, -1, 1, 2])), len(keys))
        t += beat * 0.5
    return notes, [_dynamics(rng, profile, str(rng.choice(_SHAPES)), t)]


def _melody_notes(profile: _Profile, rng: np.random.Generator, beat: float):
    """A random walk in a key, mostly steps, some leaps, long final note."""
    vel_lo, vel_hi = profile.velocity
    notes: list[_Note] = []
    t = 0.0
    keys = _keys_in(profile, int(rng.integers(12)), _SCALES[str(rng.choice(["major", "minor", "harmonic minor"]))])
    pos = _start_index(rng, keys)
    count = int(rng.integers(5, 13))
    for i in range(count):
        beats = float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0, 3.0])) if i < count - 1 else float(rng.uniform(3.0, 5.0))
        dur = beat * beats
        sound = dur if rng.random() < 0.6 else dur * float(rng.uniform(0.7, 0.9))
        vel = int(np.clip(rng.normal((vel_lo + vel_hi) / 2, 15), vel_lo, vel_hi))
        notes.append(_Note(t, sound, keys[pos], vel, _vibrato(profile, rng, sound)))
        t += dur
        move = int(rng.choice([1, 1, 1, 2, 2, 3, 4])) * (1 if rng.random() < 0.5 else -1)
        pos, _ = _walk(pos, move, len(keys))
    return notes, [_dynamics(rng, profile, str(rng.choice(_SHAPES, p=[0.25, 0.25, 0.4, 0.1])), t)]


def _phrase(profile: _Profile, rng: np.random.Generator):
    """One phrase: its notes and CC 11 keypoints (each keypoint list covers the notes it follows)."""
    kinds, weights = zip(*profile.kinds)
    kind = str(rng.choice(kinds, p=np.asarray(weights) / sum(weights)))
    beat = float(rng.uniform(*profile.beat))
    if kind == "sustained":
        notes, curves = _sustained_notes(profile, rng)
    elif kind in ("scale", "arpeggio"):
        notes, curves = _line_notes(kind, profile, rng, beat)
    elif kind == "repeated":
        notes, curves = _repeated_notes(profile, rng, beat)
    else:
        notes, curves = _melody_notes(profile, rng, beat)
    return kind, notes, curves, notes[-1].start + notes[-1].dur


def _expression_at(curves: list[list[tuple[float, float]]], t: np.ndarray) -> np.ndarray:
    """CC 11 values at times ``t`` from piecewise-linear keypoint lists (later lists take over)."""
    out = np.full(len(t), float(curves[0][0][1]))
    for pts in curves:
        times = np.array([p[0] for p in pts])
        vals = np.array([p[1] for p in pts])
        mask = t >= times[0]
        out[mask] = np.interp(t[mask], times, vals)
    return out


def phrase_events(instrument: str, rng: np.random.Generator, start: float = 0.0) -> tuple[list[tuple], float]:
    """One generated phrase for ``instrument`` as MIDI-like events, and the time it ends.

    Events are ``(seconds, kind, a, b)`` with kind ``"on"`` (key, velocity), ``"off"`` (key),
    ``"cc"`` (controller, value) or ``"bend"`` (value 0-16383, 8192 = none; range ±2 semitones),
    sorted by time. Expression (CC 11) and pitch bend are sent at :data:`CONTROL_RATE` while the
    phrase sounds; vibrato is pitch bend with a delayed, faded-in onset. The phrase ends with
    the last note-off; the caller adds the rest that follows.
    """
    profile = _PROFILES[instrument]
    _kind, notes, curves, end = _phrase(profile, rng)
    events: list[tuple] = []
    for n in notes:
        events.append((start + n.start, "on", n.key, n.velocity))
        events.append((start + n.start + n.dur, "off", n.key, 0))
    # controls on a 100 Hz grid from the first note to the end of the phrase
    grid = np.arange(0.0, end + 1e-9, 1.0 / CONTROL_RATE)
    expr = _expression_at(curves, grid)
    bend = np.zeros(len(grid))
    trem_phase = float(rng.uniform(0, 2 * np.pi))
    for n in notes:
        mask = (grid >= n.start) & (grid < n.start + n.dur)
        if n.vibrato is None or not mask.any():
            continue
        rate, cents, delay = n.vibrato
        tt = grid[mask] - n.start
        fade = np.clip((tt - delay) / 0.3, 0.0, 1.0)
        wave = np.sin(2 * np.pi * rate * tt)
        bend[mask] = cents * fade * wave
        if profile.tremolo:
            expr[mask] += profile.tremolo * fade * np.sin(2 * np.pi * rate * tt + trem_phase)
    expr_v = np.clip(np.round(expr), 0, 127).astype(int)
    bend_v = np.clip(np.round(8192 + bend / (100.0 * BEND_RANGE) * 8192), 0, 16383).astype(int)
    last_e = last_b = None
    for t, e, b in zip(grid, expr_v, bend_v):
        if e != last_e:
            events.append((start + float(t), "cc", 11, int(e)))
            last_e = e
        if b != last_b:
            events.append((start + float(t), "bend", int(b), 0))
            last_b = b
    events.append((start + end, "bend", 8192, 0))
    order = {"off": 0, "cc": 1, "bend": 1, "on": 2}
    events.sort(key=lambda ev: (ev[0], order[ev[1]]))
    return events, start + end


def soundfont_path() -> Path:
    """``TimGM6mb.sf2``, the General MIDI soundfont shipped inside the ``pretty_midi`` package."""
    spec = importlib.util.find_spec("pretty_midi")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / SOUNDFONT
        if path.is_file():
            return path
    raise DX7Error(f"the General MIDI soundfont {SOUNDFONT} was not found: it ships with the pretty_midi "
                   "package; install it with `pip install pretty_midi`")


def _new_synth(program: int, sample_rate: int):
    try:
        import tinysoundfont
    except ImportError:
        raise DX7Error("rendering the default corpora needs the tinysoundfont package; install it with "
                       "`pip install --no-deps tinysoundfont` (or `make install`)") from None
    sf2 = soundfont_path()
    synth = tinysoundfont.Synth(samplerate=sample_rate)
    try:
        sfid = synth.sfload(str(sf2))
        synth.program_select(0, sfid, 0, program)
    except Exception as exc:  # tinysoundfont raises its own exception types
        raise DX7Error(f"cannot load General MIDI program {program}: {exc}", str(sf2)) from None
    synth.pitchbend_range(0, BEND_RANGE)
    return synth


def render_events(synth, events: Sequence[tuple], until: float, sample_rate: int, done: int = 0) -> np.ndarray:
    """Play ``events`` (from :func:`phrase_events`) on channel 0 of a tinysoundfont ``synth``.

    ``done`` is how many samples the synth has already produced (event times are absolute);
    audio is generated in chunks between events, up to time ``until``. Returns mono float32.
    """
    chunks = []
    pos = done
    stop = int(round(until * sample_rate))
    for t, kind, a, b in events:
        at = min(max(int(round(t * sample_rate)), pos), stop)
        if at > pos:
            chunks.append(np.frombuffer(synth.generate(at - pos), dtype=np.float32))
            pos = at
        if kind == "on":
            synth.noteon(0, a, b)
        elif kind == "off":
            synth.noteoff(0, a)
        elif kind == "cc":
            synth.control_change(0, a, b)
        elif kind == "bend":
            synth.pitchbend(0, a)
    if stop > pos:
        chunks.append(np.frombuffer(synth.generate(stop - pos), dtype=np.float32))
    if not chunks:
        return np.zeros(0, np.float32)
    stereo = np.concatenate(chunks).reshape(-1, 2)
    return stereo.mean(axis=1, dtype=np.float32)


def _check_instrument_name(instrument: str) -> str:
    if instrument not in INSTRUMENTS:
        raise DX7Error(f"no default corpus for instrument {instrument!r}: choose one of {', '.join(INSTRUMENTS)}, "
                       "or add your recordings with `dx7tools corpus add`")
    return instrument


def render_phrases(instrument: str, seconds: float, *, seed: int = 0,
                   progress: ProgressFn | None = None) -> np.ndarray:
    """At least ``seconds`` of generated phrases with rests, at 16 kHz, before normalising.

    Continues one phrase stream (same seed, same phrases) until the sounding part alone (the
    phrases, without the rests) reaches ``seconds``.
    """
    return _PhraseStream(instrument, seed).render(seconds, progress)


class _PhraseStream:
    """A deterministic stream of phrases and rests rendered by one synth, which can be extended."""

    def __init__(self, instrument: str, seed: int):
        self.profile = _PROFILES[_check_instrument_name(instrument)]
        self.instrument = instrument
        self.rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, INSTRUMENTS.index(instrument)])
        self.synth = _new_synth(self.profile.program, RENDER_RATE)
        self.raw: list[np.ndarray] = []
        self.samples = 0
        self.time = 0.5          # a short lead-in of silence
        self.sounding = 0.0      # phrase seconds so far (rests excluded)
        self.phrases = 0

    def render(self, seconds: float, progress: ProgressFn | None = None) -> np.ndarray:
        goal = self.sounding + seconds
        while self.sounding < goal:
            events, end = phrase_events(self.instrument, self.rng, self.time)
            self.sounding += end - self.time
            self.phrases += 1
            until = end + float(self.rng.uniform(0.7, 1.4))   # the rest after the phrase
            audio = render_events(self.synth, events, until, RENDER_RATE, self.samples)
            self.raw.append(audio)
            self.samples += len(audio)
            self.time = until
            if progress:
                progress(min(self.sounding, goal), goal)
        return self.audio()

    def audio(self) -> np.ndarray:
        import soxr

        x = np.concatenate(self.raw) if self.raw else np.zeros(0, np.float32)
        return np.asarray(soxr.resample(x, RENDER_RATE, SAMPLE_RATE), dtype=np.float32)


def build_corpus(home, instrument: str, *, minutes: float = DEFAULT_MINUTES, seed: int = 0, name: str | None = None,
                 max_seconds: float = 8.0, overwrite: bool = False,
                 progress: ProgressFn | None = None) -> Corpus:
    """Render a default corpus for ``instrument`` (violin, flute or trumpet) offline.

    Generated phrases in the instrument's range are rendered with General MIDI program
    (violin 40, flute 73, trumpet 56, 0-based) of ``TimGM6mb.sf2`` by tinysoundfont, resampled
    to 16 kHz mono, normalised to a peak of 0.9 over the whole corpus and segmented. The same
    ``seed`` gives the same audio, byte for byte; the segments add up to at least ``minutes``.

    Args:
        name: the corpus name (default: the instrument).
        progress: called as ``progress(seconds_rendered, seconds_wanted)``.

    Raises:
        DX7Error: unknown instrument, bad name, a corpus of that name exists (without
            ``overwrite``), tinysoundfont or the soundfont missing.
    """
    _check_instrument_name(instrument)
    name = check_name(instrument if name is None else name)
    if not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes > 0):
        raise DX7Error(f"minutes must be a number > 0, got {minutes!r}")
    if not (isinstance(max_seconds, (int, float)) and max_seconds >= 1.0):
        raise DX7Error(f"max_seconds must be at least 1, got {max_seconds!r}")
    want = float(minutes) * 60.0
    builder = _Builder(home, name, overwrite)
    try:
        stream = _PhraseStream(instrument, seed)
        audio = stream.render(want, progress)
        while True:
            peak = float(np.max(np.abs(audio)))
            if not np.isfinite(peak) or peak <= 0:
                raise DX7Error(f"the {instrument} render is silent; is {SOUNDFONT} intact?", str(soundfont_path()))
            audio = (audio * np.float32(0.9 / peak)).astype(np.float32)
            pieces = segment_audio(audio, SAMPLE_RATE, max_seconds=max_seconds)
            have = sum(b - a for a, b in pieces) / SAMPLE_RATE
            if have >= want:
                break
            audio = stream.render(want - have + 2.0, progress)   # rare: top up and segment again
        source = f"{instrument} phrases (seed {seed})"
        builder.add(source, audio, pieces)
        settings = {"minutes": float(minutes), "seed": int(seed), "max_seconds": float(max_seconds),
                    "soundfont": SOUNDFONT, "program": _PROFILES[instrument].program,
                    "range": [_PROFILES[instrument].low, _PROFILES[instrument].high],
                    "render_rate": RENDER_RATE, "control_rate": CONTROL_RATE, "phrases": stream.phrases,
                    "rendered_seconds": round(len(audio) / SAMPLE_RATE, 3),
                    "renderer": f"tinysoundfont {_version('tinysoundfont')}", "peak": 0.9}
        corpus = builder.finish({"kind": "builtin", "instrument": instrument, "settings": settings,
                                 "warnings": []})
    except BaseException:
        builder.discard()
        raise
    if progress:
        progress(want, want)
    return corpus


def open_or_build(home, name: str, *, minutes: float = DEFAULT_MINUTES, progress: ProgressFn | None = None
                  ) -> tuple[Corpus, bool]:
    """The corpus ``name``; a default one (violin, flute, trumpet) is built first if missing.

    Returns:
        ``(corpus, built)``: ``built`` is True when it was rendered just now (``minutes`` of
        phrases with the default seed, as ``dx7tools corpus build NAME`` makes it).

    Raises:
        DX7Error: a missing corpus that is not a default one (the message says how to make it).
    """
    check_name(name)
    if name in INSTRUMENTS and not (_corpora_dir(home) / name / MANIFEST).is_file():
        return build_corpus(home, name, minutes=minutes, progress=progress), True
    return Corpus.open(home, name), False


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return "unknown"


# ---------------------------------------------------------------------------------------------
# corpora from recordings and URMP
# ---------------------------------------------------------------------------------------------


def _instrument_label(instrument: str | None) -> str | None:
    """The instrument name for a URMP code or name (``vn`` -> ``violin``), DX7Error if unknown."""
    if instrument is None:
        return None
    key = str(instrument).strip().lower()
    if key in URMP_INSTRUMENTS:
        return URMP_INSTRUMENTS[key]
    if key in URMP_INSTRUMENTS.values():
        return key
    raise DX7Error(f"unknown instrument {instrument!r}: use a URMP code ({', '.join(URMP_INSTRUMENTS)})")


def _urmp_code(instrument: str | None) -> str:
    valid = ", ".join(URMP_INSTRUMENTS)
    if instrument is None or str(instrument).strip() == "":
        raise DX7Error(f"a URMP corpus needs an instrument code: one of {valid}")
    key = str(instrument).strip().lower()
    if key in URMP_INSTRUMENTS:
        return key
    for code, label in URMP_INSTRUMENTS.items():
        if key == label:
            return code
    raise DX7Error(f"unknown URMP instrument {instrument!r}: use one of {valid}")


def _check_folder(folder, what: str) -> Path:
    path = Path(folder).expanduser()
    if not path.exists():
        raise DX7Error(f"{what} folder does not exist", str(path))
    if not path.is_dir():
        raise DX7Error(f"{what} is not a folder", str(path))
    return path


def _walk_files(root: Path) -> list[Path]:
    """Files under ``root``, recursively, skipping hidden files and folders, sorted by relative path."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(folder) / f for f in files if not f.startswith("."))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _audio_files(root: Path) -> list[Path]:
    return [p for p in _walk_files(root) if p.suffix.lower() in AUDIO_SUFFIXES]


def _urmp_files(root: Path, code: str) -> list[Path]:
    out = []
    for p in _walk_files(root):
        m = _URMP_RE.fullmatch(p.name)
        if m and m.group(2).lower() == code:
            out.append(p)
    return out


def _to_16k(audio: np.ndarray, sr: int) -> np.ndarray:
    if sr == SAMPLE_RATE:
        return np.ascontiguousarray(audio, dtype=np.float32)
    import soxr

    return np.asarray(soxr.resample(np.ascontiguousarray(audio, dtype=np.float32), sr, SAMPLE_RATE),
                      dtype=np.float32)


def _read_source(path: Path) -> tuple[np.ndarray | None, int, str | None]:
    """``(mono audio, sample rate, None)``, or ``(None, 0, why)`` for a file that cannot be used."""
    try:
        audio, sr = read_audio(path)
    except DX7Error as exc:
        return None, 0, exc.problem
    if len(audio) == 0:
        return None, 0, "the file has no audio"
    if not np.all(np.isfinite(audio)):
        return None, 0, "it has NaN or infinite samples"
    return audio, sr, None


def _check_add_arguments(audio_dir, urmp_dir, max_seconds, min_seconds) -> None:
    """DX7Error unless exactly one folder is given and the segment lengths make sense."""
    if (audio_dir is None) == (urmp_dir is None):
        raise DX7Error("give exactly one of audio_dir (--audio DIR) or urmp_dir (--urmp DIR)")
    if not (isinstance(max_seconds, (int, float)) and max_seconds >= 1.0):
        raise DX7Error(f"max_seconds must be at least 1, got {max_seconds!r}")
    if not (isinstance(min_seconds, (int, float)) and 0.2 <= min_seconds <= max_seconds):
        raise DX7Error(f"min_seconds must be 0.2 s or more and at most max_seconds, got {min_seconds!r}")


def _sources(audio_dir, urmp_dir, instrument: str | None, max_seconds: float, min_seconds: float):
    """``(kind, instrument label, root folder, files, settings)`` of a corpus made by :func:`add_corpus`."""
    if urmp_dir is not None:
        code = _urmp_code(instrument)
        label = URMP_INSTRUMENTS[code]
        root = _check_folder(urmp_dir, "URMP")
        files = _urmp_files(root, code)
        if not files:
            raise DX7Error(f"no URMP stems AuSep_<track>_{code}_<piece>.wav for {label} in this folder", str(root))
        settings = {"urmp_dir": str(root.resolve()), "urmp_code": code, "max_seconds": float(max_seconds),
                    "min_seconds": float(min_seconds)}
        return "urmp", label, root, files, settings
    label = _instrument_label(instrument)
    root = _check_folder(audio_dir, "audio")
    files = _audio_files(root)
    if not files:
        raise DX7Error("no audio files (wav, flac, ogg, mp3, ...) in this folder", str(root))
    settings = {"audio_dir": str(root.resolve()), "max_seconds": float(max_seconds),
                "min_seconds": float(min_seconds)}
    return "audio", label, root, files, settings


@dataclass
class _Tally:
    """What :func:`add_corpus` made of its files: warnings, and how many were readable, silent and used."""

    warnings: list[str] = field(default_factory=list)
    readable: int = 0
    silent: int = 0
    used: int = 0


def _add_source(builder: _Builder, path: Path, rel: str, tally: _Tally, max_seconds: float,
                min_seconds: float) -> None:
    """Cut one file into segments for ``builder``, or say in ``tally.warnings`` why it was skipped."""
    audio, sr, problem = _read_source(path)
    if audio is not None:
        tally.readable += 1
        if float(np.max(np.abs(audio))) < SILENT_PEAK:
            tally.silent += 1
            problem = "it is silent"
        else:
            audio = _to_16k(audio, sr)
            pieces = segment_audio(audio, SAMPLE_RATE, max_seconds=max_seconds, min_seconds=min_seconds)
            if pieces:
                builder.add(rel, audio, pieces)
                tally.used += 1
            else:
                problem = f"no sound in it lasts {min_seconds:g} s or more"
    if problem:
        tally.warnings.append(" ".join(f"{rel}: skipped, {problem}".split()))


def _nothing_usable(tally: _Tally, n_files: int, root: Path, min_seconds: float) -> DX7Error:
    """The error for files that gave no segment at all: all silent, all skipped, or all too short."""
    where = str(root)
    if tally.readable and tally.silent == tally.readable:
        return DX7Error(f"all {tally.readable} readable audio files are silent; nothing to make a corpus from",
                        where)
    if not tally.readable:
        warnings = tally.warnings
        return DX7Error(f"no usable audio: all {n_files} files were skipped "
                        f"({'; '.join(warnings[:3])}{'; ...' if len(warnings) > 3 else ''})", where)
    return DX7Error(f"no usable audio: no file has a sound of {min_seconds:g} s or more "
                    "(short notes: lower --min-seconds)", where)


def add_corpus(home, name: str, *, audio_dir=None, urmp_dir=None, instrument: str | None = None,
               max_seconds: float = 8.0, min_seconds: float = 0.5, overwrite: bool = False,
               progress: ProgressFn | None = None) -> Corpus:
    """Make the corpus ``name`` from recordings (``audio_dir``) or URMP stems (``urmp_dir``).

    ``audio_dir``: every file with an audio ending (:data:`AUDIO_SUFFIXES`) under the folder,
    recursively; any sample rate (resampled to 16 kHz with soxr), mono or stereo (averaged).
    ``instrument`` is then an optional label (a URMP code or instrument name).

    ``urmp_dir`` with ``instrument`` (a URMP code: vn, fl, tpt, ...): the separated stems
    ``AuSep_<track>_<instrument>_<piece>.wav`` under the folder.

    Unreadable files, files with NaN or infinite samples and silent files are skipped, each
    with one line in ``Corpus.warnings``. Sounds shorter than ``min_seconds`` are left out
    (lower it, down to 0.2 s, for corpora of short plucked or struck notes).

    Raises:
        DX7Error: bad name, both or neither folder, a missing folder, an unknown instrument, no
            audio files, nothing usable (all skipped or all silent), an existing corpus of that
            name without ``overwrite``.
    """
    check_name(name)
    _check_add_arguments(audio_dir, urmp_dir, max_seconds, min_seconds)
    kind, label, root, files, settings = _sources(audio_dir, urmp_dir, instrument, max_seconds, min_seconds)

    builder = _Builder(home, name, overwrite)
    try:
        tally = _Tally()
        for i, path in enumerate(files):
            _add_source(builder, path, path.relative_to(root).as_posix(), tally, max_seconds, min_seconds)
            if progress:
                progress(i + 1, len(files))
        if not builder.segments:
            raise _nothing_usable(tally, len(files), root, min_seconds)
        settings["files"] = len(files)
        settings["files_used"] = tally.used
        corpus = builder.finish({"kind": kind, "instrument": label, "settings": settings,
                                 "warnings": tally.warnings})
    except BaseException:
        builder.discard()
        raise
    return corpus
