"""Shared fixtures: the real console script, hexter's factory banks, the dexed-py oracle.

Optional resources skip with a visible reason; CI sets DX7TOOLS_REQUIRE_HEXTER=1 and
DX7TOOLS_REQUIRE_DEXED=1 so that a missing oracle fails instead of silently skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from dx7tools import Voice, params

REPO = Path(__file__).resolve().parent.parent
PATCHES = REPO / "patches"

settings.register_profile("default", deadline=None)
settings.load_profile("default")


def _require(var: str) -> bool:
    return os.environ.get(var, "") not in ("", "0")


@pytest.fixture(scope="session")
def dexed():
    try:
        import dexed as module
    except ImportError:
        if _require("DX7TOOLS_REQUIRE_DEXED"):
            pytest.fail("dexed-py is required here (DX7TOOLS_REQUIRE_DEXED) but not installed")
        pytest.skip("dexed-py (optional extra 'dexed') not installed")
    return module


@pytest.fixture(scope="session")
def hexter_dir() -> Path:
    """Folder with Debian hexter's .dx7 banks (DX7TOOLS_HEXTER_DIR, else /usr/share/hexter)."""
    for candidate in (os.environ.get("DX7TOOLS_HEXTER_DIR"), "/usr/share/hexter"):
        if candidate and list(Path(candidate).glob("*.dx7")):
            return Path(candidate)
    if _require("DX7TOOLS_REQUIRE_HEXTER"):
        pytest.fail("hexter banks required (DX7TOOLS_REQUIRE_HEXTER) but not found; run scripts/fetch_hexter.sh")
    pytest.skip("hexter banks not found: run `make hexter` (apt-get download hexter) or set DX7TOOLS_HEXTER_DIR")


@pytest.fixture(scope="session")
def hexter_banks(hexter_dir) -> list[Path]:
    return sorted(hexter_dir.glob("*.dx7"))


def random_vced(rng: np.random.Generator, n: int = 1) -> np.ndarray:
    """``n`` random valid voices (every value within its range, printable names), shape (n, 155)."""
    vced = rng.integers(0, params.MAXIMUM.astype(np.int64) + 1, size=(n, params.VCED_SIZE)).astype(np.uint8)
    vced[:, params.NAME_SLICE] = rng.integers(32, 127, size=(n, params.NAME_LENGTH))
    return vced


def random_voices(rng: np.random.Generator, n: int) -> list[Voice]:
    return [Voice(row) for row in random_vced(rng, n)]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


class CLIResult:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture(scope="session")
def dx7tools_exe() -> str:
    """The installed console script (next to this interpreter, else on PATH)."""
    exe = Path(sys.executable).parent / "dx7tools"
    found = str(exe) if exe.exists() else shutil.which("dx7tools")
    if not found:
        pytest.fail("the dx7tools console script is not installed (pip install -e .)")
    return found


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def run_cli(dx7tools_exe, home):
    """Run the real console script with ``--home`` set to a fresh temporary data home."""

    def run(*args: str, use_home: bool = True, env: dict | None = None) -> CLIResult:
        argv = [dx7tools_exe, *map(str, args)]
        if use_home:
            argv += ["--home", str(home)]
        full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
        full_env.pop("DX7TOOLS_HOME", None) if use_home else None
        proc = subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=120)
        return CLIResult(proc)

    return run


@pytest.fixture
def one_thread():
    """Run a test with one torch thread, restoring the count after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def violin_phrase(f0: float, seconds: float) -> np.ndarray:
    """(seconds * 16000,) a phrase the paper's violin configuration plays at ``f0`` (Hz) with fixed
    operator levels faded in and out over 0.1 s: a known-answer recording for corpora in tests."""
    import torch

    from ddx7.rank.choose import paper_config
    from ddx7.synth import FMSynth

    frames = int(seconds * 250)
    env = np.minimum(1, np.minimum(np.arange(frames), frames - np.arange(frames)) / 25.0)
    index = torch.from_numpy(np.stack([env * 1.6, env * 0.6, env * 1.2, env * 0.8, env * 0.3, env * 0.05], -1))
    with torch.no_grad():
        return FMSynth(paper_config("violin"))(torch.full((1, frames), f0), index.float()[None])[0].numpy() * 0.3
