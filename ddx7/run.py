"""A training run's home: its folder, its record, its model, and the rules to resume it.

A run lives in ``<home>/runs/<name>/``::

    run.json                 the record: what was asked and what it is (model kind, fit settings,
                             fixed configuration, corpus, parameter count, status, results)
    metrics.csv              step, train_loss, valid_loss, lr, elapsed_s (one row per step)
    checkpoint.safetensors   latest weights + optimizer state + progress (metadata), for resuming
    model.safetensors        the best weights so far (by validation loss), for resynthesis/export
    test/                    the test split resynthesised at the end (and the originals)

This module is the only one that finds runs, reads or writes ``run.json`` and loads a run's
model; :mod:`ddx7.fit.train` writes the rest. Every file is written atomically.

    >>> run = Run.open(home, "violin-ddx7")       # a name under <home>/runs, or a run folder
    >>> run.fit_config.corpus, run.fixed_config.describe()
    >>> model = run.model()                          # loaded once, in eval mode
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from safetensors import safe_open

from dx7tools.audio import HOP, SAMPLE_RATE
from dx7tools.errors import DX7Error
from dx7tools.files import atomic_write_bytes
from dx7tools.fixed_config import FixedConfig

RECORD_FILE = "run.json"
MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
METRICS_FILE = "metrics.csv"
TEST_DIR = "test"
MODELS = ("ddx7", "hpn")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,59}$")


@dataclass
class FitConfig:
    """Everything a run is trained with; saved as ``run.json``'s ``config``.

    Defaults: see docs/training.md (measured on 2 cores)."""

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
    feedback_cap: bool = True         # hold the feedback loop below chaos (ddx7.synth.feedback.STABLE_LOOP_GAIN)
    crepe: str = "full"
    crepe_hop: int | None = None      # the f0 tracker's hop in samples; None: every frame (64)
    f0: str | None = None             # f0 tracker (ddx7.data.f0.TRACKERS); None: CREPE ``crepe`` (older runs)
    confidence: float | None = None   # voicing threshold; None: the tracker's (ddx7.data.f0.CONFIDENCE)
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

    @property
    def tracker(self) -> str:
        """The f0 tracker features are computed with: ``f0``, or ``crepe-<crepe>`` when unset
        (runs recorded before ``f0`` existed used CREPE ``crepe``)."""
        return self.f0 if self.f0 is not None else f"crepe-{self.crepe}"

    def check(self) -> None:
        if self.model not in MODELS:
            raise DX7Error(f"unknown model {self.model!r}; choose ddx7 or hpn")
        if self.steps is not None and self.steps < 1:
            raise DX7Error("--steps must be >= 1")
        if self.minutes is not None and not self.minutes > 0:
            raise DX7Error("--minutes must be > 0")
        if self.crepe not in ("full", "tiny"):
            raise DX7Error(f"unknown CREPE model {self.crepe!r}; choose full or tiny")
        if self.f0 is not None:
            from ddx7.data.f0 import check_tracker

            check_tracker(self.f0)
        if not 0.1 <= self.segment_seconds <= 30:
            raise DX7Error("segment length must be 0.1-30 s")


# -- names and folders ----------------------------------------------------------------------------
def check_name(name: str, what: str = "run") -> str:
    """``name`` if it is a valid run (or corpus) name, else a :class:`DX7Error` saying what is."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise DX7Error(f"bad {what} name {name!r}: use 1-60 lowercase letters, digits, '.', '_' or '-'")
    return name


def runs_dir(home) -> Path:
    """``<home>/runs``: where runs live."""
    from dx7tools.library import resolve_home

    return Path(resolve_home(home)) / "runs"


def default_run_name(home, corpus: str, model: str) -> str:
    """``CORPUS-MODEL``, or ``CORPUS-MODEL-N`` with the first N not taken."""
    root = runs_dir(home)
    base = f"{corpus}-{model}"
    if not (root / base).exists():
        return base
    k = 2
    while (root / f"{base}-{k}").exists():
        k += 1
    return f"{base}-{k}"


