"""Sweeps: many fit runs at once on a tiny corpus — seeds and bad input, the table's statistics, the
run-after-run fallback without Ray, Ctrl-C and rerun, and on Ray (two local workers) a worker killed
with SIGKILL in the middle of a run: Ray runs it again, it resumes from its checkpoint, the sweep
finishes and the table names it as retried."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import statistics
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from dx7tools.errors import DX7Error
from dx7tools.library import Library

from ddx7 import run as runs
from ddx7.data.corpus import add_corpus
from ddx7.data.examples import load_examples
from ddx7.evaluate import spread
from ddx7.fit import engine
from ddx7.fit.sweep import RunSpec, SweepFailed, parse_seeds, plan_sweep, sweep, train_spec
from tests.conftest import violin_phrase

PATCHES = Path(__file__).parent.parent / "patches" / "dx7tools-starters.syx"
FAST = {"batch_size": 2, "segment_seconds": 0.5, "valid_every": 5, "checkpoint_seconds": 0, "crepe": "tiny",
        "crepe_hop": 320, "threads": 1}
CLI_FAST = ("--batch-size", "2", "--segment-seconds", "0.5", "--valid-every", "5", "--checkpoint-seconds", "0",
            "--no-test-audio", "--crepe-hop", "320", "--threads", "1")


@pytest.fixture(scope="module")
def prepared_home(tmp_path_factory) -> Path:
    """A data home with the project's cartridge and a 9-second violin-labelled corpus 'mini', its
    features (CREPE tiny, hop 320) already cached."""
    home = tmp_path_factory.mktemp("sweep") / "home"
    rec = home.parent / "recordings"
    rec.mkdir()
    silence = np.zeros(4000, np.float32)
    for i, f0 in enumerate((196.0, 261.6, 392.0)):
        take = [violin_phrase(f0, 1.2), silence, violin_phrase(f0 * 1.26, 1.0), silence,
                violin_phrase(f0 * 1.5, 0.8)]
        soundfile.write(rec / f"take{i}.wav", np.concatenate(take), 16000)
    add_corpus(home, "mini", audio_dir=rec, instrument="violin")
    Library(home).import_files([PATCHES])
    load_examples(home, "mini", runs.FitConfig(corpus="mini", crepe="tiny", crepe_hop=320))
    return home


@pytest.fixture
def home(prepared_home, tmp_path) -> Path:
    """A private copy of the prepared home (the run_cli fixture's --home)."""
    shutil.copytree(prepared_home, tmp_path / "home")
    return tmp_path / "home"


@pytest.fixture
def no_ray(monkeypatch):
    """Run as if Ray were not installed (the engine's documented switch)."""
    monkeypatch.setenv(engine.NO_RAY_ENV, "1")


@pytest.fixture(scope="module")
def local_ray():
    """Ray started once for the module on this machine with two worker CPUs, stopped at the end."""
    ray = pytest.importorskip("ray", reason="Ray (optional extra 'ray') not installed: `make install-test` adds it")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def metrics(home: Path, run: str) -> list[dict]:
    return list(csv.DictReader(open(runs.runs_dir(home) / run / runs.METRICS_FILE)))


# -- seeds, statistics ----------------------------------------------------------------------------
def test_seeds_are_a_count_or_distinct_values():
    assert parse_seeds(3) == [0, 1, 2] and parse_seeds([2]) == [0, 1] and parse_seeds([4, 0, 7]) == [4, 0, 7]
    with pytest.raises(DX7Error, match=r"lists seed\(s\) 1, 4 more than once"):
        parse_seeds([1, 4, 1, 2, 4])
    with pytest.raises(DX7Error, match="must be >= 1"):
        parse_seeds(0)
    with pytest.raises(DX7Error, match="must be >= 0"):
        parse_seeds([3, -1])


def test_one_explicit_seed_is_written_with_a_comma():
    assert parse_seeds("3,") == [3] and parse_seeds(["3,"]) == [3] and parse_seeds(["0,"]) == [0]
    assert parse_seeds(["3"]) == [0, 1, 2] and parse_seeds("3") == [0, 1, 2]     # one number: a count
    assert parse_seeds(["0,4,7"]) == [0, 4, 7] and parse_seeds(["5,", "2"]) == [5, 2]
    with pytest.raises(DX7Error, match=r"--seeds 0: the number of seeds must be >= 1 \(seed 0 alone: --seeds 0,\)"):
        parse_seeds(["0"])
    with pytest.raises(DX7Error, match="--seeds: 'x' is not a whole number"):
        parse_seeds(["1,x"])
    with pytest.raises(DX7Error, match=r"lists seed\(s\) 3 more than once"):
        parse_seeds(["3,3"])
    assert [s.seed for s in plan_sweep(["mini"], [None], ["ddx7"], "3,", steps=1)] == [3]


def test_the_table_statistics():
    values = [1.0, 1.3, 1.1, 1.6]
    row = spread.summarize(values)
    assert row["n"] == 4 and row["mean"] == pytest.approx(statistics.mean(values))
    assert row["spread"] == pytest.approx(statistics.stdev(values), abs=1e-6)   # sample sd, ddof 1
    assert spread.summarize([2.5]) == {"n": 1, "mean": 2.5, "spread": None, "values": [2.5]}
    assert spread.format_value(spread.summarize([1.0, 1.2, 1.1])) == "1.100 ± 0.100 (n=3)"
    assert spread.format_value(spread.summarize([2.5])) == "2.500 (n=1)"
    best = {"group": "a", **spread.summarize([1.0, 1.2])}             # mean 1.1, sd 0.141
    near = {"group": "a", **spread.summarize([1.15, 1.25])}           # 0.1 above: within the larger sd
    far = {"group": "a", **spread.summarize([1.5, 1.52])}             # 0.41 above: beyond both sds
    alone = {"group": "b", **spread.summarize([3.0])}
    alone2 = {"group": "b", **spread.summarize([3.5])}
    spread.mark_against_best([near, far, best, alone, alone2], group=lambda r: r["group"])
    assert [r["versus_best"] for r in (best, near, far, alone, alone2)] == \
        [spread.BEST, spread.SAME, spread.WORSE, spread.BEST, spread.UNKNOWN]


# -- without Ray ----------------------------------------------------------------------------------
def test_without_ray_runs_one_after_another_and_reuses_finished_runs(home, no_ray):
    voices = ["DDX7 VIOLN", "DDX7 FLUTE"]
    result = sweep(home, ["mini"], voices=voices, seeds=2, steps=3, settings=FAST, test_audio=False)
    assert result["engine"] == "one run after another in this process"
    names = [r["run"] for r in result["runs"]]
    assert names == ["sweep-mini-ddx7-ddx7-violn-s0-3steps", "sweep-mini-ddx7-ddx7-violn-s1-3steps",
                     "sweep-mini-ddx7-ddx7-flute-s0-3steps", "sweep-mini-ddx7-ddx7-flute-s1-3steps"]
    for r in result["runs"]:   # ordinary fit runs: their record says the seed, the voice and the steps
        record = runs.Run.open(home, r["run"]).require_finished().record
        assert record["config"]["seed"] == r["seed"] and record["steps"] == 3 == r["steps"]
        assert record["fixed_config"]["name"] == r["voice"] and record["config"]["threads"] == 1
        assert r["best_valid_loss"] == record["best_valid_loss"] and r["attempts"] == 1 and not r["retried"]
    rows = {r["voice"]: r for r in result["rows"]}
    flute = [r["best_valid_loss"] for r in result["runs"] if r["voice"] == "DDX7 FLUTE"]
    assert flute[0] != flute[1]     # two seeds, two different runs
    assert rows["DDX7 FLUTE"]["n"] == 2 and rows["DDX7 FLUTE"]["mean"] == pytest.approx(statistics.mean(flute))
    assert rows["DDX7 FLUTE"]["spread"] == pytest.approx(statistics.stdev(flute), abs=1e-6)
    assert sorted(r["versus_best"] for r in rows.values()) in (sorted([spread.BEST, spread.SAME]),
                                                               sorted([spread.BEST, spread.WORSE]))
    assert "| mini | ddx7 | DDX7 FLUTE | " + spread.format_value(rows["DDX7 FLUTE"], ".4f") in result["markdown"]
    assert [Path(f).name for f in result["files"]] == ["sweep.md", "sweep.csv", "sweep.json"]
    # the same command again: every run is found finished and reused, untouched
    before = {p: p.stat().st_mtime_ns for p in runs.runs_dir(home).glob("*/model.safetensors")}
    again = sweep(home, ["mini"], voices=voices, seeds=[0, 1], steps=3, settings=FAST, test_audio=False)
    assert [r["status"] for r in again["runs"]] == ["reused"] * 4 and again["engine"] == "every run reused"
    assert {p: p.stat().st_mtime_ns for p in before} == before and again["rows"] == result["rows"]


def test_ctrl_c_then_the_same_command_goes_on(run_cli, home, dx7tools_exe):
    """SIGINT in the middle of the second run: the first stays finished, the second resumes from its
    checkpoint when the command is run again (no Ray: one run after another). The signal is sent as
    soon as the second run has written its first checkpoint (every step here); 40 steps leave it
    time to land before the run ends."""
    STEPS = 40
    args = ["sweep", "--corpus", "mini", "--seeds", "2", "--steps", str(STEPS), *CLI_FAST, "--json"]
    env = {**os.environ, engine.NO_RAY_ENV: "1"}
    def default_sigint():  # a child inherits an ignored or blocked SIGINT, which an earlier test can leave
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    proc = subprocess.Popen([dx7tools_exe, *args, "--home", str(home)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    second = runs.runs_dir(home) / f"sweep-mini-ddx7-default-s1-{STEPS}steps"
    checkpoint, deadline = second / runs.CHECKPOINT_FILE, time.time() + 90
    while time.time() < deadline and not checkpoint.exists():  # the second run has trained a step
        time.sleep(0.02)
    assert proc.poll() is None, "the sweep ended before the signal: make the run longer"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr
    assert not (home / "sweep").exists()                   # no table from a sweep that did not finish
    r = run_cli(*args, env={engine.NO_RAY_ENV: "1"})
    assert r.returncode == 0, r.stderr
    first, resumed = r.json()["runs"]
    assert first["status"] == "reused" and resumed["status"] == "trained" and resumed["resumed_from_step"] >= 1
    assert resumed["resumed_from_step"] < STEPS and resumed["steps"] == STEPS
    assert [int(m["step"]) for m in metrics(home, resumed["run"])] == list(range(1, STEPS + 1))


@pytest.mark.parametrize("kwargs, message", [
    ({"seeds": [1, 2, 1]}, r"--seeds lists seed\(s\) 1 more than once"),
    ({"address": "ray://nowhere"}, r"bad --address 'ray://nowhere': use auto, HOST:PORT or ray://HOST:PORT"),
    ({"models": ["wavenet"]}, "unknown model 'wavenet'"),
    # settings are checked as fit checks them, before features or training (not as failed runs)
    ({"settings": {**FAST, "crepe": "medium"}}, r"^unknown CREPE model 'medium'; choose full or tiny$"),
    ({"settings": {**FAST, "segment_seconds": 99}}, r"^segment length must be 0.1-30 s$"),
    ({"settings": {**FAST, "f0": "yin"}}, r"^unknown f0 tracker 'yin'"),
    ({"settings": {**FAST, "batch": 4}}, r"^unknown fit setting\(s\): batch$"),
])
def test_bad_input_fails_before_any_work(home, kwargs, message):
    with pytest.raises(DX7Error, match=message) as caught:
        sweep(home, ["mini"], steps=2, **{"settings": FAST, **kwargs})
    assert not isinstance(caught.value, SweepFailed)
    assert not runs.runs_dir(home).exists() and not (home / "sweep").exists()


def test_a_finished_run_is_reused_only_with_the_same_settings(run_cli, home, no_ray):
    """A run name does not say the learning rate or the f0 tracker: a finished run of that name is
    reused when its record says the same settings (an old record without ``f0`` read as CREPE
    ``crepe``), and refused in one line naming the field otherwise, before any work."""
    first = sweep(home, ["mini"], seeds="1,", steps=2, settings=FAST, test_audio=False)
    name = "sweep-mini-ddx7-default-s1-2steps"
    assert [r["run"] for r in first["runs"]] == [name] and first["runs"][0]["status"] == "trained"
    model = runs.runs_dir(home) / name / runs.MODEL_FILE
    before = model.stat().st_mtime_ns
    args = ("sweep", "--corpus", "mini", "--seeds", "1,", "--steps", "2", *CLI_FAST)
    same = run_cli(*args, "--json", env={engine.NO_RAY_ENV: "1"})     # --crepe-hop 320 alone: CREPE tiny
    assert same.returncode == 0, same.stderr
    assert [(r["run"], r["status"]) for r in same.json()["runs"]] == [(name, "reused")]
    assert same.json()["features"] == {"f0": "crepe-tiny", "crepe_hop": 320}
    other = run_cli(*args, "--learning-rate", "0.001", env={engine.NO_RAY_ENV: "1"})
    assert other.returncode == 1 and other.stderr.strip() == (
        f"error: {runs.runs_dir(home) / name}: run '{name}' exists with other settings (learning_rate 0.005 "
        "there, 0.001 here); remove it or use another --home"), other.stderr
    pesto = {k: v for k, v in FAST.items() if k not in ("crepe", "crepe_hop")}
    with pytest.raises(DX7Error, match=r"other settings \(crepe_hop 320 there, None here; "
                                       r"f0 'crepe-tiny' there, 'pesto' here\); remove it") as caught:
        sweep(home, ["mini"], seeds="1,", steps=2, settings={**pesto, "f0": "pesto"}, test_audio=False)
    assert "\n" not in str(caught.value)
    record_file = runs.runs_dir(home) / name / runs.RECORD_FILE
    record = json.loads(record_file.read_text())
    assert record["config"].pop("f0") is None        # as a run recorded before f0 existed
    record_file.write_text(json.dumps(record))
    again = sweep(home, ["mini"], seeds="1,", steps=2, settings={**FAST, "f0": "crepe-tiny"}, test_audio=False)
    assert [r["status"] for r in again["runs"]] == ["reused"] and model.stat().st_mtime_ns == before


def test_an_unreachable_cluster_is_one_line_and_writes_nothing(run_cli, home):
    r = run_cli("sweep", "--corpus", "mini", "--steps", "2", "--address", "127.0.0.1:9")
    assert r.returncode == 1 and r.stderr.strip().startswith("error: cannot reach a Ray cluster at 127.0.0.1:9"), \
        r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not runs.runs_dir(home).exists() and not (home / "sweep").exists()


def test_address_without_ray_says_how_to_install_it(run_cli, home):
    r = run_cli("sweep", "--corpus", "mini", "--steps", "2", "--address", "auto", env={engine.NO_RAY_ENV: "1"})
    assert r.returncode == 1 and r.stderr.strip() == \
        "error: --address needs Ray, which is not installed: pip install 'dx7tools[ray]'"


def test_every_run_failing_is_one_table_of_reasons_and_exit_1(run_cli, home):
    r = run_cli("sweep", "--corpus", "mini", "--model", "ddx7", "hpn", "--seeds", "1", "--steps", "2",
                "--learning-rate", "-1", *CLI_FAST, env={engine.NO_RAY_ENV: "1"})
    assert r.returncode == 1, r.stderr
    assert "runs that failed" in r.stderr and r.stderr.count("Invalid learning rate: -1") == 3
    assert "error: all 2 runs failed (1 reason(s)); first: ValueError: Invalid learning rate: -1" in r.stderr
    assert not (home / "sweep").exists() and not any(runs.runs_dir(home).iterdir())   # no empty run folders


def test_a_corpus_missing_on_a_worker_is_named(home, tmp_path):
    spec = RunSpec("sweep-x", "mini", "hpn", 0, steps=1, settings=FAST)
    with pytest.raises(DX7Error, match=r"corpus 'mini' is missing on worker .* workers need the shared data home"):
        train_spec(spec.payload(tmp_path / "elsewhere"))
    answer = engine.attempt(train_spec, spec.payload(home), str(tmp_path / "no-ledger"), spec.name)
    assert "does not see the data home" in answer["error"]


# -- on Ray ---------------------------------------------------------------------------------------
def _worker_pid(task: str) -> int | None:
    """The process whose title is Ray's for the running task ``task``."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            title = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if title == f"ray::{engine.TASK_PREFIX}{task}":
            return int(cmdline.parent.name)
    return None


def test_a_killed_worker_is_retried_and_its_run_resumes_from_its_checkpoint(local_ray, home):
    """Two runs with the same configuration and seed train side by side on two workers; one worker
    is killed mid-run. Its run comes back on a new worker from its checkpoint and ends on the very
    loss curve of the run that was never interrupted."""
    steps, box = 24, {}

    def run_sweep():
        try:
            box["result"] = sweep(home, ["mini"], voices=["DDX7 VIOLN", None], seeds=1, steps=steps, settings=FAST,
                                  test_audio=False)
        except BaseException as exc:     # re-raised below, in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=run_sweep)
    thread.start()
    victim = "sweep-mini-ddx7-ddx7-violn-s0-24steps"
    deadline = time.time() + 90
    pid = None
    while time.time() < deadline and pid is None:
        log = runs.runs_dir(home) / victim / runs.METRICS_FILE
        if log.exists() and len(log.read_text().splitlines()) > 8:     # 8 steps logged: checkpoint 7 or 8
            pid = _worker_pid(victim)
        time.sleep(0.05)
    assert pid is not None, "the run never got to step 8 on a Ray worker"
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=120)
    assert not thread.is_alive(), "the sweep had not finished 120 s after its worker was killed"
    if "error" in box:
        raise AssertionError(f"the sweep raised after its worker was killed: {box['error']!r}") from box["error"]
    result = box["result"]
    assert result["engine"] == "Ray tasks on this machine" and result["retried"] == [victim]
    killed, control = result["runs"]
    assert killed["attempts"] == 2 and 7 <= killed["resumed_from_step"] < steps and killed["steps"] == steps
    assert control["attempts"] == 1 and not control["retried"] and control["steps"] == steps
    curve = metrics(home, victim)
    assert [int(m["step"]) for m in curve] == list(range(1, steps + 1))
    np.testing.assert_allclose([float(m["train_loss"]) for m in curve],
                               [float(m["train_loss"]) for m in metrics(home, control["run"])], rtol=1e-5)
    row = next(r for r in result["rows"] if r["voice"] == "DDX7 VIOLN")
    assert row["retried"] == [victim] and f"| {victim} |" in result["markdown"]
    assert not (home / "sweep-attempts").exists()
