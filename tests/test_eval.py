"""Evaluation end to end on a tiny corpus: the paper table (HpN, DDX7 6-op, DDX7 2-op, trained a
couple of steps each), eval with the floor and HpN rows, the HTML report, and bad input."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from ddx7.evaluate import embeddings as E
from ddx7 import run as runs
from ddx7.data.corpus import add_corpus
from ddx7.evaluate import evaluate_run
from ddx7.evaluate.paper_table import paper_table, two_operator_stack
from ddx7.rank.choose import paper_config
from ddx7.synth import FMSynth

STEPS = 2
FAST = {"batch_size": 2, "segment_seconds": 0.5}


class BandEnergies(E.Embedder):
    """A cheap 8-d test embedding (log energies of 8 bands per 10 ms): full covariances on tiny sets."""

    name, dim, hop_seconds = "bands-test", 8, 0.01

    def __call__(self, audio):
        frames = np.asarray(audio[: len(audio) // 160 * 160], np.float64).reshape(-1, 160)
        spec = np.abs(np.fft.rfft(frames * np.hanning(160), axis=1)) ** 2
        bands = np.array_split(spec[:, 1:], 8, axis=1)
        return np.log10(np.stack([b.sum(1) for b in bands], 1) + 1e-8)


def phrase(config, f0: float, seconds: float) -> np.ndarray:
    frames = int(seconds * 250)
    env = np.minimum(1, np.minimum(np.arange(frames), frames - np.arange(frames)) / 25.0)
    index = torch.from_numpy(np.stack([env * 1.6, env * 0.6, env * 1.2, env * 0.8, env * 0.3, env * 0.05], -1))
    with torch.no_grad():
        return FMSynth(config)(torch.full((1, frames), f0), index.float()[None])[0].numpy() * 0.3


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A 12-phrase violin-labelled corpus and the paper table on it (2 training steps per model)."""
    home = tmp_path_factory.mktemp("eval-home")
    rec = home / "recordings"
    rec.mkdir()
    config = paper_config("violin")
    silence = np.zeros(4000, np.float32)
    for i in range(3):
        take = [np.concatenate([phrase(config, 196.0 * 2 ** ((4 * i + k) / 12), 0.9), silence]) for k in range(4)]
        soundfile.write(rec / f"take{i}.wav", np.concatenate(take), 16000)
    add_corpus(home, "mini", audio_dir=rec, instrument="violin")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = paper_table(home, ["mini"], steps=STEPS, diagonal=True, fit_overrides=FAST)
    finally:
        torch.set_num_threads(threads)
    return home, result


RUN = "paper-mini-ddx7-6op-2steps"


@pytest.fixture
def own_home(table, tmp_path) -> Path:
    """A private copy of the table's data home (corpus, finished runs; no checkpoints, no eval
    records): what a test writes there, and what it needs to find there, is its own."""
    src, _ = table
    home = tmp_path / "home"
    shutil.copytree(src, home, ignore=shutil.ignore_patterns("checkpoint.safetensors", "eval-*.json",
                                                              "recordings", "paper-table"))
    return home


def frechet_by_formula(x: np.ndarray, y: np.ndarray) -> float:
    """FAD from its definition with numpy alone: |mx - my|^2 + tr Sx + tr Sy - 2 tr (Sx^1/2 Sy Sx^1/2)^1/2,
    both square roots from symmetric eigendecompositions (the code under test uses scipy's sqrtm)."""
    mx, my = x.mean(0), y.mean(0)
    sx, sy = np.cov(x, rowvar=False, ddof=1), np.cov(y, rowvar=False, ddof=1)
    w, v = np.linalg.eigh(sx)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root @ sy @ root)
    return float(((mx - my) ** 2).sum() + np.trace(sx) + np.trace(sy) - 2 * np.sqrt(np.clip(inner, 0, None)).sum())


# one torch thread per test (the suite shares the machine's cores); fixture in conftest.py
pytestmark = pytest.mark.usefixtures("one_thread")