def run_path(home, ref: str | Path) -> Path:
    """A run name (in ``<home>/runs``) or a run folder (one holding ``run.json``) -> the folder."""
    path = Path(ref)
    if path.is_dir():
        if not (path / RECORD_FILE).exists():
            raise DX7Error(f"not a run folder (no {RECORD_FILE})", str(path))
        return path
    folder = runs_dir(home) / check_name(str(ref))
    if not (folder / RECORD_FILE).exists():
        raise DX7Error(f"no run named {str(ref)!r} (see `dx7tools runs`)")
    return folder


# -- the record -----------------------------------------------------------------------------------
def read_record(run_dir: str | Path) -> dict:
    """``run.json`` of the run in ``run_dir``, checked enough that its readers need not be.

    Raises:
        DX7Error: no ``run.json``, or one that is not JSON or lacks ``model`` and ``config``.
    """
    path = Path(run_dir) / RECORD_FILE
    if not path.exists():
        raise DX7Error(f"not a run folder (no {RECORD_FILE})", str(run_dir))
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DX7Error(f"the run record is not readable ({type(exc).__name__}); the file is damaged", str(path)) \
            from None
    if not isinstance(record, dict) or record.get("model") not in MODELS:
        raise DX7Error("the run record lacks its model kind; the file is damaged", str(path))
    config = record.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("corpus"), str):
        raise DX7Error("the run record lacks its settings (config.corpus); the file is damaged", str(path))
    return record


def write_record(run_dir: str | Path, record: dict) -> None:
    """Write ``run.json`` atomically."""
    atomic_write_bytes(Path(run_dir) / RECORD_FILE, (json.dumps(record, indent=2) + "\n").encode())


def read_weights(path: str | Path) -> tuple[dict, dict]:
    """Tensors and metadata of a safetensors file (a model or a checkpoint); never a pickle."""
    try:
        with safe_open(str(path), framework="pt") as fh:  # tensors and metadata in one read
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
            meta = json.loads((fh.metadata() or {}).get("meta", "{}"))
    except Exception as exc:  # safetensors raises its own SafetensorError for a bad header
        raise DX7Error(f"not a readable checkpoint: {exc}", str(path)) from None
    return tensors, meta


def model_kwargs(kind: str, cfg: FitConfig) -> dict:
    """Keyword arguments of :func:`ddx7.fit.models.build_model` for a run's settings."""
    if kind != "ddx7":
        return {"sample_rate": SAMPLE_RATE, "hop_length": HOP}
    return {"sample_rate": SAMPLE_RATE, "hop_length": HOP, "imax": cfg.imax, "feedback_cap": bool(cfg.feedback_cap)}


# -- a run ----------------------------------------------------------------------------------------
@dataclass
class Run:
    """One run folder and its record; :meth:`model` loads the best weights once.

    Attributes:
        path: the run folder.
        record: ``run.json`` as read (a dict; see the module notes).
    """

    path: Path
    record: dict
    _model: object = field(default=None, repr=False, compare=False)

    @classmethod
    def open(cls, home, ref: str | Path) -> "Run":
        """The run named ``ref`` in ``<home>/runs``, or the run folder ``ref``."""
        return cls.at(run_path(home, ref))

    @classmethod
    def at(cls, run_dir: str | Path) -> "Run":
        """The run in folder ``run_dir``."""
        return cls(Path(run_dir), read_record(run_dir))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def kind(self) -> str:
        """``ddx7`` or ``hpn``."""
        return self.record["model"]

    @property
    def fit_config(self) -> FitConfig:
        return FitConfig.from_saved(self.record["config"])

    @property
    def corpus(self) -> str:
        return self.record["config"].get("corpus", "")

    @property
    def fixed_config(self) -> FixedConfig | None:
        """The DX7 configuration a DDX7 run plays through (None for HpN)."""
        saved = self.record.get("fixed_config")
        if not saved:
            return None
        try:
            return FixedConfig.from_dict(saved)
        except (KeyError, TypeError, ValueError) as exc:
            raise DX7Error(f"the run record's fixed configuration is not readable ({exc})",
                           str(self.path / RECORD_FILE)) from None

    @property
    def finished(self) -> bool:
        """Trained to the end of its budget, with a best model."""
        return self.record.get("status") == "trained" and (self.path / MODEL_FILE).exists()

    def require_finished(self) -> "Run":
        """This run, if :attr:`finished`; else a DX7Error saying how to finish it."""
        if not self.finished:
            raise DX7Error(f"run {self.name!r} never finished training (status {self.record.get('status')!r}); "
                           f"finish it with `dx7tools fit --run {self.name} --resume`", str(self.path))
        return self

    def require_ddx7(self) -> "Run":
        """This run, if it is a DDX7 model with a trained model; else a DX7Error (HpN has no DX7 to export)."""
        if self.kind != "ddx7":
            raise DX7Error(f"run is a {self.kind!r} model; only DDX7 runs map onto DX7 parameters", str(self.path))
        if not self.record.get("fixed_config"):
            raise DX7Error("the run record has no fixed configuration (a DDX7 run needs one); the file is damaged",
                           str(self.path / RECORD_FILE))
        self.require_model()
        return self

    def require_model(self) -> "Run":
        if not (self.path / MODEL_FILE).exists():
            raise DX7Error("this run has no trained model yet (it stopped before its first validation)",
                           str(self.path))
        return self

    def model(self):
        """The best model (``model.safetensors``) in eval mode, loaded on the first call only."""
        if self._model is None:
            from ddx7.fit.models import build_model

            self.require_model()
            model = build_model(self.kind, self.fixed_config, **model_kwargs(self.kind, self.fit_config))
            tensors, _ = read_weights(self.path / MODEL_FILE)
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            model.eval()
            if self.kind == "ddx7":
                model.decoder.fuse_weight_norm()  # inference: no per-call weight recomputation
            self._model = model
        return self._model

    def save(self) -> None:
        """Write :attr:`record` back to ``run.json``."""
        write_record(self.path, self.record)


