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


def fit(home, run_dir: Path, cfg: FitConfig, config: FixedConfig | None, *, resume: bool = False,
        progress: Callable[[dict], None] | None = None, data: dict | None = None,
        extra: dict | None = None) -> FitResult:
    """Train (or resume) the run in ``run_dir``; see the module notes. ``extra``: more keys for
    ``run.json`` (e.g. the selector's ``selection``); a resumed run keeps those it had."""
    cfg.check()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(run_dir)
    ckpt_path, best_path = run_dir / runs.CHECKPOINT_FILE, run_dir / runs.MODEL_FILE
    saved = runs.start(run_dir, resume=resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    if saved is not None:
        # The weights were trained with (or without) the feedback cap: keep it as it was.
        cfg = replace(cfg, feedback_cap=bool(saved["config"].get("feedback_cap", False)))
    data = data if data is not None else load_examples(home, cfg.corpus, cfg)
    torch.manual_seed(cfg.seed)  # the initial weights, too, are a function of the seed
    model = build_model(cfg.model, config, **runs.model_kwargs(cfg.model, cfg))
    params = count_parameters(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    run_info = {"name": run_dir.name, "model": cfg.model, "config": asdict(cfg),
                "fixed_config": config.to_dict() if config is not None else None,
                "parameters": params, "sample_rate": SAMPLE_RATE, "hop": HOP, "status": "training"}
    if saved is not None:
        run_info.update({k: v for k, v in saved.items() if k not in run_info})
    run_info.update(extra or {})

    step, best, elapsed, rows = 0, math.inf, 0.0, []
    skipped, bad_in_row = 0, 0
    if resume and ckpt_path.exists():
        meta = load_checkpoint(ckpt_path, model, optimizer)
        step, best, elapsed = meta["step"], meta["best_valid"], meta["elapsed_s"]
        skipped = int(meta.get("skipped_steps", 0))
        rows = _read_metrics(run_dir / runs.METRICS_FILE, step)
    runs.write_record(run_dir, run_info)

    frames = int(round(cfg.segment_seconds * SAMPLE_RATE / HOP))
    budget = cfg.minutes * 60.0 if cfg.minutes is not None and cfg.steps is None else math.inf
    last_ckpt = time.perf_counter()
    started = time.perf_counter() - elapsed
    model.train()

    def lr_at(s: int) -> float:
        return cfg.learning_rate * cfg.lr_decay ** (s / cfg.lr_decay_steps)

    def checkpoint() -> None:
        meta = {"step": step, "best_valid": best, "elapsed_s": time.perf_counter() - started,
                "skipped_steps": skipped}
        atomic_write_bytes(run_dir / runs.METRICS_FILE, _metrics_csv(rows))
        save_checkpoint(ckpt_path, model, optimizer, meta)

    while True:
        elapsed = time.perf_counter() - started
        if (cfg.steps is not None and step >= cfg.steps) or elapsed >= budget:
            break
        rng = np.random.default_rng([cfg.seed, step])
        torch.manual_seed(cfg.seed * 1_000_003 + step)
        f0, loud, target = make_batch(data["train"], frames, cfg.batch_size, rng)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        loss = multiscale_spectral_loss(model(f0, loud), target)
        loss_value = loss.item()
        loss = loss + SATURATION_WEIGHT * getattr(model, "saturation", 0.0)   # 0 unless the levels saturate
        optimizer.zero_grad(set_to_none=True)
        # A non-finite loss or gradient (one bad batch) would poison every weight through Adam:
        # the step is skipped, and only a run of them stops training.
        finite = math.isfinite(loss_value)
        if finite:
            loss.backward()
            finite = bool(torch.isfinite(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)))
        if finite:
            optimizer.step()
            bad_in_row = 0
        else:
            skipped, bad_in_row = skipped + 1, bad_in_row + 1
            if bad_in_row >= MAX_NONFINITE_STEPS:
                raise DX7Error(f"training diverged: non-finite loss or gradients in {bad_in_row} steps in a row "
                               f"(up to step {step + 1}); the last checkpoint is kept (try a lower --learning-rate)",
                               str(run_dir))
        step += 1
        row = {"step": step, "train_loss": f"{loss_value:.6f}", "valid_loss": "", "lr": f"{lr_at(step - 1):.6g}",
               "elapsed_s": f"{time.perf_counter() - started:.2f}"}
        final = (cfg.steps is not None and step >= cfg.steps) or time.perf_counter() - started >= budget
        if step % cfg.valid_every == 0 or final:
            valid = evaluate(model, data["valid"] or data["train"][:4])
            row["valid_loss"] = f"{valid:.6f}"
            if valid < best:
                best = valid
                _save(best_path, {f"model.{k}": v for k, v in model.state_dict().items()},
                      {"step": step, "valid_loss": valid})
        rows.append(row)
        if progress:
            progress({"step": step, "steps": cfg.steps, "loss": loss_value, "best_valid": best,
                      "elapsed_s": time.perf_counter() - started, "budget_s": budget})
        if final or time.perf_counter() - last_ckpt >= cfg.checkpoint_seconds:
            checkpoint()
            last_ckpt = time.perf_counter()
    elapsed = time.perf_counter() - started
    run_info["status"] = "trained"
    run_info["steps"] = step
    run_info["skipped_steps"] = skipped
    run_info["best_valid_loss"] = best
    run_info["elapsed_s"] = round(elapsed, 2)
    runs.write_record(run_dir, run_info)
    return FitResult(run_dir, step, best, params, elapsed)


def write_test_resynthesis(run_dir: Path, data: dict, limit: int | None = None) -> list[Path]:
    """Resynthesise the test split with the run's best model into ``run_dir/test``."""
    from dx7tools.audio import write_wav

    model = runs.Run.at(run_dir).model()
    out_dir = Path(run_dir) / runs.TEST_DIR
    out_dir.mkdir(exist_ok=True)
    written = []
    with torch.no_grad():
        for i, e in enumerate(data["test"][:limit]):
            y = model(torch.from_numpy(e.f0_hz)[None], torch.from_numpy(e.loudness_db)[None])[0].numpy()
            for tag, audio in (("resynth", y), ("original", e.audio)):
                path = out_dir / f"{i:03d}-{tag}.wav"
                write_wav(path, audio, SAMPLE_RATE)
                written.append(path)
    return written