def test_paper_table(table):
    home, result = table
    rows = {r["row"]: r for r in result["rows"]}
    assert list(rows) == ["original", "hpn", "ddx7-6op", "ddx7-2op"]
    assert rows["hpn"]["parameters"] == 4_298_408 and rows["ddx7-6op"]["parameters"] == 446_856
    assert all(r["steps"] == STEPS for k, r in rows.items() if k != "original")
    assert all(r["embedding"] == "crepe-tiny" and r["fad"] >= 0 for r in rows.values())
    assert rows["ddx7-6op"]["paper_fad_urmp_vggish"] == 1.618  # labelled by the corpus's instrument
    assert result["notes"] == ["mini: ddx7-top skipped: no ranking for 'mini' (run the selector first)"]
    md = result["markdown"]
    assert "crepe-tiny" in md and "a different corpus (URMP recordings) and embedding (VGGish)" in md
    assert "4,298,408" in md and "| DDX7, 2-operator stack | 446,856 |" in md and "ddx7-top skipped" in md
    files = [Path(f) for f in result["files"]]
    assert [f.name for f in files] == ["paper-table.md", "paper-table.csv", "paper-table.json"]
    parsed = list(csv.DictReader(io.StringIO(files[1].read_text())))
    assert [r["row"] for r in parsed] == list(rows) and float(parsed[0]["fad"]) == rows["original"]["fad"]
    info = json.loads((runs.runs_dir(home) / "paper-mini-ddx7-2op-2steps" / "run.json").read_text())
    assert info["fixed_config"]["algorithm"] == 1 and info["fixed_config"]["feedback"] == 0


