"""Training: the data a run reads, the loop, and checkpoints that survive kill -9.

The run's folder, record (``run.json``) and model loading belong to :mod:`ddx7.run`; this module
writes the checkpoints, metrics and test resynthesis into it. Every file is written atomically
(temporary file, fsync, rename). Randomness is a pure function of ``(seed, step)`` (batch choice
and dropout), so a resumed run repeats exactly the steps it lost and its loss curve is the one an
uninterrupted run would have drawn.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import save as st_save

from dx7tools.audio import HOP, SAMPLE_RATE
from dx7tools.errors import DX7Error
from dx7tools.fixed_config import FixedConfig

from dx7tools.files import atomic_write_bytes

from ddx7 import run as runs
from ddx7.data.examples import Example, load_examples
from ddx7.run import FitConfig, read_weights

from ddx7.fit.loss import multiscale_spectral_loss
from ddx7.fit.models import build_model, count_parameters

MAX_NONFINITE_STEPS = 20
"""Training stops (DX7Error) after this many steps in a row with a non-finite loss or gradient."""
SATURATION_WEIGHT = 0.1
"""Weight of :func:`ddx7.fit.models.saturation_penalty` in the training objective (the logged losses
are the spectral loss alone)."""



# -- batches --------------------------------------------------------------------------------------
def make_batch(examples: list[Example], frames: int, batch_size: int, rng: np.random.Generator):
    """Random crops of ``frames`` frames (segments shorter than that are zero-padded)."""
    weights = np.array([e.frames for e in examples], dtype=np.float64)
    picks = rng.choice(len(examples), size=batch_size, p=weights / weights.sum())
    f0 = np.zeros((batch_size, frames), np.float32)
    loud = np.full((batch_size, frames), -100.0, np.float32)
    audio = np.zeros((batch_size, frames * HOP), np.float32)
    for i, k in enumerate(picks):
        e = examples[k]
        n = min(frames, e.frames)
        start = int(rng.integers(0, e.frames - n + 1))
        f0[i, :n] = e.f0_hz[start:start + n]
        loud[i, :n] = e.loudness_db[start:start + n]
        audio[i, : n * HOP] = e.audio[start * HOP:(start + n) * HOP]
    return torch.from_numpy(f0), torch.from_numpy(loud), torch.from_numpy(audio)


# -- checkpoints --------------------------------------------------------------------------------
def _save(path: Path, tensors: dict, meta: dict) -> None:
    data = st_save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata={"meta": json.dumps(meta)})
    atomic_write_bytes(path, data)


def save_checkpoint(path: Path, model, optimizer, meta: dict) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    state = optimizer.state_dict()
    for idx, st in state["state"].items():
        for key, value in st.items():
            tensors[f"optim.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    _save(path, tensors, {**meta, "param_groups": state["param_groups"]})


def load_checkpoint(path: Path, model, optimizer) -> dict:
    tensors, meta = read_weights(path)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta


# -- the loop -----------------------------------------------------------------------------------
@dataclass
class FitResult:
    run_dir: Path
    steps: int
    best_valid: float
    parameters: int
    elapsed_s: float
    test_files: list = field(default_factory=list)


def _metrics_csv(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, ["step", "train_loss", "valid_loss", "lr", "elapsed_s"])
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def _read_metrics(path: Path, up_to: int) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return [r for r in csv.DictReader(fh) if r.get("step", "").isdigit() and int(r["step"]) <= up_to]


def evaluate(model, examples: list[Example], max_frames: int = 2500) -> float:
    """Mean spectral loss over whole segments (each cut to ``max_frames``)."""
    model.eval()
    losses = []
    torch.manual_seed(0)  # HpN's noise: the same validation every time (training re-seeds per step)
    with torch.no_grad():
        for e in examples:
            n = min(e.frames, max_frames)
            f0 = torch.from_numpy(e.f0_hz[:n])[None]
            loud = torch.from_numpy(e.loudness_db[:n])[None]
            target = torch.from_numpy(e.audio[: n * HOP])[None]
            losses.append(float(multiscale_spectral_loss(model(f0, loud), target)))
    model.train()
    return float(np.mean(losses)) if losses else float("nan")


@dataclass
class Tally:
    """Where a run's training stands: what a checkpoint saves and the loop updates."""

    step: int = 0
    best: float = math.inf
    skipped: int = 0                  # steps skipped for a non-finite loss or gradient
    bad_in_row: int = 0
    rows: list = field(default_factory=list)   # metrics.csv rows so far
    before: float = 0.0               # seconds trained before this session (a resumed run's)
    started: float | None = None      # perf_counter() at elapsed 0, set by start_clock

    def start_clock(self) -> None:
        """Count training time from now on, after what was trained before."""
        self.started = time.perf_counter() - self.before

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def lr_at(cfg: FitConfig, step: int) -> float:
    """The learning rate of ``step``: exponential decay by ``lr_decay`` every ``lr_decay_steps``."""
    return cfg.learning_rate * cfg.lr_decay ** (step / cfg.lr_decay_steps)