def load_model(run_dir: str | Path):
    """The best model of the run in ``run_dir`` and its record: ``(model, record)``."""
    run = Run.at(run_dir)
    return run.model(), run.record


# -- starting and resuming --------------------------------------------------------------------------
def start(run_dir: str | Path, *, resume: bool) -> dict | None:
    """Check that a run may start (or resume) in ``run_dir``; the saved record when resuming.

    Rules: a new run needs a folder that does not exist yet; resuming needs a readable record.
    """
    run_dir = Path(run_dir)
    if not resume:
        if run_dir.exists():
            raise DX7Error(f"run {run_dir.name!r} exists; pass --resume to continue it or choose another --run",
                           str(run_dir))
        return None
    if not (run_dir / RECORD_FILE).exists():
        raise DX7Error(f"nothing to resume: no run named {run_dir.name!r} (see `dx7tools runs`)", str(run_dir))
    return read_record(run_dir)


def resume_settings(run: Run, *, steps: int | None = None, minutes: float | None = None
                    ) -> tuple[FitConfig, FixedConfig | None]:
    """The settings a resumed run trains on: its own, with a new budget if one is given.

    The feedback cap stays as the weights were trained (a run from before the cap keeps none).
    """
    cfg = run.fit_config
    if steps is not None or minutes is not None:
        cfg.steps, cfg.minutes = steps, (minutes if steps is None else None)
    return cfg, run.fixed_config


# -- many runs --------------------------------------------------------------------------------------
def iter_runs(home):
    """Every readable run in ``<home>/runs`` (damaged records skipped), by name."""
    root = runs_dir(home)
    for d in sorted(root.iterdir()) if root.exists() else []:
        try:
            yield Run.at(d)
        except DX7Error:
            continue


def list_runs(home) -> list[dict]:
    """One summary row per run: name, model, status, steps, best_valid_loss, parameters, corpus."""
    return [{k: run.record.get(k) for k in ("name", "model", "status", "steps", "best_valid_loss", "parameters")}
            | {"name": run.record.get("name") or run.name, "corpus": run.record["config"].get("corpus")}
            for run in iter_runs(home)]


def newest_finished(home, *, kind: str, corpus: str, exclude: str | None = None) -> Run | None:
    """The newest finished run of ``kind`` on ``corpus`` (by record time), or None."""
    best, best_time = None, -1.0
    for run in iter_runs(home):
        if run.kind == kind and run.corpus == corpus and run.name != exclude and run.finished:
            t = (run.path / RECORD_FILE).stat().st_mtime
            if t > best_time:
                best, best_time = run, t
    return best
