"""Instrument corpora: the rendered defaults, recordings folders, URMP stems, segmenting, splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

import ddx7.data.corpus as corpus_mod
from ddx7.data.corpus import (INSTRUMENTS, SAMPLE_RATE, Corpus, add_corpus, assign_splits, build_corpus, check_name,
                         list_corpora, phrase_events, segment_audio)
from dx7tools.errors import DX7Error

SR = SAMPLE_RATE
RANGES = {"violin": (55, 93), "flute": (60, 96), "trumpet": (52, 84)}


def tone(seconds: float, freq: float = 440.0, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(seconds: float, sr: int = SR) -> np.ndarray:
    return np.zeros(int(round(seconds * sr)), np.float32)


def corpus_bytes(c: Corpus) -> list[bytes]:
    """The sample bytes of every segment (the WAV files' PEAK chunk holds a write time stamp)."""
    return [c.load(s).tobytes() for s in c.segments()]


def leftovers(home: Path) -> list[str]:
    root = home / "corpora"
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".")) if root.exists() else []


def yin_f0(x: np.ndarray, sr: int = SR, fmin: float = 50.0, fmax: float = 4200.0,
           frame: int = 1024, hop: int = 512, threshold: float = 0.15) -> np.ndarray:
    """A small YIN pitch tracker (0 where no period is found) for range checks."""
    w = frame // 2
    tmin, tmax = int(sr / fmax), min(w, int(sr / fmin))
    lags = np.arange(tmax + 1)
    out = []
    for s in range(0, len(x) - frame, hop):
        f = x[s:s + frame].astype(np.float64)
        corr = np.fft.irfft(np.fft.rfft(f, 2 * frame) * np.fft.rfft(f[:w][::-1], 2 * frame))[w - 1:w + tmax]
        e = np.concatenate([[0.0], np.cumsum(f * f)])
        d = e[w] + (e[lags + w] - e[lags]) - 2 * corr
        cm = np.ones_like(d)
        cm[1:] = d[1:] * lags[1:] / np.maximum(np.cumsum(d[1:]), 1e-12)
        below = np.flatnonzero(cm[tmin:] < threshold)
        if len(below) == 0:
            out.append(0.0)
            continue
        t = tmin + below[0]
        while t + 1 <= tmax and cm[t + 1] < cm[t]:
            t += 1
        out.append(sr / t)
    return np.array(out)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One short default corpus per instrument (about 0.3 minutes each)."""
    home = tmp_path_factory.mktemp("home")
    return home, {inst: build_corpus(home, inst, minutes=0.3, seed=0) for inst in INSTRUMENTS}


# ---------------------------------------------------------------------------------------------
# default corpora
# ---------------------------------------------------------------------------------------------


def test_build_is_deterministic(tmp_path, built):
    home, corpora = built
    again = build_corpus(tmp_path, "violin", minutes=0.3, seed=0)
    assert corpus_bytes(again) == corpus_bytes(corpora["violin"])
    assert [(s["file"], s["split"], s["duration"]) for s in again.segments()] == \
           [(s["file"], s["split"], s["duration"]) for s in corpora["violin"].segments()]
    other = build_corpus(tmp_path, "violin", minutes=0.3, seed=1, name="violin-seed1")
    assert corpus_bytes(other) != corpus_bytes(again)


def test_duration_at_least_requested_and_scales(tmp_path, built):
    _, corpora = built
    for c in corpora.values():
        assert sum(c.durations().values()) >= 0.3 * 60
    small = build_corpus(tmp_path, "trumpet", minutes=0.2)
    big = build_corpus(tmp_path, "trumpet", minutes=0.8, name="trumpet-big")
    s, b = sum(small.durations().values()), sum(big.durations().values())
    assert s >= 12.0 and b >= 48.0
    assert 2.5 < b / s < 5.5
    assert big.manifest["settings"]["rendered_seconds"] >= 48.0


def test_builtin_manifest_and_segments(built):
    home, corpora = built
    for inst, c in corpora.items():
        m = json.loads((c.path / "manifest.json").read_text())
        assert m["name"] == inst and m["kind"] == "builtin" and m["instrument"] == inst
        assert m["sample_rate"] == SR and m["settings"]["seed"] == 0 and m["settings"]["minutes"] == 0.3
        assert m["settings"]["program"] == {"violin": 40, "flute": 73, "trumpet": 56}[inst]
        peak = 0.0
        for seg in c.segments():
            a = c.load(seg)
            assert a.dtype == np.float32 and np.all(np.isfinite(a))
            assert 0.5 <= seg["duration"] <= 8.0 + 1e-6
            assert len(a) == round(seg["duration"] * SR)
            assert soundfile.info(str(c.path / seg["file"])).samplerate == SR
            peak = max(peak, float(np.max(np.abs(a))))
        assert peak == pytest.approx(0.9, abs=1e-3)
        counts = c.counts()
        assert counts["valid"] >= 1 and counts["test"] >= 1 and counts["train"] >= counts["valid"]
        assert c.durations() == pytest.approx({s: sum(x["duration"] for x in c.segments(s))
                                               for s in ("train", "valid", "test")})


@pytest.mark.parametrize("inst", INSTRUMENTS)
def test_phrase_notes_in_range_with_vibrato_and_dynamics(inst):
    low, high = RANGES[inst]
    rng = np.random.default_rng(3)
    t, keys, bends, exprs = 0.0, [], [], []
    for _ in range(60):
        events, end = phrase_events(inst, rng, t)
        assert [e[0] for e in events] == sorted(e[0] for e in events) and events[0][0] >= t
        keys += [e[2] for e in events if e[1] == "on"]
        bends += [e[2] for e in events if e[1] == "bend"]
        exprs += [e[3] for e in events if e[1] == "cc" and e[2] == 11]
        t = end + 1.0
    assert low <= min(keys) and max(keys) <= high
    assert max(keys) - min(keys) >= 18                       # phrases cover a good part of the range
    cents = (np.array(bends) - 8192) / 8192 * 200
    assert np.abs(cents).max() <= 45 and np.abs(cents).max() >= 10
    assert min(exprs) >= 60 and max(exprs) - min(exprs) >= 30  # crescendi and decrescendi


def test_rendered_pitch_in_instrument_range(built):
    _, corpora = built
    for inst, c in corpora.items():
        low, high = RANGES[inst]
        f0 = np.concatenate([yin_f0(c.load(s)) for s in c.segments()])
        midi = 69 + 12 * np.log2(f0[f0 > 0] / 440.0)
        assert len(midi) > 100
        inside = np.mean((midi > low - 1.5) & (midi < high + 1.5))
        assert inside > 0.9, (inst, np.percentile(midi, [1, 50, 99]))


def test_unknown_instrument_and_missing_soundfont(tmp_path, monkeypatch):
    with pytest.raises(DX7Error, match="violin, flute, trumpet"):
        build_corpus(tmp_path, "banjo")
    with pytest.raises(DX7Error, match="minutes"):
        build_corpus(tmp_path, "violin", minutes=0)
    monkeypatch.setattr(corpus_mod, "SOUNDFONT", "NoSuchFont.sf2")
    with pytest.raises(DX7Error, match="NoSuchFont.sf2"):
        build_corpus(tmp_path, "violin", minutes=0.1)
    assert not (tmp_path / "corpora" / "violin").exists() and leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# segmenting and splits
# ---------------------------------------------------------------------------------------------


def test_segment_audio_splits_at_silences():
    quiet = tone(1.0, amp=0.5 * 10 ** (-50 / 20))               # 50 dB down: counts as silence
    x = np.concatenate([silence(0.4), tone(2.0), silence(0.5), tone(1.5, 660), silence(0.15), tone(1.0),
                        quiet, tone(1.2), silence(0.6), tone(0.3), silence(0.6)])
    pieces = [(a / SR, b / SR) for a, b in segment_audio(x, SR)]
    # tone 2 s | gap 0.5 | 1.5 s + short gap 0.15 (kept) + 1 s | quiet 1 s | 1.2 s | gap | 0.3 s blip (dropped)
    expected = [(0.4, 2.4), (2.9, 5.55), (6.55, 7.75)]
    assert len(pieces) == len(expected)
    for (a, b), (ea, eb) in zip(pieces, expected):
        assert a == pytest.approx(ea, abs=0.08) and b == pytest.approx(eb, abs=0.08)


def test_segment_audio_cuts_long_pieces_evenly():
    pieces = segment_audio(np.concatenate([tone(20.0), silence(1.0), tone(7.5)]), SR, max_seconds=8.0)
    lengths = [(b - a) / SR for a, b in pieces]
    assert len(pieces) == 4
    assert all(abs(n - lengths[0]) < 0.01 for n in lengths[:3]) and max(lengths) <= 8.0 + 1e-9
    assert pieces[0][1] == pieces[1][0] and pieces[1][1] == pieces[2][0]   # contiguous parts
    assert segment_audio(silence(3.0), SR) == [] and segment_audio(np.zeros(0), SR) == []


def test_assign_splits_proportions_and_non_empty():
    keys = [f"file{i}.wav\0{i % 7}" for i in range(2000)]
    splits = assign_splits(keys)
    assert splits == assign_splits(keys)
    assert [splits.count(s) for s in ("train", "valid", "test")] == [1600, 200, 200]
    # an item's split depends on the keys, not on their order
    rev = assign_splits(keys[::-1])[::-1]
    assert rev == splits
    shares = [np.mean([s == "train" for s in splits[a:a + 400]]) for a in range(0, 2000, 400)]
    assert min(shares) > 0.7 and max(shares) < 0.9                     # spread, not in blocks
    for n in range(3, 25):
        for prefix in ("a", "b", "c"):
            s = assign_splits([f"{prefix}{i}" for i in range(n)])
            assert set(s) == {"train", "valid", "test"}
            assert s.count("train") >= s.count("valid") and s.count("valid") == s.count("test")
    assert assign_splits(["x", "y"]) == ["train", "train"] and assign_splits([]) == []


# ---------------------------------------------------------------------------------------------
# corpora from folders
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def recordings(tmp_path) -> Path:
    folder = tmp_path / "recs"
    (folder / "sub").mkdir(parents=True)
    sr = 44100
    left = np.concatenate([tone(3.0, 440, sr), silence(0.8, sr), tone(2.0, 330, sr)])
    soundfile.write(folder / "stereo.wav", np.stack([left, np.zeros_like(left)], 1), sr, subtype="PCM_16")
    soundfile.write(folder / "sub" / "mono.flac", tone(2.5, 523.25, 22050), 22050)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x10\x00\x00WAVEjunk" + bytes(200))
    nan = tone(2.0)
    nan[1000] = np.nan
    soundfile.write(folder / "nan.wav", nan, SR, subtype="FLOAT")
    (folder / "notes.txt").write_text("not audio")
    return folder


def test_add_corpus_from_folder(tmp_path, recordings):
    home = tmp_path / "home"
    calls = []
    c = add_corpus(home, "mine", audio_dir=recordings, instrument="vn", progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (4, 4)
    assert c.kind == "audio" and c.instrument == "violin" and c.name == "mine"
    warned = " ".join(c.warnings)
    assert "corrupt.wav" in warned and "nan.wav" in warned and len(c.warnings) == 2
    sources = [s["source"] for s in c.segments()]
    assert sorted(set(sources)) == ["stereo.wav", "sub/mono.flac"]
    stereo = [s for s in c.segments() if s["source"] == "stereo.wav"]
    assert len(stereo) == 2
    assert stereo[0]["start_seconds"] == pytest.approx(0.0, abs=0.06)
    assert stereo[0]["duration"] == pytest.approx(3.0, abs=0.12)
    assert stereo[1]["start_seconds"] == pytest.approx(3.8, abs=0.08)
    a = c.load(stereo[0])
    assert np.max(np.abs(a)) == pytest.approx(0.25, abs=0.01)   # left 0.5, right 0: averaged
    spec = np.abs(np.fft.rfft(a[:SR]))
    assert np.argmax(spec) == pytest.approx(440, abs=2)          # 1 s at 16 kHz: 1 Hz per bin
    mono = [s for s in c.segments() if s["source"] == "sub/mono.flac"]
    assert mono[0]["duration"] == pytest.approx(2.5, abs=0.12)
    assert c.counts()["valid"] >= 1 and c.counts()["test"] >= 1
    reopened = Corpus.open(home, "mine")
    assert reopened.segments() == c.segments() and reopened.warnings == c.warnings
    assert c.to_dict()["segments"] == c.counts()


def test_add_corpus_keeps_short_notes_down_to_min_seconds(tmp_path):
    home = tmp_path / "home"
    short = tmp_path / "short"
    short.mkdir()
    t = np.arange(int(0.3 * SR)) / SR
    pluck = (0.5 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    soundfile.write(short / "a.wav", np.concatenate([silence(0.5), pluck, silence(0.5)]), SR)
    with pytest.raises(DX7Error, match="no file has a sound of 0.5 s or more.*--min-seconds") as err:
        add_corpus(home, "x", audio_dir=short)
    assert str(short) in str(err.value)
    c = add_corpus(home, "x", audio_dir=short, min_seconds=0.25)
    assert len(c.segments()) == 1 and c.manifest["settings"]["min_seconds"] == 0.25
    for bad in (0.1, 20.0, "1"):
        with pytest.raises(DX7Error, match="min_seconds"):
            add_corpus(home, "y", audio_dir=short, min_seconds=bad)


def test_add_corpus_folder_errors(tmp_path):
    home = tmp_path / "home"
    with pytest.raises(DX7Error, match="does not exist") as err:
        add_corpus(home, "x", audio_dir=tmp_path / "nowhere")
    assert "nowhere" in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DX7Error, match="no audio files") as err:
        add_corpus(home, "x", audio_dir=empty)
    assert str(empty) in str(err.value)
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    soundfile.write(quiet / "a.wav", silence(2.0), SR)
    soundfile.write(quiet / "b.flac", silence(1.0), SR)
    with pytest.raises(DX7Error, match="silent") as err:
        add_corpus(home, "x", audio_dir=quiet)
    assert str(quiet) in str(err.value) and "\n" not in str(err.value)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.wav").write_bytes(b"garbage")
    with pytest.raises(DX7Error, match="no usable audio") as err:
        add_corpus(home, "x", audio_dir=broken)
    assert "a.wav" in str(err.value)
    with pytest.raises(DX7Error, match="exactly one"):
        add_corpus(home, "x")
    with pytest.raises(DX7Error, match="exactly one"):
        add_corpus(home, "x", audio_dir=quiet, urmp_dir=quiet)
    with pytest.raises(DX7Error, match="unknown instrument"):
        add_corpus(home, "x", audio_dir=broken, instrument="kazoo")
    assert not (home / "corpora" / "x").exists() and leftovers(home) == []


def test_urmp_stems(tmp_path):
    urmp = tmp_path / "URMP" / "Dataset"
    (urmp / "01_Jupiter_vn_vc").mkdir(parents=True)
    (urmp / "09_Jesus_tpt_vn").mkdir(parents=True)
    stems = [("01_Jupiter_vn_vc/AuSep_1_vn_01_Jupiter.wav", 440), ("01_Jupiter_vn_vc/AuSep_2_vc_01_Jupiter.wav", 110),
             ("01_Jupiter_vn_vc/AuMix_01_Jupiter_vn_vc.wav", 440), ("09_Jesus_tpt_vn/AuSep_1_tpt_09_Jesus.wav", 349),
             ("09_Jesus_tpt_vn/AuSep_2_vn_09_Jesus.wav", 587), ("09_Jesus_tpt_vn/vn_09_Jesus.wav", 500)]
    for rel, freq in stems:
        soundfile.write(urmp / rel, tone(1.5, freq, 48000), 48000)
    home = tmp_path / "home"
    c = add_corpus(home, "urmp-vn", urmp_dir=tmp_path / "URMP", instrument="vn")
    assert c.kind == "urmp" and c.instrument == "violin"
    assert sorted({s["source"] for s in c.segments()}) == [
        "Dataset/01_Jupiter_vn_vc/AuSep_1_vn_01_Jupiter.wav", "Dataset/09_Jesus_tpt_vn/AuSep_2_vn_09_Jesus.wav"]
    assert c.manifest["settings"]["urmp_code"] == "vn"
    t = add_corpus(home, "urmp-tpt", urmp_dir=tmp_path / "URMP", instrument="tpt")
    assert [s["source"] for s in t.segments()] == ["Dataset/09_Jesus_tpt_vn/AuSep_1_tpt_09_Jesus.wav"]
    assert t.counts() == {"train": 1, "valid": 0, "test": 0} and "valid and test splits are empty" in t.warnings[0]
    with pytest.raises(DX7Error, match="vn, va, vc") as err:
        add_corpus(home, "u", urmp_dir=tmp_path / "URMP", instrument="banjo")
    assert "tpt" in str(err.value)
    with pytest.raises(DX7Error, match="instrument code"):
        add_corpus(home, "u", urmp_dir=tmp_path / "URMP")
    with pytest.raises(DX7Error, match="AuSep_<track>_fl_<piece>"):
        add_corpus(home, "u", urmp_dir=tmp_path / "URMP", instrument="fl")


# ---------------------------------------------------------------------------------------------
# names, atomicity, opening and listing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "Violin", "../evil", "a/b", "-x", "_x", ".hidden", "a b", "x" * 41, "ä", "a\n"])
def test_bad_names(tmp_path, bad):
    with pytest.raises(DX7Error, match="bad corpus name"):
        check_name(bad)
    with pytest.raises(DX7Error, match="bad corpus name"):
        build_corpus(tmp_path, "violin", minutes=0.1, name=bad)
    with pytest.raises(DX7Error, match="bad corpus name"):
        Corpus.open(tmp_path, bad)
    assert list(tmp_path.iterdir()) == []


def test_good_names():
    for good in ("violin", "a", "my-flute_2", "0" + "x" * 39):
        assert check_name(good) == good


def test_existing_corpus_untouched_when_rebuild_fails(tmp_path, monkeypatch):
    first = build_corpus(tmp_path, "flute", minutes=0.15)
    before = {p.relative_to(first.path): p.read_bytes() for p in first.path.rglob("*") if p.is_file()}
    with pytest.raises(DX7Error, match="already exists"):
        build_corpus(tmp_path, "flute", minutes=0.15, seed=5)

    real = corpus_mod.write_wav
    calls = []

    def failing(path, audio, sr):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt("interrupted mid-way")
        real(path, audio, sr)

    monkeypatch.setattr(corpus_mod, "write_wav", failing)
    with pytest.raises(KeyboardInterrupt):
        build_corpus(tmp_path, "flute", minutes=0.15, seed=5, overwrite=True)
    assert len(calls) == 2
    after = {p.relative_to(first.path): p.read_bytes() for p in first.path.rglob("*") if p.is_file()}
    assert after == before and leftovers(tmp_path) == []
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        add_corpus(tmp_path, "fresh", audio_dir=first.path / "audio")
    assert not (tmp_path / "corpora" / "fresh").exists() and leftovers(tmp_path) == []

    monkeypatch.setattr(corpus_mod, "write_wav", real)
    second = build_corpus(tmp_path, "flute", minutes=0.15, seed=5, overwrite=True)
    assert second.manifest["settings"]["seed"] == 5 and leftovers(tmp_path) == []
    assert Corpus.open(tmp_path, "flute").manifest["settings"]["seed"] == 5


def test_open_missing_and_bad_segments(tmp_path, built):
    home, corpora = built
    with pytest.raises(DX7Error, match=r"no corpus named 'nope'; build one with `dx7tools corpus build violin`"):
        Corpus.open(tmp_path, "nope")
    with pytest.raises(DX7Error, match=r"build it with `dx7tools corpus build flute`"):
        Corpus.open(tmp_path, "flute")
    c = Corpus.open(home, "violin")
    with pytest.raises(DX7Error, match="unknown split"):
        c.segments("training")
    with pytest.raises(DX7Error, match="bad segment file"):
        c.load({"file": "../../etc/passwd"})
    assert all(s["split"] == "test" for s in c.segments("test"))
    assert c.to_dict()["instrument"] == "violin"


def test_list_corpora(tmp_path, built):
    assert list_corpora(tmp_path) == []
    home, corpora = built
    rows = list_corpora(home)
    names = [r["name"] for r in rows]
    assert {"violin", "flute", "trumpet"} <= set(names) and names == sorted(names)
    row = next(r for r in rows if r["name"] == "trumpet")
    assert row["kind"] == "builtin" and row["instrument"] == "trumpet"
    assert row["segments"] == corpora["trumpet"].counts()
    assert row["durations"]["train"] == pytest.approx(corpora["trumpet"].durations()["train"], abs=1e-3)
    (tmp_path / "corpora" / ".junk.abc.tmp").mkdir(parents=True)
    (tmp_path / "corpora" / "broken").mkdir()
    (tmp_path / "corpora" / "broken" / "manifest.json").write_text("{not json")
    rows = list_corpora(tmp_path)
    assert [(r["name"], r["kind"]) for r in rows] == [("broken", "broken")]
    with pytest.raises(DX7Error, match="unreadable corpus manifest"):
        Corpus.open(tmp_path, "broken")
