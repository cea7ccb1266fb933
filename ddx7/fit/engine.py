"""Many calls at once: Ray tasks on this machine's cores or on a cluster, or one after another here.

:func:`execute` runs ``fn(payload)`` for every :class:`Call` and returns one :class:`Outcome` per
call, in order. ``fn`` must be a module-level function (a Ray worker imports it by name) that
returns a JSON-like dict and raises :class:`~dx7tools.errors.DX7Error` for bad input.

* **Ray** (the optional extra ``dx7tools[ray]``): each call is a Ray task needing one CPU, named
  ``fit <key>`` (the worker's process title reads ``ray::fit <key>`` while it runs). Without an
  address Ray starts here with ``workers`` CPUs (default: all cores) and stops at the end; with
  one it joins a running cluster (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``). A task whose
  worker dies (``kill -9``, a node lost) is run again by Ray, up to :data:`MAX_RETRIES` times;
  every start writes one line to an attempts ledger (a folder the caller gives, on the shared
  data home), so the outcome says how many attempts a call took.
* **In this process**, one call after another, when Ray is not installed, when
  :data:`NO_RAY_ENV` is set, or when one worker (or one call) and no address is asked for.

A DX7Error, or any other exception of ``fn``, becomes the outcome's ``error`` (one line); the other
calls go on. Ctrl-C cancels what is running and re-raises.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import time
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from dx7tools.errors import DX7Error, MissingExtra

NO_RAY_ENV = "DX7TOOLS_NO_RAY"
"""Set to 1 to run as if Ray were not installed (one call after another, in this process)."""
INSTALL_HINT = "pip install 'dx7tools[ray]'"
MAX_RETRIES = 3
"""Times Ray runs a task again after its worker died."""
CONNECT_TIMEOUT_S = 5.0
"""How long to wait for a cluster's port to answer before calling the address unreachable."""
TASK_PREFIX = "fit "
"""A task's name is this and its key; a Ray worker's process title is ``ray::`` and the name."""

Progress = Callable[[str, float, float, str], None]


@dataclass(frozen=True)
class Call:
    """One unit of work: ``key`` names it (unique; a run name), ``payload`` is ``fn``'s argument."""

    key: str
    payload: dict


@dataclass
class Outcome:
    """What became of a :class:`Call`: ``result`` (``fn``'s dict) or ``error`` (one line), and
    ``attempts`` (more than 1: its worker died and Ray ran it again)."""

    key: str
    result: dict | None = None
    error: str | None = None
    attempts: int = 1
    seconds: float = 0.0
    hosts: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def ray_available() -> bool:
    """Ray is installed and not switched off by :data:`NO_RAY_ENV`."""
    if os.environ.get(NO_RAY_ENV, "") not in ("", "0"):
        return False
    return importlib.util.find_spec("ray") is not None


def uses_ray(n_calls: int, address: str | None, workers: int | None) -> bool:
    """Whether :func:`execute` would use Ray (raises the install hint for an address without Ray)."""
    if address is not None and not ray_available():
        raise MissingExtra(f"--address needs Ray, which is not installed: {INSTALL_HINT}", "ray")
    if address is not None:
        return True
    return ray_available() and n_calls > 1 and (workers is None or workers > 1)


def describe(on_ray: bool, address: str | None) -> str:
    """How the calls ran, for a table's caption."""
    return f"Ray tasks on {address or 'this machine'}" if on_ray else "one run after another in this process"


def execute(fn: Callable[[dict], dict], calls: list[Call], *, address: str | None = None,
            workers: int | None = None, ledger: str | os.PathLike | None = None,
            progress: Progress | None = None) -> list[Outcome]:
    """Run ``fn(call.payload)`` for every call (see the module notes); one outcome per call, in order.

    Args:
        address: a Ray cluster to join; None: this machine.
        workers: calls running at once (default: the cores here, or the cluster's CPUs).
        ledger: a folder every worker can write (on the shared data home) for the attempts
            ledger; required with Ray.
        progress: ``progress("runs", done, total, note)``.
    """
    if workers is not None and workers < 1:
        raise DX7Error("--workers must be >= 1")
    keys = [c.key for c in calls]
    if len(set(keys)) != len(keys):
        raise DX7Error("two calls share one key")
    report = progress or (lambda *a: None)
    if not uses_ray(len(calls), address, workers):
        return _sequential(fn, calls, report)
    if ledger is None:
        raise DX7Error("running on Ray needs an attempts ledger folder on the shared data home")
    return _on_ray(fn, calls, address, workers, Path(ledger), report)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text and isinstance(exc, DX7Error) else f"{type(exc).__name__}: {text[0] if text else ''}"


def _sequential(fn, calls: list[Call], report: Progress) -> list[Outcome]:
    outcomes = []
    for i, call in enumerate(calls):
        report("runs", i, len(calls), call.key)
        t0 = time.perf_counter()
        try:
            outcome = Outcome(call.key, result=fn(call.payload), hosts=[socket.gethostname()])
        except Exception as exc:  # one failed call is a row of the failure table, not the end of the rest
            outcome = Outcome(call.key, error=_one_line(exc), hosts=[socket.gethostname()])
        outcome.seconds = round(time.perf_counter() - t0, 2)
        outcomes.append(outcome)
    report("runs", len(calls), len(calls), "")
    return outcomes