def _start(run_dir: Path, cfg: FitConfig, config: FixedConfig | None, resume: bool, extra: dict | None):
    """The model, optimizer, record and tally of a new run, or of a resumed one as its checkpoint
    left it; the record is written."""
    saved = runs.start(run_dir, resume=resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    if saved is not None:
        # The weights were trained with (or without) the feedback cap: keep it as it was.
        cfg = replace(cfg, feedback_cap=bool(saved["config"].get("feedback_cap", False)))
    torch.manual_seed(cfg.seed)  # the initial weights, too, are a function of the seed
    model = build_model(cfg.model, config, **runs.model_kwargs(cfg.model, cfg))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    record = {"name": run_dir.name, "model": cfg.model, "config": asdict(cfg),
              "fixed_config": config.to_dict() if config is not None else None,
              "parameters": count_parameters(model), "sample_rate": SAMPLE_RATE, "hop": HOP, "status": "training"}
    if saved is not None:
        record.update({k: v for k, v in saved.items() if k not in record})
    record.update(extra or {})
    tally = Tally()
    ckpt_path = run_dir / runs.CHECKPOINT_FILE
    if resume and ckpt_path.exists():
        meta = load_checkpoint(ckpt_path, model, optimizer)
        tally = Tally(meta["step"], meta["best_valid"], int(meta.get("skipped_steps", 0)),
                      rows=_read_metrics(run_dir / runs.METRICS_FILE, meta["step"]), before=meta["elapsed_s"])
    runs.write_record(run_dir, record)
    return cfg, model, optimizer, record, tally


def _train_step(model, optimizer, cfg: FitConfig, examples: list[Example], frames: int, tally: Tally,
                run_dir: Path) -> float:
    """One optimisation step (step ``tally.step``); its spectral loss.

    A non-finite loss or gradient (one bad batch) would poison every weight through Adam: the step
    is skipped, and only :data:`MAX_NONFINITE_STEPS` of them in a row stop training (DX7Error).
    """
    step = tally.step
    rng = np.random.default_rng([cfg.seed, step])
    torch.manual_seed(cfg.seed * 1_000_003 + step)
    f0, loud, target = make_batch(examples, frames, cfg.batch_size, rng)
    for group in optimizer.param_groups:
        group["lr"] = lr_at(cfg, step)
    loss = multiscale_spectral_loss(model(f0, loud), target)
    loss_value = loss.item()
    loss = loss + SATURATION_WEIGHT * getattr(model, "saturation", 0.0)   # 0 unless the levels saturate
    optimizer.zero_grad(set_to_none=True)
    finite = math.isfinite(loss_value)
    if finite:
        loss.backward()
        finite = bool(torch.isfinite(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)))
    if finite:
        optimizer.step()
        tally.bad_in_row = 0
    else:
        tally.skipped, tally.bad_in_row = tally.skipped + 1, tally.bad_in_row + 1
        if tally.bad_in_row >= MAX_NONFINITE_STEPS:
            raise DX7Error(f"training diverged: non-finite loss or gradients in {tally.bad_in_row} steps in a row "
                           f"(up to step {step + 1}); the last checkpoint is kept (try a lower --learning-rate)",
                           str(run_dir))
    tally.step += 1
    return loss_value


def _checkpoint(run_dir: Path, model, optimizer, tally: Tally) -> None:
    """The metrics so far and a resumable checkpoint, each written atomically."""
    meta = {"step": tally.step, "best_valid": tally.best, "elapsed_s": tally.elapsed(),
            "skipped_steps": tally.skipped}
    atomic_write_bytes(run_dir / runs.METRICS_FILE, _metrics_csv(tally.rows))
    save_checkpoint(run_dir / runs.CHECKPOINT_FILE, model, optimizer, meta)


