"""`dx7tools resynth` through the real console script: a recording at another rate than 16 kHz
goes through the resampler and comes out at 16 kHz with the same duration; a recording that
cannot be read ends in one error line and leaves no output."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from ddx7.fit import train
from ddx7.rank.choose import paper_config
from ddx7.run import FitConfig
from ddx7.synth import FMSynth

RUN = "tiny"


def phrases(n: int = 4, frames: int = 200) -> list[train.Example]:
    """Phrases rendered by the violin configuration, with their own f0 and loudness."""
    synth = FMSynth(paper_config("violin"))
    out = []
    for i in range(n):
        f0 = np.full(frames, 196.0 * 2 ** (3 * i / 12), np.float32)
        env = np.clip(np.linspace(0, 3, frames), 0, 1) * np.clip(np.linspace(3, 0, frames), 0, 1)
        index = torch.from_numpy(np.stack([env * 2, env * 0.5, env * 2, env, env * 0.3, env * 0.1], -1)).float()
        with torch.no_grad():
            audio = synth(torch.from_numpy(f0)[None], index[None])[0].numpy()
        out.append(train.Example(audio, f0, (-60 + 50 * env).astype(np.float32), f"phrase{i}"))
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A data home holding one DDX7 run trained two steps (CREPE tiny, as `--crepe tiny`)."""
    home = tmp_path_factory.mktemp("resynth-home")
    ex = phrases()
    cfg = FitConfig(corpus="synthetic", steps=2, batch_size=2, segment_seconds=0.5, minutes=None, crepe="tiny",
                    valid_every=1, checkpoint_seconds=0, threads=1)
    train.fit(None, home / "runs" / RUN, cfg, paper_config("violin"), data={"train": ex[:3], "valid": ex[3:],
                                                                             "test": []})
    return home


def tone(sample_rate: int, seconds: float = 1.2, f0: float = 220.0) -> np.ndarray:
    """A harmonic tone with 0.1 s fades, stereo (the two channels differ in level)."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    env = np.minimum(1.0, np.minimum(t, seconds - t) / 0.1)
    mono = 0.3 * env * sum(a * np.sin(2 * np.pi * f0 * (k + 1) * t) for k, a in enumerate((1.0, 0.5, 0.25)))
    return np.stack([mono, 0.5 * mono], 1).astype(np.float32)


def envelope(audio: np.ndarray, hop: int = 320) -> np.ndarray:
    """RMS per 20 ms."""
    n = len(audio) // hop
    return np.sqrt((audio[: n * hop].reshape(n, hop) ** 2).mean(1))


def resynth(run_cli, home, src, dst):
    return run_cli("resynth", RUN, src, "-o", dst, "--json", use_home=False, env={"DX7TOOLS_HOME": str(home)})


@pytest.fixture(scope="module")
def at_16k(home, tmp_path_factory, dx7tools_exe):
    """The tone recorded at 16 kHz, resynthesised: what the other rates must come out alike."""
    import subprocess

    folder = tmp_path_factory.mktemp("at-16k")
    soundfile.write(folder / "in.wav", tone(16000), 16000)
    subprocess.run([dx7tools_exe, "resynth", RUN, str(folder / "in.wav"), "-o", str(folder / "out.wav"),
                    "--home", str(home)], check=True, capture_output=True, timeout=300)
    return soundfile.read(folder / "out.wav", dtype="float32")[0]


@pytest.mark.parametrize("rate", [44100, 22050])
def test_other_rates_come_out_at_16k_with_the_same_duration(run_cli, home, at_16k, tmp_path, rate):
    source = tone(rate)
    src = tmp_path / f"in{rate}.wav"
    soundfile.write(src, source, rate)
    r = resynth(run_cli, home, src, tmp_path / "out.wav")
    assert r.returncode == 0, r.stderr
    out, sr = soundfile.read(tmp_path / "out.wav", dtype="float32")
    info = soundfile.info(tmp_path / "out.wav")
    # what the command promises: 16 kHz mono 32-bit float, as long as the input
    assert sr == 16000 and info.channels == 1 and info.subtype == "FLOAT" and out.ndim == 1
    assert abs(len(out) - len(source) * 16000 / rate) <= 1
    assert r.json()["seconds"] == pytest.approx(len(out) / 16000) and r.json()["output"] == str(tmp_path / "out.wav")
    # and it is the same performance: the same tone recorded at 16 kHz resynthesises alike
    assert abs(len(at_16k) - len(out)) <= 1
    a, b = envelope(out), envelope(at_16k)
    assert a.max() > 1e-3 and np.corrcoef(a, b)[0, 1] > 0.95
    np.testing.assert_allclose(a, b, atol=0.1 * b.max())


def truncated_flac(path) -> None:
    full = path.with_name("full.flac")
    soundfile.write(full, tone(44100, seconds=2.0), 44100)
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # the header says 2 s; the stream breaks off


@pytest.mark.parametrize("name, make", [
    ("bad.wav", lambda p: p.write_text("just some text, not audio\n")),
    ("bad.wav", lambda p: p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00")),  # header cut
    ("bad.flac", truncated_flac),                                 # readable header, unreadable stream
], ids=["text", "cut-header", "truncated-stream"])
def test_unreadable_recording_is_one_error_line_and_no_output(run_cli, home, tmp_path, name, make):
    src = tmp_path / name
    make(src)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    r = resynth(run_cli, home, src, out_dir / "out.wav")
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: {src}: cannot read audio"), lines[0]
    assert r.stdout == "" and list(out_dir.iterdir()) == []
