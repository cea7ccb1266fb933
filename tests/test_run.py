"""A run's home (ddx7.run): finding runs, their record, loading a model once, the resume rules."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ddx7 import run as runs
from ddx7.fit import train
from ddx7.rank.choose import paper_config
from ddx7.synth import FMSynth
from dx7tools.errors import DX7Error


def _examples(n: int = 4, frames: int = 120) -> dict:
    synth = FMSynth(paper_config("violin"))
    out = []
    for i in range(n):
        f0 = np.full(frames, 220.0 * 2 ** (i / 12), np.float32)
        env = np.clip(np.linspace(0, 3, frames), 0, 1).astype(np.float32)
        index = torch.from_numpy(np.stack([env * 2, env, env, env, env * 0.3, env * 0.1], -1)).float()
        with torch.no_grad():
            audio = synth(torch.from_numpy(f0)[None], index[None])[0].numpy()
        out.append(train.Example(audio, f0, (-60 + 50 * env).astype(np.float32), f"seg{i}"))
    return {"train": out[:2], "valid": out[2:3], "test": out[3:]}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A data home with one 2-step DDX7 run (feedback cap off) and one 1-step HpN run."""
    home = tmp_path_factory.mktemp("home")
    data = _examples()
    cfg = runs.FitConfig(corpus="synthetic", steps=2, minutes=None, batch_size=2, segment_seconds=0.3,
                         valid_every=1, checkpoint_seconds=0, feedback_cap=False)
    train.fit(home, runs.runs_dir(home) / "tiny-ddx7", cfg, paper_config("violin"), data=data)
    hpn = runs.FitConfig(corpus="synthetic", model="hpn", steps=1, minutes=None, batch_size=1,
                         segment_seconds=0.3, valid_every=1, checkpoint_seconds=0)
    train.fit(home, runs.runs_dir(home) / "tiny-hpn", hpn, None, data=data)
    return home


def test_open_by_name_or_folder(home):
    by_name = runs.Run.open(home, "tiny-ddx7")
    by_folder = runs.Run.open(home, str(runs.runs_dir(home) / "tiny-ddx7"))
    assert by_name.path == by_folder.path and by_name.record == by_folder.record
    assert by_name.kind == "ddx7" and by_name.corpus == "synthetic" and by_name.finished
    assert by_name.fixed_config.key == paper_config("violin").key
    assert by_name.fit_config.steps == 2 and by_name.fit_config.feedback_cap is False
    assert runs.Run.open(home, "tiny-hpn").fixed_config is None


def test_unknown_runs_and_bad_names_are_one_clear_error(home, tmp_path):
    with pytest.raises(DX7Error, match="no run named 'ghost'"):
        runs.Run.open(home, "ghost")
    with pytest.raises(DX7Error, match="bad run name"):
        runs.Run.open(home, "../evil")
    with pytest.raises(DX7Error, match="not a run folder"):
        runs.Run.open(home, str(tmp_path))    # a folder, but no run.json


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00", b"[1, 2]", b'{"model": "ddx7"}',
                                     b'{"model": "gan", "config": {}}', b'{"model": "ddx7", "config": {}}'])
def test_a_damaged_record_is_one_error_naming_the_file(home, tmp_path, content):
    folder = tmp_path / "damaged"
    folder.mkdir()
    (folder / runs.RECORD_FILE).write_bytes(content)
    with pytest.raises(DX7Error) as caught:
        runs.Run.at(folder)
    assert "damaged" in str(caught.value) and str(folder / runs.RECORD_FILE) in str(caught.value)


def test_model_is_loaded_once_and_plays_in_eval_mode(home):
    run = runs.Run.open(home, "tiny-ddx7")
    model = run.model()
    assert run.model() is model and not model.training
    f0, loud = torch.full((1, 30), 220.0), torch.full((1, 30), -20.0)
    with torch.no_grad():
        again, _ = runs.load_model(run.path)
        torch.testing.assert_close(model(f0, loud), again(f0, loud))


def test_requirements_say_what_is_missing(home, tmp_path):
    with pytest.raises(DX7Error, match="only DDX7 runs map onto DX7"):
        runs.Run.open(home, "tiny-hpn").require_ddx7()
    import shutil

    unfinished = tmp_path / "unfinished"
    shutil.copytree(runs.runs_dir(home) / "tiny-ddx7", unfinished)
    record = json.loads((unfinished / runs.RECORD_FILE).read_text())
    runs.write_record(unfinished, {**record, "status": "training"})
    with pytest.raises(DX7Error, match="never finished training.*--resume"):
        runs.Run.at(unfinished).require_finished()
    (unfinished / runs.MODEL_FILE).unlink()
    with pytest.raises(DX7Error, match="no trained model yet"):
        runs.Run.at(unfinished).model()


