"""Training runs: data, the loop, checkpoints that survive kill -9, and the run directory.

A run lives in ``<home>/runs/<name>/``::

    run.json                 what was asked and what it is (model kind, fixed configuration, corpus,
                             features, hyper-parameters, parameter count, status)
    metrics.csv              step, train_loss, valid_loss, lr, elapsed_s (one row per step)
    checkpoint.safetensors   latest weights + optimizer state + progress (metadata), for --resume
    model.safetensors        the best weights so far (by validation loss), for resynthesis/export
    test/                    the test split resynthesised at the end (and the originals)

Every file is written atomically (temporary file, fsync, rename). Randomness is a pure function
of ``(seed, step)`` (batch choice and dropout), so a resumed run repeats exactly the steps it
lost and its loss curve is the one an uninterrupted run would have drawn.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from dx7tools.errors import DX7Error
from dx7tools.fixed_config import FixedConfig
from dx7tools.sysex import atomic_write_bytes

from .loss import multiscale_spectral_loss
from .models import build_model, count_parameters

SAMPLE_RATE = 16000
HOP = 64
MAX_NONFINITE_STEPS = 20
"""Training stops (DX7Error) after this many steps in a row with a non-finite loss or gradient."""
SATURATION_WEIGHT = 0.1
"""Weight of :func:`ddx7.models.saturation_penalty` in the training objective (the logged losses
are the spectral loss alone)."""
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,59}$")


@dataclass
class FitConfig:
    """Everything a run needs; saved in ``run.json``. Defaults: see the README (measured on 2 cores)."""

    corpus: str
    model: str = "ddx7"
    voice: str | None = None
    steps: int | None = None
    minutes: float | None = 4.0
    segment_seconds: float = 1.0
    batch_size: int = 8
    learning_rate: float = 5e-3
    lr_decay: float = 0.5             # multiplied in over lr_decay_steps
    lr_decay_steps: int = 2000
    grad_clip: float = 3.0
    imax: float = 2.0
    feedback_cap: bool = True         # hold the feedback loop below chaos (ddx7.feedback.STABLE_LOOP_GAIN)
    crepe: str = "full"
    crepe_hop: int | None = None
    confidence: float | None = None   # voicing threshold; None: 0.85 for CREPE full, 0.5 for tiny
    valid_every: int = 50
    checkpoint_seconds: float = 20.0
    seed: int = 0
    threads: int | None = None

    @classmethod
    def from_saved(cls, saved: dict) -> "FitConfig":
        """The config of a saved run (``run.json``'s ``config``): keys of other versions ignored,
        and runs from before ``feedback_cap`` existed keep training and playing without it."""
        known = {f.name for f in fields(cls)}
        return cls(**{"feedback_cap": False, **{k: v for k, v in saved.items() if k in known}})

    def check(self) -> None:
        if self.model not in ("ddx7", "hpn"):
            raise DX7Error(f"unknown model {self.model!r}; choose ddx7 or hpn")
        if self.steps is not None and self.steps < 1:
            raise DX7Error("--steps must be >= 1")
        if self.minutes is not None and not self.minutes > 0:
            raise DX7Error("--minutes must be > 0")
        if self.crepe not in ("full", "tiny"):
            raise DX7Error(f"unknown CREPE model {self.crepe!r}; choose full or tiny")
        if not 0.1 <= self.segment_seconds <= 30:
            raise DX7Error("segment length must be 0.1-30 s")


def check_name(name: str, what: str = "run") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise DX7Error(f"bad {what} name {name!r}: use 1-60 lowercase letters, digits, '.', '_' or '-'")
    return name


# -- data ---------------------------------------------------------------------------------------
@dataclass
class Example:
    """One corpus segment with its features (frames at 250/s)."""

    audio: np.ndarray       # (T * HOP,) float32
    f0_hz: np.ndarray       # (T,)
    loudness_db: np.ndarray  # (T,)
    name: str = ""

    @property
    def frames(self) -> int:
        return len(self.f0_hz)


CONFIDENCE = {"full": 0.85, "tiny": 0.5}
"""Default voicing thresholds: full CREPE gives >= 0.84 on clean tones (noise ~0.01); tiny gives
0.78-0.87 on clean tones and ~0.15 on noise (measured in ddx7/features.py)."""


def confidence_threshold(cfg: "FitConfig | dict") -> float:
    c = cfg if isinstance(cfg, dict) else asdict(cfg)
    return c.get("confidence") if c.get("confidence") is not None else CONFIDENCE[c.get("crepe", "full")]


def voiced_f0(f0_hz: np.ndarray, confidence: np.ndarray, threshold: float = 0.85) -> np.ndarray:
    """f0 with low-confidence frames set to 0 (unvoiced)."""
    return np.where(confidence >= threshold, f0_hz, 0.0).astype(np.float32)


def load_examples(home, corpus_name: str, cfg: FitConfig, progress: Callable | None = None) -> dict:
    """Features for every segment of a corpus, from the feature cache when possible.

    Returns:
        ``{"train": [Example], "valid": [...], "test": [...]}``.
    """
    from .corpus import Corpus
    from .features import FeatureCache, compute_features

    corpus = Corpus.open(home, corpus_name)
    cache = FeatureCache(Path(corpus.path) / "features")
    settings = {"hop": HOP, "model": cfg.crepe, "crepe_hop": cfg.crepe_hop, "sample_rate": SAMPLE_RATE}
    segments = corpus.segments()
    total = sum(s["duration"] for s in segments)
    out: dict[str, list[Example]] = {"train": [], "valid": [], "test": []}
    done = 0.0
    for seg in segments:
        audio = corpus.load(seg)
        t = len(audio) // HOP
        if t < 8:
            continue
        audio = np.ascontiguousarray(audio[: t * HOP], dtype=np.float32)

        def compute(a, sr):
            return compute_features(a, sr, hop=HOP, model=cfg.crepe, crepe_hop=cfg.crepe_hop)

        feats = cache.get_or_compute(audio, SAMPLE_RATE, settings, compute)
        f0 = voiced_f0(np.asarray(feats["f0_hz"])[:t], np.asarray(feats["confidence"])[:t], confidence_threshold(cfg))
        out[seg["split"]].append(Example(audio, f0, np.asarray(feats["loudness_db"], dtype=np.float32)[:t],
                                         seg["file"]))
        done += seg["duration"]
        if progress:
            progress(done, total)
    if not out["train"]:
        raise DX7Error(f"corpus {corpus_name!r} has no training segments")
    if not any(np.any(e.f0_hz > 0) for e in out["train"]):
        raise DX7Error(f"corpus {corpus_name!r}: CREPE found no voiced frames (is it all noise or silence?)")
    return out


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


def _load(path: Path) -> tuple[dict, dict]:
    try:
        with safe_open(str(path), framework="pt") as fh:  # tensors and metadata in one read
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
            meta = json.loads((fh.metadata() or {}).get("meta", "{}"))
    except Exception as exc:  # safetensors raises its own SafetensorError for a bad header
        raise DX7Error(f"not a readable checkpoint: {exc}", str(path)) from None
    return tensors, meta


def save_checkpoint(path: Path, model, optimizer, meta: dict) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    state = optimizer.state_dict()
    for idx, st in state["state"].items():
        for key, value in st.items():
            tensors[f"optim.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    _save(path, tensors, {**meta, "param_groups": state["param_groups"]})


def load_checkpoint(path: Path, model, optimizer) -> dict:
    tensors, meta = _load(path)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta


def model_kwargs(run: dict) -> dict:
    if run["model"] != "ddx7":
        return {"sample_rate": SAMPLE_RATE, "hop_length": HOP}
    return {"sample_rate": SAMPLE_RATE, "hop_length": HOP, "imax": run["config"]["imax"],
            "feedback_cap": bool(run["config"].get("feedback_cap", False))}


def load_model(run_dir: Path):
    """The best model of a run (``model.safetensors``) and its ``run.json``."""
    run_dir = Path(run_dir)
    info_path = run_dir / "run.json"
    if not info_path.exists():
        raise DX7Error("not a run folder (no run.json)", str(run_dir))
    run = json.loads(info_path.read_text())
    weights = run_dir / "model.safetensors"
    if not weights.exists():
        raise DX7Error("this run has no trained model yet (it stopped before its first validation)", str(run_dir))
    config = FixedConfig.from_dict(run["fixed_config"]) if run.get("fixed_config") else None
    model = build_model(run["model"], config, **model_kwargs(run))
    tensors, _ = _load(weights)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    model.eval()
    if run["model"] == "ddx7":
        model.decoder.fuse_weight_norm()  # inference: no per-call weight recomputation
    return model, run


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
    ckpt_path, best_path = run_dir / "checkpoint.safetensors", run_dir / "model.safetensors"
    if run_dir.exists() and not resume:
        raise DX7Error(f"run {run_dir.name!r} exists; pass --resume to continue it or choose another --run",
                       str(run_dir))
    if resume and not (run_dir / "run.json").exists():
        raise DX7Error("nothing to resume: no run.json", str(run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)

    saved = json.loads((run_dir / "run.json").read_text()) if resume else None
    if saved is not None:
        # The weights were trained with (or without) the feedback cap: keep it as it was.
        cfg = replace(cfg, feedback_cap=bool(saved.get("config", {}).get("feedback_cap", False)))
    data = data if data is not None else load_examples(home, cfg.corpus, cfg)
    torch.manual_seed(cfg.seed)  # the initial weights, too, are a function of the seed
    model = build_model(cfg.model, config, **model_kwargs({"model": cfg.model, "config": asdict(cfg)}))
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
        rows = _read_metrics(run_dir / "metrics.csv", step)
    atomic_write_bytes(run_dir / "run.json", json.dumps(run_info, indent=2).encode())

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
        atomic_write_bytes(run_dir / "metrics.csv", _metrics_csv(rows))
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
    atomic_write_bytes(run_dir / "run.json", json.dumps(run_info, indent=2).encode())
    return FitResult(run_dir, step, best, params, elapsed)


def write_test_resynthesis(run_dir: Path, data: dict, limit: int | None = None) -> list[Path]:
    """Resynthesise the test split with the run's best model into ``run_dir/test``."""
    from dx7tools.audio import write_wav

    model, _ = load_model(run_dir)
    out_dir = Path(run_dir) / "test"
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


def runs_dir(home) -> Path:
    from dx7tools.library import resolve_home

    return Path(resolve_home(home)) / "runs"


def list_runs(home) -> list[dict]:
    root = runs_dir(home)
    out = []
    for d in sorted(root.iterdir()) if root.exists() else []:
        try:
            info = json.loads((d / "run.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        out.append({k: info.get(k) for k in ("name", "model", "status", "steps", "best_valid_loss", "parameters")}
                   | {"corpus": info.get("config", {}).get("corpus")})
    return out


def default_run_name(home, corpus: str, model: str) -> str:
    root = runs_dir(home)
    base = f"{corpus}-{model}"
    if not (root / base).exists():
        return base
    k = 2
    while (root / f"{base}-{k}").exists():
        k += 1
    return f"{base}-{k}"