def fit(home, run_dir: Path, cfg: FitConfig, config: FixedConfig | None, *, resume: bool = False,
        progress: Callable[[dict], None] | None = None, data: dict | None = None,
        extra: dict | None = None) -> FitResult:
    """Train (or resume) the run in ``run_dir``; see the module notes. ``extra``: more keys for
    ``run.json`` (e.g. the selector's ``selection``); a resumed run keeps those it had."""
    cfg.check()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(run_dir)
    cfg, model, optimizer, record, tally = _start(run_dir, cfg, config, resume, extra)
    data = data if data is not None else load_examples(home, cfg.corpus, cfg)
    frames = int(round(cfg.segment_seconds * SAMPLE_RATE / HOP))
    budget = cfg.minutes * 60.0 if cfg.minutes is not None and cfg.steps is None else math.inf

    def done() -> bool:
        return (cfg.steps is not None and tally.step >= cfg.steps) or tally.elapsed() >= budget

    tally.start_clock()     # the features are not part of the training budget
    last_ckpt = time.perf_counter()
    model.train()
    while not done():
        loss_value = _train_step(model, optimizer, cfg, data["train"], frames, tally, run_dir)
        row = {"step": tally.step, "train_loss": f"{loss_value:.6f}", "valid_loss": "",
               "lr": f"{lr_at(cfg, tally.step - 1):.6g}", "elapsed_s": f"{tally.elapsed():.2f}"}
        final = done()
        if tally.step % cfg.valid_every == 0 or final:
            valid = evaluate(model, data["valid"] or data["train"][:4])
            row["valid_loss"] = f"{valid:.6f}"
            if valid < tally.best:
                tally.best = valid
                _save(run_dir / runs.MODEL_FILE, {f"model.{k}": v for k, v in model.state_dict().items()},
                      {"step": tally.step, "valid_loss": valid})
        tally.rows.append(row)
        if progress:
            progress({"step": tally.step, "steps": cfg.steps, "loss": loss_value, "best_valid": tally.best,
                      "elapsed_s": tally.elapsed(), "budget_s": budget})
        if final or time.perf_counter() - last_ckpt >= cfg.checkpoint_seconds:
            _checkpoint(run_dir, model, optimizer, tally)
            last_ckpt = time.perf_counter()
    elapsed = tally.elapsed()
    record.update(status="trained", steps=tally.step, skipped_steps=tally.skipped, best_valid_loss=tally.best,
                  elapsed_s=round(elapsed, 2))
    runs.write_record(run_dir, record)
    return FitResult(run_dir, tally.step, tally.best, record["parameters"], elapsed)


QUIET_DB = -15.0
"""A run whose test resynthesis is at least this much quieter than the recordings (median over
the excerpts, RMS) is reported by ``fit``: the multi-resolution loss can prefer a near-silent model
(docs/training.md, "A quiet flute model the loss prefers")."""


def level_db(resynth: np.ndarray, original: np.ndarray) -> float | None:
    """RMS level of ``resynth`` relative to ``original`` in dB; None when the original is silent."""
    ref = float(np.sqrt(np.mean(np.square(original, dtype=np.float64))))
    if ref < 1e-6:
        return None
    return 20.0 * math.log10(max(float(np.sqrt(np.mean(np.square(resynth, dtype=np.float64)))), 1e-12) / ref)


def write_test_resynthesis(run_dir: Path, data: dict, limit: int | None = None) -> tuple[list[Path], float | None]:
    """Resynthesise the test split with the run's best model into ``run_dir/test``.

    Returns:
        ``(files, level)``: the WAVs written (resynthesis and original per excerpt) and the median
        over the excerpts of :func:`level_db` (None without a sounding excerpt).
    """
    from dx7tools.audio import write_wav

    model = runs.Run.at(run_dir).model()
    out_dir = Path(run_dir) / runs.TEST_DIR
    out_dir.mkdir(exist_ok=True)
    written, levels = [], []
    with torch.no_grad():
        for i, e in enumerate(data["test"][:limit]):
            y = model(torch.from_numpy(e.f0_hz)[None], torch.from_numpy(e.loudness_db)[None])[0].numpy()
            levels.append(level_db(y[: len(e.audio)], e.audio))
            for tag, audio in (("resynth", y), ("original", e.audio)):
                path = out_dir / f"{i:03d}-{tag}.wav"
                write_wav(path, audio, SAMPLE_RATE)
                written.append(path)
    sounding = [x for x in levels if x is not None]
    return written, (float(np.median(sounding)) if sounding else None)
