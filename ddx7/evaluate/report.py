"""One self-contained HTML page about a trained run: what it learned, seen and heard.

    path = write_report(home, "violin-ddx7", "report.html")

Sections (every image a PNG made with matplotlib and every sound a 16-bit WAV, both embedded as
``data:`` URIs, so the file can be mailed or archived alone; no scripts, no external links):

* the run: model, corpus, parameters, steps, training time, validation loss;
* loss curves (training loss per step, smoothed, and validation loss) from ``metrics.csv``;
* DDX7: the fixed configuration -- the algorithm's diagram (``dx7tools.algorithms``), each
  operator's ratio or fixed frequency, the feedback level;
* FAD rows saved by ``dx7tools eval`` (``eval-*.json`` in the run folder), one table per
  embedding, never mixed;
* for a few test excerpts: audio players (original, resynthesis), log-magnitude spectrograms
  of both, f0 and loudness, and (DDX7) the six operators' output levels over the phrase as DX7
  output levels 0-99 (index ``I`` is amplitude ``I / 2``, mapped by
  :func:`dx7tools.levels.amplitude_to_output_level`);
* DDX7: live controls -- the first excerpt's spectrogram as trained and with every modulator
  9 dB down (``resynth --brightness -9dB``, :mod:`ddx7.live`).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path

import numpy as np
import torch

from dx7tools.errors import DX7Error
from dx7tools.audio import FRAME_RATE, HOP, SAMPLE_RATE, log_spectrogram
from dx7tools.files import atomic_write_bytes

OP_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def _png(fig) -> str:
    """A matplotlib figure -> ``data:image/png;base64,...``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _wav(audio: np.ndarray) -> str:
    """Mono 16 kHz audio -> ``data:audio/wav;base64,...`` (16-bit PCM, peak-limited to full scale)."""
    import soundfile

    x = np.asarray(audio, dtype=np.float64)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 1.0:
        x = x / peak
    buf = io.BytesIO()
    soundfile.write(buf, x, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(width: float = 8.0, height: float = 3.0, rows: int = 1, cols: int = 1, **kw):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    axes = fig.subplots(rows, cols, squeeze=False, **kw)
    return fig, axes


def read_metrics(run_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(steps, train_loss, valid_steps, valid_loss)`` from ``metrics.csv`` (empty if none)."""
    path = Path(run_dir) / "metrics.csv"
    steps, train, vsteps, valid = [], [], [], []
    if path.exists():
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                try:
                    step = int(row["step"])
                    steps.append(step)
                    train.append(float(row["train_loss"]))
                    if row.get("valid_loss"):
                        vsteps.append(step)
                        valid.append(float(row["valid_loss"]))
                except (KeyError, ValueError):
                    continue
    return np.array(steps), np.array(train), np.array(vsteps), np.array(valid)


def loss_figure(run_dir: Path) -> str | None:
    steps, train, vsteps, valid = read_metrics(run_dir)
    if not len(steps):
        return None
    fig, ax = _figure(8, 3)
    ax = ax[0, 0]
    ax.plot(steps, train, color="#bbbbbb", lw=0.8, label="train (per step)")
    if len(train) >= 10:
        k = max(5, len(train) // 50)
        smooth = np.convolve(train, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, color="#1f77b4", lw=1.5, label=f"train ({k}-step mean)")
    if len(valid):
        ax.plot(vsteps, valid, "o-", color="#d62728", ms=3, lw=1.2, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("multi-resolution spectral loss")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return _png(fig)


SPECTROGRAM_HOP = 128
"""Samples between the report's spectrogram frames (8 ms): finer than the fidelity figures' 256."""


def excerpt_figure(original: np.ndarray, resynth: np.ndarray, f0_hz: np.ndarray, loudness_db: np.ndarray,
                   levels: np.ndarray | None, title: str) -> str:
    """Spectrograms of original and resynthesis, f0 and loudness, and operator output levels."""
    rows = 4 if levels is not None else 3
    fig, axes = _figure(9, 2.1 * rows, rows, 1, sharex=True)
    seconds = len(original) / SAMPLE_RATE
    ref = max(float(log_spectrogram(a, hop=SPECTROGRAM_HOP).max()) for a in (original, resynth))
    for ax, audio, name in ((axes[0, 0], original, "original"), (axes[1, 0], resynth, "resynthesis")):
        spec = log_spectrogram(audio, hop=SPECTROGRAM_HOP).T  # (bins, frames) for imshow
        ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=ref - 80, vmax=ref,
                  extent=(0, len(audio) / SAMPLE_RATE, 0, SAMPLE_RATE / 2000))
        ax.set_ylabel("kHz")
        ax.set_title(f"{name}", fontsize=9, loc="left")
    t = np.arange(len(f0_hz)) / FRAME_RATE
    ax = axes[2, 0]
    voiced = np.where(f0_hz > 0, f0_hz, np.nan)
    ax.plot(t, voiced, color="#1f77b4", lw=1.2)
    ax.set_ylabel("f0 (Hz)", color="#1f77b4")
    ax.set_title("f0 (CREPE; gaps unvoiced) and A-weighted loudness", fontsize=9, loc="left")
    ax2 = ax.twinx()
    ax2.plot(t, loudness_db, color="#ff7f0e", lw=1.0)
    ax2.set_ylabel("loudness (dB)", color="#ff7f0e")
    if levels is not None:
        ax = axes[3, 0]
        for k in range(levels.shape[1]):
            ax.plot(t[: len(levels)], levels[:, k], color=OP_COLOURS[k], lw=1.1, label=f"OP{k + 1}")
        ax.set_ylim(0, 100)
        ax.set_ylabel("output level")
        ax.set_title("operator output levels (DX7 0-99) predicted by the network", fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes[-1, 0].set_xlabel("seconds")
    axes[-1, 0].set_xlim(0, seconds)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


LIVE_EXAMPLE = (("brightness_db", None, -9.0),)
"""The live-controls section's intervention (``--brightness -9dB``: every modulator 9 dB down)."""


def live_controls_figure(before: np.ndarray, after: np.ndarray, title: str, change: str) -> str:
    """Spectrograms of one excerpt resynthesised as trained and with a live control changed."""
    fig, axes = _figure(9, 4.2, 2, 1, sharex=True)
    ref = max(float(log_spectrogram(a, hop=SPECTROGRAM_HOP).max()) for a in (before, after))
    for ax, audio, name in ((axes[0, 0], before, "as trained"), (axes[1, 0], after, change)):
        ax.imshow(log_spectrogram(audio, hop=SPECTROGRAM_HOP).T, origin="lower", aspect="auto", cmap="magma",
                  vmin=ref - 80, vmax=ref, extent=(0, len(audio) / SAMPLE_RATE, 0, SAMPLE_RATE / 2000))
        ax.set_ylabel("kHz")
        ax.set_title(name, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("seconds")
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def _live_html(model, f0: torch.Tensor, loud: torch.Tensor, name: str) -> str:
    """DDX7: one excerpt before and after :data:`LIVE_EXAMPLE` (see docs/live.md)."""
    from ddx7.live import Controls, Timeline, render_frames

    after_controls = Controls()
    for change in LIVE_EXAMPLE:
        after_controls = after_controls.apply(*change)
    before = render_frames(model, f0, loud, Timeline())[0].numpy()
    after = render_frames(model, f0, loud, Timeline(after_controls))[0].numpy()
    change = "brightness -9 dB (every modulator's level 9 dB down)"
    image = live_controls_figure(before, after, f"live controls on {name}", change)
    return (f"<p>What <code>dx7tools resynth RUN IN.wav -o OUT.wav --brightness -9dB</code> does to {html.escape(name)}"
            f": as trained <audio controls src='{_wav(before)}'></audio> {html.escape(change)} "
            f"<audio controls src='{_wav(after)}'></audio></p><img alt='live controls' src='{image}'>")


def operator_levels(model, f0: torch.Tensor, loudness: torch.Tensor) -> np.ndarray:
    """DDX7: (T, 6) DX7 output levels of the predicted indexes (index I = amplitude I / 2)."""
    from dx7tools.levels import amplitude_to_output_level

    with torch.no_grad():
        index = model.controls(f0, loudness)[0].numpy()
    return np.asarray(amplitude_to_output_level(np.clip(index / 2.0, 0.0, None)))


def _configuration_html(fixed: dict | None) -> str:
    if not fixed:
        return "<p>HpN has no operators: it predicts 100 harmonic amplitudes and 65 noise bands per frame.</p>"
    from dx7tools.algorithms import get_algorithm
    from dx7tools.fixed_config import FixedConfig

    config = FixedConfig.from_dict(fixed)
    rows = []
    for i, op in enumerate(fixed["operators"]):
        freq = f"{op['fixed_hz']:g} Hz fixed" if op["mode"] == "fixed" else f"ratio {op['ratio']:g}"
        muted = " (above Nyquist: muted)" if op["mode"] == "fixed" and op["fixed_hz"] >= SAMPLE_RATE / 2 else ""
        role = "carrier" if (i + 1) in config.algorithm_spec.carriers else "modulator"
        rows.append(f"<tr><td>OP{op['op']}</td><td>{role}</td><td>{html.escape(freq + muted)}</td>"
                    f"<td>{op['coarse']}</td><td>{op['fine']}</td><td>{op['detune'] - 7:+d}</td></tr>")
    return (f"<p>From voice <b>{html.escape(config.name.strip() or '(unnamed)')}</b>: "
            f"{html.escape(config.describe())}.</p>"
            f"<pre class='diagram'>{html.escape(get_algorithm(config.algorithm).diagram())}</pre>"
            "<table><tr><th>operator</th><th>role</th><th>frequency</th><th>coarse</th><th>fine</th>"
            "<th>detune</th></tr>" + "".join(rows) + "</table>"
            f"<p>Feedback {config.feedback}.</p>")


def _fad_html(run_dir: Path) -> str:
    blocks = []
    for path in sorted(Path(run_dir).glob("eval-*.json")):
        try:
            r = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        rows = [(f"{r['run']} ({r['model']})", r["fad"], r["n_frames"])]
        for ref in r.get("reference", []):
            label = "original test split vs corpus (floor)" if ref["row"] == "original" else f"HpN ({ref.get('run')})"
            rows.append((label, ref["fad"], ref["n_frames"]))
        body = "".join(f"<tr><td>{html.escape(a)}</td><td class='num'>{b:.4f}</td><td class='num'>{c}</td></tr>"
                       for a, b, c in rows)
        blocks.append(f"<h3>Embedding: {html.escape(r.get('embedding_description', r['embedding']))}"
                      f"{' (diagonal covariances)' if r.get('diagonal') else ''}</h3>"
                      f"<table><tr><th>row</th><th>FAD</th><th>frames</th></tr>{body}</table>"
                      f"<p class='note'>Resynthesised test split vs the complete corpus {html.escape(r['corpus'])} "
                      f"({r['corpus_frames']} frames). Lower is better.</p>")
    if not blocks:
        return "<p>No FAD yet: run <code>dx7tools eval RUN</code>, then make the report again.</p>"
    return "".join(blocks)


def _e2e_html(run_dir: Path) -> str:
    """The ``export --check`` results kept in the run folder: rows and players."""
    from dx7tools.audio import read_audio

    from ddx7.evaluate.e2e import AUDIO_FILES, ROW_LABELS

    blocks = []
    for path in sorted((Path(run_dir) / "e2e").glob("*.json")):
        try:
            r = json.loads(path.read_text())
            rows = r["rows"]
        except (OSError, json.JSONDecodeError, KeyError):
            continue
        body = "".join(f"<tr><td>{html.escape(ROW_LABELS.get(k, k))}</td><td class='num'>{v['spectral_db']:.2f}</td>"
                       f"<td class='num'>{v['loudness_db']:.2f}</td></tr>" for k, v in rows.items())
        players = []
        for label, suffix in (("original", "original"), ("model", AUDIO_FILES["model"]),
                              ("DX7 (mk1 export)", AUDIO_FILES["mk1"]), ("starting voice", AUDIO_FILES["start voice"])):
            wav = path.with_name(f"{path.stem}-{suffix}.wav")
            if wav.exists():
                players.append(f"{html.escape(label)} <audio controls src='{_wav(read_audio(wav)[0])}'></audio>")
        blocks.append(f"<h3>{html.escape(Path(r.get('recording', path.stem)).name)} ({r.get('notes', '?')} notes, "
                      f"{r.get('seconds', 0):.1f} s)</h3><p>{' '.join(players)}</p>"
                      "<table><tr><th>row</th><th>spectral distance (dB)</th><th>loudness envelope error (dB)</th>"
                      f"</tr>{body}</table>")
    if not blocks:
        return ("<p>Not measured yet: <code>dx7tools export RUN --syx V.syx --mid P.mid --from TAKE.wav --check</code>, "
                "then make the report again.</p>")
    return ("".join(blocks) + "<p class='note'>The recording, exported as a voice and a .mid and played by the "
            "project's DX7 engine, against the recording (gains matched; lower is better).</p>")


CSS = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;display:block;margin:.5em 0}
pre.diagram{background:#f6f6f6;padding:.6em;display:inline-block}.note{color:#666;font-size:.9em}
audio{vertical-align:middle;margin:0 1em .5em 0}"""


def build_report(home, run, *, excerpts: int = 3, max_seconds: float = 8.0, progress=None) -> str:
    """The HTML of the report of ``run`` (name or folder); see the module notes.

    Args:
        excerpts: test excerpts shown (the first ones of the test split).
        max_seconds: each excerpt is cut to this length.
        progress: ``progress(stage, done, total)``.

    Raises:
        DX7Error: unknown or unfinished run, missing corpus.
    """
    from ddx7.data.examples import load_examples
    from ddx7.run import Run

    run = Run.open(home, run).require_finished()
    run_dir, info, cfg = run.path, run.record, run.fit_config
    model = run.model()
    data = load_examples(home, cfg.corpus, cfg, progress=(lambda d, t: progress("features", d, t))
                         if progress else None)
    chosen = data["test"][:excerpts] or data["valid"][:excerpts]
    split = "test" if data["test"] else "validation"
    parts, live = [], ""
    torch.manual_seed(0)
    for i, e in enumerate(chosen):
        n = min(e.frames, int(max_seconds * FRAME_RATE))
        f0 = torch.from_numpy(e.f0_hz[:n])[None]
        loud = torch.from_numpy(e.loudness_db[:n])[None]
        with torch.no_grad():
            resynth = model(f0, loud)[0].numpy()
        original = e.audio[: n * HOP]
        levels = operator_levels(model, f0, loud) if info["model"] == "ddx7" else None
        title = f"{split} excerpt {i + 1}: {Path(e.name).name} ({n / FRAME_RATE:.1f} s)"
        image = excerpt_figure(original, resynth, e.f0_hz[:n], e.loudness_db[:n], levels, title)
        parts.append(f"<h3>{html.escape(title)}</h3>"
                     f"<p>original <audio controls src='{_wav(original)}'></audio> "
                     f"resynthesis <audio controls src='{_wav(resynth)}'></audio></p>"
                     f"<img alt='{html.escape(title)}' src='{image}'>")
        if i == 0 and info["model"] == "ddx7":
            live = _live_html(model, f0, loud, Path(e.name).name)
        if progress:
            progress("excerpts", i + 1, len(chosen))
    loss = loss_figure(run_dir)
    name = html.escape(run_dir.name)
    minutes = f"{info['elapsed_s'] / 60:.1f} min" if info.get("elapsed_s") is not None else "?"
    summary = (f"<table><tr><th>model</th><td>{'DDX7 (TCN + FM synth)' if info['model'] == 'ddx7' else 'HpN (DDSP)'}"
               f"</td></tr><tr><th>corpus</th><td>{html.escape(cfg.corpus)}</td></tr>"
               f"<tr><th>parameters</th><td>{info.get('parameters', 0):,}</td></tr>"
               f"<tr><th>training</th><td>{info.get('steps')} steps, {minutes}, batch {cfg.batch_size} x "
               f"{cfg.segment_seconds:g} s, learning rate {cfg.learning_rate:g}, f0 {html.escape(cfg.tracker)}"
               f"</td></tr><tr><th>best validation loss</th>"
               f"<td>{info.get('best_valid_loss') or float('nan'):.4f}</td></tr></table>")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>dx7tools report: {name}</title>"
            f"<style>{CSS}</style></head><body><h1>Run {name}</h1>{summary}"
            "<h2>Loss</h2>" + (f"<img alt='loss curves' src='{loss}'>" if loss else "<p>No metrics.csv.</p>")
            + "<h2>Fixed configuration</h2>" + _configuration_html(info.get("fixed_config"))
            + "<h2>FAD</h2>" + _fad_html(run_dir)
            + "<h2>A DX7 playing the export</h2>" + _e2e_html(run_dir)
            + f"<h2>Excerpts ({split} split)</h2>" + ("".join(parts) or "<p>No excerpts.</p>")
            + ("<h2>Live controls</h2>" + live if live else "")
            + "<p class='note'>Made by dx7tools report.</p></body></html>")


def write_report(home, run, output, **kwargs) -> Path:
    """Build the report (see :func:`build_report`) and write it atomically to ``output``."""
    output = Path(output)
    if not output.parent.resolve().is_dir():
        raise DX7Error("output folder does not exist", str(output.parent))
    text = build_report(home, run, **kwargs)
    atomic_write_bytes(output, text.encode("utf-8"))
    return output