def test_start_and_resume_rules(home, tmp_path):
    existing = runs.runs_dir(home) / "tiny-ddx7"
    with pytest.raises(DX7Error, match="exists; pass --resume"):
        runs.start(existing, resume=False)
    with pytest.raises(DX7Error, match="nothing to resume"):
        runs.start(tmp_path / "never", resume=True)
    assert runs.start(tmp_path / "new", resume=False) is None
    assert runs.start(existing, resume=True)["name"] == "tiny-ddx7"
    cfg, config = runs.resume_settings(runs.Run.at(existing), steps=5)
    assert (cfg.steps, cfg.minutes) == (5, None) and config.key == paper_config("violin").key
    assert cfg.feedback_cap is False        # the weights were trained without it: resuming keeps that
    cfg, _ = runs.resume_settings(runs.Run.at(existing), minutes=0.5)
    assert (cfg.steps, cfg.minutes) == (None, 0.5)


def test_listing_skips_damaged_runs_and_finds_the_newest_finished(home, tmp_path):
    import shutil

    other = tmp_path / "home2"
    shutil.copytree(home, other)
    (runs.runs_dir(other) / "broken").mkdir()
    (runs.runs_dir(other) / "broken" / runs.RECORD_FILE).write_text("{")
    names = [r["name"] for r in runs.list_runs(other)]
    assert names == ["tiny-ddx7", "tiny-hpn"]
    assert runs.newest_finished(other, kind="hpn", corpus="synthetic").name == "tiny-hpn"
    assert runs.newest_finished(other, kind="hpn", corpus="synthetic", exclude="tiny-hpn") is None
    assert runs.newest_finished(other, kind="hpn", corpus="other") is None


def test_commands_report_a_damaged_record_in_one_line(home, tmp_path):
    """``fit --resume``, ``export``, ``eval``, ``report`` and ``resynth`` on a damaged run.json."""
    import shutil

    from cli.app import app

    other = tmp_path / "home3"
    shutil.copytree(home, other)
    (runs.runs_dir(other) / "tiny-ddx7" / runs.RECORD_FILE).write_text('{"model": ')
    wav = tmp_path / "in.wav"
    import soundfile

    soundfile.write(wav, np.zeros(1600, np.float32), 16000)
    commands = [["fit", "--corpus", "synthetic", "--run", "tiny-ddx7", "--resume"],
                ["export", "tiny-ddx7", "--syx", str(tmp_path / "a.syx")],
                ["eval", "tiny-ddx7"], ["report", "tiny-ddx7", "-o", str(tmp_path / "r.html")],
                ["resynth", "tiny-ddx7", str(wav), "-o", str(tmp_path / "o.wav")]]
    runner = CliRunner()
    for args in commands:
        result = runner.invoke(app, [*args, "--home", str(other)])
        assert isinstance(result.exception, DX7Error), (args, result.exception)
        assert "damaged" in str(result.exception), (args, str(result.exception))
    assert not (tmp_path / "a.syx").exists() and not (tmp_path / "o.wav").exists()


def test_a_missing_default_corpus_is_built_and_others_get_a_hint(tmp_path):
    from ddx7.data.corpus import open_or_build

    corpus, built = open_or_build(tmp_path, "flute", minutes=0.05)
    assert built and corpus.instrument == "flute" and corpus.segments()
    again, built = open_or_build(tmp_path, "flute", minutes=0.05)
    assert not built and again.path == corpus.path
    with pytest.raises(DX7Error, match="no corpus named 'mine'.*corpus add"):
        open_or_build(tmp_path, "mine")


def test_uncached_seconds_counts_what_features_would_compute(tmp_path):
    from ddx7.data.corpus import build_corpus
    from ddx7.data.examples import load_examples, uncached_seconds

    corpus = build_corpus(tmp_path, "trumpet", minutes=0.05)
    cfg = runs.FitConfig(corpus="trumpet", crepe="tiny")
    before = uncached_seconds(tmp_path, "trumpet", cfg)
    assert before == pytest.approx(sum(corpus.durations().values()), abs=0.05) and before > 0
    load_examples(tmp_path, "trumpet", cfg)
    assert uncached_seconds(tmp_path, "trumpet", cfg) == 0.0
    assert uncached_seconds(tmp_path, "trumpet", runs.FitConfig(corpus="trumpet", crepe="full")) == before
