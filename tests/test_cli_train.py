"""The training commands end to end through the real console script: corpus add, fit (and a
kill -9 in the middle of it, then --resume), runs, resynth."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.conftest import violin_phrase

PATCHES = Path(__file__).parent.parent / "patches" / "dx7tools-starters.syx"
FIT = ("--voice", "DDX7 VIOLN", "--crepe", "tiny", "--batch-size", "2", "--segment-seconds", "0.5",
       "--valid-every", "5", "--checkpoint-seconds", "0", "--no-test-audio")


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("recordings")
    silence = np.zeros(8000, np.float32)
    for i, f0 in enumerate((196.0, 261.6, 392.0)):
        take = np.concatenate([violin_phrase(f0, 2.0), silence, violin_phrase(f0 * 1.26, 1.5), silence,
                               violin_phrase(f0 * 1.5, 1.0)])
        stereo = np.stack([take, take], 1)
        soundfile.write(d / f"take{i}.wav", stereo, 16000)
    return d


@pytest.fixture
def mini(run_cli, recordings):
    r = run_cli("import", str(PATCHES))
    assert r.returncode == 0, r.stderr
    r = run_cli("corpus", "add", "mini", "--audio", str(recordings), "--json")
    assert r.returncode == 0, r.stderr
    return run_cli


def metrics(home: Path, run: str) -> list[dict]:
    return list(csv.DictReader(open(home / "runs" / run / "metrics.csv")))


def test_fit_runs_and_resynth(mini, home, recordings, tmp_path):
    r = mini("fit", "--corpus", "mini", "--steps", "6", "--run", "a", *FIT, "--json")
    assert r.returncode == 0, r.stderr
    info = r.json()
    assert info["steps"] == 6 and info["parameters"] > 400_000 and info["fixed_config"]["algorithm"] == 2
    r = mini("runs", "--json")
    assert [x["name"] for x in r.json()] == ["a"]
    # the same name again: refused without --resume
    r = mini("fit", "--corpus", "mini", "--steps", "6", "--run", "a", *FIT)
    assert r.returncode == 1 and "exists; pass --resume" in r.stderr
    # resynthesis block by block equals one big block
    src = recordings / "take1.wav"
    for blocks in ("0.37", "100"):
        r = mini("resynth", "a", str(src), "-o", str(tmp_path / f"out{blocks}.wav"), "--block-seconds", blocks)
        assert r.returncode == 0, r.stderr
    small, sr = soundfile.read(tmp_path / "out0.37.wav")
    big, _ = soundfile.read(tmp_path / "out100.wav")
    assert sr == 16000 and len(small) == len(big) == soundfile.info(src).frames
    np.testing.assert_allclose(small, big, atol=2e-3)


def test_kill_9_then_resume_gives_the_same_curve(mini, home, dx7tools_exe):
    args = [dx7tools_exe, "fit", "--corpus", "mini", "--steps", "30", *FIT, "--home", str(home), "--threads", "1"]
    r = mini("fit", "--corpus", "mini", "--steps", "30", "--run", "straight", *FIT, "--threads", "1")
    assert r.returncode == 0, r.stderr
    proc = subprocess.Popen(args + ["--run", "killed"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = home / "runs" / "killed" / "metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline:
        if ckpt.exists() and len(ckpt.read_text().splitlines()) > 12:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(metrics(home, "killed"))
    assert 10 < done < 30, done
    r = mini("fit", "--corpus", "mini", "--run", "killed", "--resume", "--steps", "30", "--no-test-audio")
    assert r.returncode == 0, r.stderr
    a, b = metrics(home, "straight"), metrics(home, "killed")
    assert [x["step"] for x in b] == [str(i) for i in range(1, 31)]
    np.testing.assert_allclose([float(x["train_loss"]) for x in a], [float(x["train_loss"]) for x in b], rtol=1e-5)


@pytest.mark.parametrize("args, message", [
    (("fit", "--corpus", "nope", "--steps", "1"), "no corpus named 'nope'"),
    (("fit", "--corpus", "mini", "--steps", "1", "--voice", "NO SUCH VOICE"), "no voice"),
    (("fit", "--corpus", "mini", "--steps", "1", "--model", "wavenet"), "unknown model"),
    (("fit", "--corpus", "mini", "--steps", "1", "--run", "../x"), "bad run name"),
    (("fit", "--corpus", "mini", "--run", "ghost", "--resume"), "nothing to resume"),
    (("resynth", "ghost", "in.wav", "-o", "out.wav"), "no run named 'ghost'"),
])
def test_training_bad_input(mini, args, message):
    r = mini(*args)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_fit_on_ones_own_recordings_without_voice_trains_the_selectors_pick(run_cli, recordings, home):
    """A corpus of no known instrument and an empty library: the project's cartridge is added and
    ranked, the pick is said, recorded and trained, and the empty library gets a one-line hint."""
    from ddx7.rank.ranking import load_ranking

    assert run_cli("corpus", "add", "mine", "--audio", str(recordings)).returncode == 0
    r = run_cli("fit", "--corpus", "mine", "--steps", "1", "--run", "picked", "--no-test-audio", "--json",
                "--crepe", "tiny", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "the selector picked rank 1" in r.stderr and "Traceback" not in r.stderr
    hints = [line for line in r.stderr.splitlines() if line.startswith("hint:")]
    assert len(hints) == 1 and "dx7tools import" in hints[0]
    selection = json.loads((home / "runs" / "picked" / "run.json").read_text())["selection"]
    cartridge = selection["project_cartridge"]
    assert selection["chosen_rank"] == 1 and cartridge["added"] == len(cartridge["voices"]) > 0
    assert r.json()["selection"] == selection
    assert r.json()["fixed_config"] == load_ranking(home, "mine").best()[0].to_dict()


def test_corpus_add_min_seconds(run_cli, tmp_path):
    short = tmp_path / "plucks"
    short.mkdir()
    t = np.arange(int(0.3 * 16000)) / 16000
    pluck = (0.5 * np.sin(2 * np.pi * 330 * t) * np.exp(-4 * t)).astype(np.float32)
    soundfile.write(short / "a.wav", np.concatenate([np.zeros(8000, np.float32), pluck, np.zeros(8000, np.float32)]),
                    16000)
    r = run_cli("corpus", "add", "plucks", "--audio", str(short))
    assert r.returncode == 1 and "--min-seconds" in r.stderr and str(short) in r.stderr
    r = run_cli("corpus", "add", "plucks", "--audio", str(short), "--min-seconds", "0.25", "--json")
    assert r.returncode == 0, r.stderr
    assert sum(r.json()["segments"].values()) == 1


def test_level_db_is_the_rms_ratio_and_none_for_a_silent_original():
    from ddx7.fit.train import level_db

    x = np.sin(np.arange(1600) / 5.0)
    assert level_db(0.5 * x, x) == pytest.approx(-6.0206, abs=1e-4)
    assert level_db(x, x) == pytest.approx(0.0, abs=1e-9)
    assert level_db(np.zeros(1600), x) < -200
    assert level_db(x, np.zeros(1600)) is None


def test_fit_reports_the_test_level_and_warns_when_the_model_plays_far_below(mini, home, monkeypatch):
    from ddx7.fit import train
    from ddx7.fit.run_fit import fit_run

    settings = {"crepe": "tiny", "batch_size": 2, "segment_seconds": 0.5, "valid_every": 5, "checkpoint_seconds": 0}
    lines: list[str] = []
    info = fit_run(home, "mini", voice="DDX7 VIOLN", run="plays", steps=1, settings=settings, say=lines.append)
    assert isinstance(info["test_level_db"], float) and info["test_excerpts"] > 0
    assert not any(line.startswith("warning: the model plays") for line in lines)
    monkeypatch.setattr(train, "QUIET_DB", info["test_level_db"] + 0.01)   # this run's level counts as quiet
    info = fit_run(home, "mini", voice="DDX7 VIOLN", run="quiet", steps=1, settings=settings, say=lines.append)
    warned = [line for line in lines if line.startswith("warning: the model plays")]
    assert len(warned) == 1 and "runs/quiet/test" in warned[0]