def test_paper_table_cli_reuses_runs(table, own_home, dx7tools_exe):
    _, result = table
    home = own_home
    before = {p.name: p.stat().st_mtime for p in (runs.runs_dir(home)).glob("*/model.safetensors")}
    fast = ["--batch-size", str(FAST["batch_size"]), "--segment-seconds", str(FAST["segment_seconds"])]
    proc = subprocess.run([dx7tools_exe, "paper-table", "--corpus", "mini", "--steps", str(STEPS), "--diagonal",
                           *fast, "--home", str(home), "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert all(r["reused"] for r in out["rows"] if r["row"] != "original")
    assert {p.name: p.stat().st_mtime for p in runs.runs_dir(home).glob("*/model.safetensors")} == before
    # the same embedding, the same FADs (HpN's noise is seeded; float32 sums over another thread count
    # differ in the sixth digit)
    assert [r["fad"] for r in out["rows"]] == pytest.approx([r["fad"] for r in result["rows"]], rel=1e-5)


def test_two_operator_stack_mutes_op3_to_op6():
    synth = FMSynth(two_operator_stack())
    f0 = torch.full((1, 100), 220.0)
    index = torch.rand(1, 100, 6) * 2
    quiet = index.clone()
    quiet[..., 2:] = 0
    with torch.no_grad():
        np.testing.assert_array_equal(synth(f0, index).numpy(), synth(f0, quiet).numpy())
        # no modulation: a steady OP1 alone is a sine at f0
        plain = index.clone()
        plain[..., 0], plain[..., 1] = 1.0, 0.0
        y = synth(f0, plain)[0, 1600:].numpy()
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    peak_hz = spectrum.argmax() * 16000 / len(y)
    assert abs(peak_hz - 220.0) < 5 and spectrum[2 * int(round(220 * len(y) / 16000))] < 1e-3 * spectrum.max()


def test_eval_full_covariance_matches_an_independent_computation(own_home):
    from ddx7.fit import train

    home, emb = own_home, BandEnergies()
    result = evaluate_run(home, RUN, embedder=emb, write=False)
    assert result["embedding"] == "bands-test" and not result["diagonal"]
    assert [r["row"] for r in result["reference"]] == ["original", "hpn"]
    assert result["reference"][1]["run"] == "paper-mini-hpn-2steps"
    # recompute by hand: the corpus's segment files read from its manifest, the test split
    # resynthesised by the run's best model from the segments' features, FAD from its formula
    corpus_dir = home / "corpora" / "mini"
    segments = json.loads((corpus_dir / "manifest.json").read_text())["segments"]

    def embed_file(segment: dict) -> np.ndarray:
        audio, sr = soundfile.read(corpus_dir / segment["file"], dtype="float32")
        assert sr == 16000
        return emb(audio)

    everything = np.concatenate([embed_file(s) for s in segments])
    originals = np.concatenate([embed_file(s) for s in segments if s["split"] == "test"])
    run = runs.Run.at(home / "runs" / RUN)
    test_split = train.load_examples(home, "mini", run.fit_config)["test"]
    assert sorted(e.name for e in test_split) == sorted(s["file"] for s in segments if s["split"] == "test")
    with torch.no_grad():
        ours = np.concatenate([emb(run.model()(torch.from_numpy(e.f0_hz)[None],
                                               torch.from_numpy(e.loudness_db)[None])[0].numpy())
                               for e in test_split])
    assert result["n_frames"] == len(ours) and result["corpus_frames"] == len(everything)
    assert result["fad"] == pytest.approx(frechet_by_formula(ours, everything), rel=1e-5)
    assert result["reference"][0]["n_frames"] == len(originals)
    assert result["reference"][0]["fad"] == pytest.approx(frechet_by_formula(originals, everything), rel=1e-5)
    # two training steps are far from the originals: the floor is lower
    assert result["reference"][0]["fad"] < result["fad"]


def test_eval_cli(own_home, run_cli):
    src = own_home
    record = src / "runs" / RUN / "eval-crepe-tiny-diagonal.json"
    assert not record.exists()
    r = run_cli("eval", RUN, "--diagonal", "--json", use_home=False, env={"DX7TOOLS_HOME": str(src)})
    assert r.returncode == 0, r.stderr
    out = r.json()
    assert {"fad", "embedding", "n_frames", "reference"} <= set(out)
    assert out["embedding"] == "crepe-tiny" and out["diagonal"] and out["n_frames"] > 10
    assert [x["row"] for x in out["reference"]] == ["original", "hpn"]
    assert json.loads(record.read_text()) == out
    # a bad input through the console script: one line, exit 1
    r = run_cli("eval", RUN, "--embedding", "vggish", use_home=False,
                env={"DX7TOOLS_HOME": str(src), "DX7TOOLS_VGGISH_WEIGHTS": ""})
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "error: vggish needs its weights: pass --weights FILE or set DX7TOOLS_VGGISH_WEIGHTS (none ship with "
        "dx7tools and nothing is downloaded)"]


def test_eval_bad_input(own_home, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from ddx7.evaluate.report import write_report
    from dx7tools.errors import DX7Error

    home, run = own_home, RUN
    with pytest.raises(DX7Error, match=r"resynthesised test split of 'mini' \(paper-mini-ddx7-6op-2steps\): \d+ "
                                       r"embedding frames are too few for a stable 272x272 covariance "
                                       r"\(need at least 544\); use more audio, or --diagonal"):
        evaluate_run(home, run, write=False)
    with pytest.raises(DX7Error, match="no run named 'nope'"):
        evaluate_run(home, "nope")
    unfinished = runs.runs_dir(home) / "unfinished"
    shutil.copytree(runs.runs_dir(home) / run, unfinished)
    info = json.loads((unfinished / "run.json").read_text())
    (unfinished / "run.json").write_text(json.dumps({**info, "status": "training"}))
    with pytest.raises(DX7Error, match="run 'unfinished' never finished training \\(status 'training'\\); finish it "
                                       "with `dx7tools fit --run unfinished --resume`"):
        evaluate_run(home, "unfinished")
    with pytest.raises(DX7Error, match="never finished"):
        write_report(home, "unfinished", tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()
    shutil.rmtree(unfinished)
    monkeypatch.delenv(E.VGGISH_WEIGHTS_ENV, raising=False)
    with pytest.raises(DX7Error, match="VGGish weights file not found"):
        evaluate_run(home, run, embedding="vggish", weights=tmp_path / "missing.safetensors")
    save_file({"features.0.weight": torch.zeros(64, 1, 5, 5)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(DX7Error, match="not VGGish weights: missing"):
        evaluate_run(home, run, embedding="vggish", weights=tmp_path / "bad.safetensors")
    with pytest.raises(DX7Error, match="unknown embedding 'mfcc'"):
        evaluate_run(home, run, embedding="mfcc")
    with pytest.raises(DX7Error, match="no corpus named 'nothere'"):
        paper_table(home, ["nothere"], steps=1)
    with pytest.raises(DX7Error, match="output folder does not exist"):
        write_report(home, run, tmp_path / "no" / "r.html")


def decode_media(page: str) -> tuple[list[bytes], list[bytes]]:
    """Every <img> and <audio> source of the page, decoded; fails on anything not a data URI."""
    images = re.findall(r"<img [^>]*src='([^']*)'", page)
    sounds = re.findall(r"<audio [^>]*src='([^']*)'", page)
    out = []
    for sources, kind in ((images, "image/png"), (sounds, "audio/wav")):
        prefix = f"data:{kind};base64,"
        assert all(s.startswith(prefix) for s in sources), "an image or sound is not embedded"
        out.append([base64.b64decode(s[len(prefix):], validate=True) for s in sources])
    return out[0], out[1]


def test_report_is_self_contained_and_complete(own_home, run_cli, tmp_path):
    from PIL import Image

    src = own_home
    evaluated = evaluate_run(src, RUN, embedder=BandEnergies())  # the record the report shows
    env = {"DX7TOOLS_HOME": str(src)}
    page_path = tmp_path / "report.html"
    r = run_cli("report", RUN, "-o", str(page_path), "--excerpts", "2", "--json", use_home=False, env=env)
    assert r.returncode == 0, r.stderr
    page = page_path.read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page
    images, sounds = decode_media(page)
    segments = json.loads((src / "corpora" / "mini" / "manifest.json").read_text())["segments"]
    n_test = min(2, sum(s["split"] == "test" for s in segments))
    assert n_test >= 1
    # loss curves, one figure per excerpt, and the live-controls spectrograms (before/after, two players)
    assert len(images) == 1 + n_test + 1 and len(sounds) == 2 * n_test + 2
    assert "<h2>Live controls</h2>" in page and "--brightness -9dB" in page
    for png in images:
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(png)) as im:
            im.verify()
    for wav in sounds:
        audio, sr = soundfile.read(io.BytesIO(wav))
        assert sr == 16000 and len(audio) > 1000 and soundfile.info(io.BytesIO(wav)).subtype == "PCM_16"
    # algorithm diagram and ratios, and the FAD rows of the eval record in the run folder
    assert "algorithm 2: edges 2-&gt;1 4-&gt;3 5-&gt;4 6-&gt;5" in page and "ratio 14" in page
    floor = evaluated["reference"][0]
    assert "<h3>Embedding: bands-test</h3>" in page
    assert f"<td class='num'>{evaluated['fad']:.4f}</td><td class='num'>{evaluated['n_frames']}</td>" in page
    assert (f"<td>original test split vs corpus (floor)</td><td class='num'>{floor['fad']:.4f}</td>"
            f"<td class='num'>{floor['n_frames']}</td>") in page



def test_report_hpn_and_two_operators_in_python(own_home, tmp_path):
    from ddx7.evaluate.report import write_report

    home = own_home
    path = write_report(home, "paper-mini-hpn-2steps", tmp_path / "hpn.html", excerpts=1)
    page = path.read_text()
    images, sounds = decode_media(page)
    assert len(images) == 2 and len(sounds) == 2 and "HpN has no operators" in page
    # the 2-operator stack says which operators are muted
    page = write_report(home, "paper-mini-ddx7-2op-2steps", tmp_path / "two.html", excerpts=1).read_text()
    assert page.count("(above Nyquist: muted)") == 4 and "algorithm 1: edges 2-&gt;1" in page


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_browser() is None, reason="no headless Chromium on this machine; "
                    "test_report_is_self_contained_and_complete decodes every image and sound instead")
def test_report_renders_in_headless_chromium(own_home, tmp_path):
    from PIL import Image

    from ddx7.evaluate.report import write_report

    home = own_home
    page = write_report(home, "paper-mini-ddx7-6op-2steps", tmp_path / "r.html", excerpts=1)
    # the same page with every image source emptied: what a page of broken images looks like
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r"(<img [^>]*src=')[^']*'", r"\1'", page.read_text()))

    def dark_fraction(html_file: Path) -> float:
        shot = tmp_path / f"{html_file.stem}.png"
        subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                        "--window-size=1000,3000", html_file.as_uri()], capture_output=True, timeout=120, check=True)
        with Image.open(shot) as im:
            return float((np.asarray(im.convert("L")) < 100).mean())

    # the figures (dark spectrograms) are drawn: broken images leave the page almost white
    assert dark_fraction(page) > dark_fraction(broken) + 0.02


def test_paper_table_plans_its_rows_and_says_which_it_skips(tmp_path):
    """Which rows a corpus gets; the selector's row against real saved rankings is tested in
    test_select.py (a first-stage ranking is never trained on)."""
    from ddx7.evaluate.paper_table import plan_runs

    plans, notes = plan_runs(tmp_path, "mini", "violin", 2.0, None)
    assert [p.name for p in plans] == ["paper-mini-hpn-2m", "paper-mini-ddx7-6op-2m", "paper-mini-ddx7-2op-2m"]
    assert plans[1].config == paper_config("violin")
    assert notes == ["mini: ddx7-top skipped: no ranking for 'mini' (run the selector first)"]
    plans, notes = plan_runs(tmp_path, "mini", None, None, 10)
    assert [p.row for p in plans] == ["hpn", "ddx7-2op"] and plans[0].name == "paper-mini-hpn-10steps"
    assert notes == ["mini: ddx7-6op skipped: no paper configuration for instrument None",
                     "mini: ddx7-top skipped: no ranking for 'mini' (run the selector first)"]