# -- Ray ------------------------------------------------------------------------------------------
def attempt(fn, payload: dict, ledger: str, key: str) -> dict:
    """What a Ray task runs: note the attempt in the ledger, then ``fn(payload)``; a DX7Error is
    returned as ``{"error": line}`` (an answer, not a fault to retry)."""
    host = socket.gethostname()
    folder = Path(ledger)
    if not folder.is_dir():
        return {"error": f"worker {host} does not see the data home (no {folder}): workers need the driver's "
                         "data home at the same path", "host": host}
    with open(folder / key, "a") as fh:
        fh.write(f"{host} {os.getpid()} {time.time():.3f}\n")
    try:
        return {"result": fn(payload), "host": host}
    except DX7Error as exc:
        return {"error": _one_line(exc), "host": host}


def check_address(address: str) -> str:
    """``address`` if a Ray cluster may be there: ``auto``, or a ``[ray://]HOST:PORT`` whose port answers."""
    if address == "auto":
        return address
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port or parts.scheme not in ("ray", "tcp"):
        raise DX7Error(f"bad --address {address!r}: use auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise DX7Error(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}") from None
    return address


@contextmanager
def connection(address: str | None, workers: int | None, on_ray: bool):
    """Hold a Ray connection (joined or started here) around several stages; nothing if not ``on_ray``.

    :func:`execute` inside it uses this connection; an unreachable address fails on entering."""
    if not on_ray:
        yield
        return
    import ray

    with redirect_stdout(sys.stderr):    # Ray's own notices (a worker died, ...) never mix with stdout's JSON
        started = _connect(ray, address, workers)
        try:
            yield
        finally:
            if started:
                ray.shutdown()


def _connect(ray, address: str | None, workers: int | None) -> bool:
    """Join ``address`` or start Ray here; True if this call started it (and must stop it).
    An already initialised Ray (a :func:`connection`, a caller's ``ray.init``) is used as it is."""
    if ray.is_initialized():
        return False
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        if address is None:
            ray.init(address="local", num_cpus=workers or os.cpu_count() or 1, **quiet)   # never a running cluster
        else:
            ray.init(address=check_address(address), log_to_driver=False, logging_level="ERROR")
    except DX7Error:
        raise
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ... for a cluster it cannot join
        where = f"a Ray cluster at {address}" if address else "Ray on this machine"
        hint = "" if not address or address == "auto" or os.environ.get("RAY_AUTH_MODE") else \
            " (a cluster with token authentication also needs RAY_AUTH_MODE=token and its token here)"
        raise DX7Error(f"cannot start or reach {where}: {_one_line(exc)}{hint}") from None
    return True


def _on_ray(fn, calls: list[Call], address, workers, ledger: Path, report: Progress) -> list[Outcome]:
    import ray

    with redirect_stdout(sys.stderr):    # see connection()
        return _tasks(ray, fn, calls, address, workers, ledger, report)


def _tasks(ray, fn, calls: list[Call], address, workers, ledger: Path, report: Progress) -> list[Outcome]:
    started = _connect(ray, address, workers)
    try:
        capacity = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)(attempt)
        queue, pending, outcomes = list(calls), {}, {}
        t0: dict[str, float] = {}
        try:
            while queue or pending:
                while queue and len(pending) < capacity:
                    call = queue.pop(0)
                    t0[call.key] = time.perf_counter()
                    pending[task.options(name=TASK_PREFIX + call.key).remote(fn, call.payload, str(ledger),
                                                                             call.key)] = call
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    call = pending.pop(ref)
                    outcomes[call.key] = _collect(ray, ref, call.key, ledger)
                    outcomes[call.key].seconds = round(time.perf_counter() - t0[call.key], 2)
                report("runs", len(outcomes), len(calls), ", ".join(c.key for c in pending.values()))
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()
    return [outcomes[c.key] for c in calls]


def _collect(ray, ref, key: str, ledger: Path) -> Outcome:
    """The outcome of a finished task, with its attempts from the ledger."""
    lines = (ledger / key).read_text().splitlines() if (ledger / key).exists() else []
    hosts = [line.split()[0] for line in lines]
    attempts = max(1, len(lines))
    try:
        answer = ray.get(ref)
    except ray.exceptions.WorkerCrashedError:
        return Outcome(key, error=f"its worker died {attempts} time(s) (Ray gave up after {MAX_RETRIES} retries)",
                       attempts=attempts, hosts=hosts)
    except ray.exceptions.RayTaskError as exc:
        return Outcome(key, error=_one_line(exc.cause if exc.cause is not None else exc), attempts=attempts,
                       hosts=hosts)
    except ray.exceptions.RayError as exc:   # node lost for good, object lost, ...
        return Outcome(key, error=_one_line(exc), attempts=attempts, hosts=hosts)
    if "error" in answer:
        return Outcome(key, error=answer["error"], attempts=attempts, hosts=hosts or [answer.get("host")])
    return Outcome(key, result=answer["result"], attempts=attempts, hosts=hosts)
