"""A run exported in one call (``dx7tools export``): the voice fit, its SysEx and fidelity, a performance."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Callable, ContextManager

from dx7tools.errors import DX7Error, MissingExtra

from ddx7.export.mk1 import CONTROLLERS
from ddx7.export.performance import WIRE_BUDGET, export_performance, resolve_target
from ddx7.export.voice import POOR_FIT_DB, baseline_voice, export_voice, fidelity as voice_fidelity, write_voice
from ddx7.run import Run


def _warn(line: str) -> None:
    warnings.warn(line, stacklevel=3)


def export_run(home, run: Run | str | Path, *, syx=None, bank: bool = False, mid=None, wav=None, channel: int = 1,
               budget: float = WIRE_BUDGET, breath: bool = False, cc_lanes: bool = False, fidelity: bool = True,
               target: str | None = None, controller: str = "breath", check: bool = False,
               stage: Callable[[str], ContextManager] | None = None,
               warn: Callable[[str], None] | None = None) -> dict:
    """Fit a DX7 voice to a DDX7 run; write it as SysEx and/or play ``wav`` as a .mid with it.

    The run's model is loaded once for all of it (:meth:`ddx7.run.Run.model`).

    Args:
        home: data home (runs, corpora, library); ``run``: a run, its name or its folder.
        syx: write the voice here (``bank``: as a 32-voice cartridge, the voice in slot 1), and
            with ``fidelity`` measure it against the model with dexed-py (skipped, with a
            warning, when the ``dexed`` extra is not installed).
        mid, wav: write ``wav`` performed as a .mid here (:func:`ddx7.export.performance.export_performance`
            with ``channel``, ``budget``, ``breath``, ``cc_lanes``, ``target`` -- mk1 by default --
            and ``controller``).
        check: with ``wav``, measure how close the DX7 engine playing the export comes to the
            recording, beside the model and the starting voice (:func:`ddx7.evaluate.e2e.compare_take`);
            the figures and the renders are kept in the run folder (``e2e/``) for ``report``.
        stage: ``stage(label)`` gives a context manager around each long step ("fitting the
            voice", "rendering with dexed", "performance"), e.g. a progress bar.
        warn: called with each warning line (default: :func:`warnings.warn`).

    Returns:
        ``{"run", **VoiceExport.to_dict(), "syx"?, "fidelity"?, "mid"?}``: ``syx`` = path, format,
        bytes; ``fidelity`` = ``baseline_voice`` and :func:`ddx7.export.voice.fidelity`'s figures,
        or None without dexed-py; ``mid`` = :func:`export_performance`'s dict.

    Raises:
        DX7Error: nothing to export, a missing input or output folder, not a DDX7 run, ...
    """
    stage = stage or (lambda label: contextlib.nullcontext())
    warn = warn or _warn
    _check_arguments(syx, mid, wav, check, target, breath, cc_lanes, controller)
    run = (run if isinstance(run, Run) else Run.open(home, run)).require_ddx7()  # before the corpus work
    with stage("fitting the voice"):
        voice_export = export_voice(run, home)
    info: dict = {"run": run.name, **voice_export.to_dict()}
    poor = info["poor_fit_operators"]
    if poor:
        warn(f"operator(s) {', '.join(map(str, poor))}: the DX7 envelope follows the model only roughly "
             f"(RMS error above {POOR_FIT_DB:g} dB); the best voice found is written anyway")
    if syx is not None:
        write_voice(syx, voice_export.voice, bank=bank)
        info["syx"] = {"path": str(syx), "format": "32-voice bank (VMEM)" if bank else "single voice (VCED)",
                       "bytes": Path(syx).stat().st_size}
        if fidelity:
            info["fidelity"] = _fidelity(home, run, voice_export, stage, warn)
    options = dict(channel=channel, budget=budget, controller=controller)
    plans = None
    if check:  # the check plays the mk1 and dexed plans: make them once, for the .mid too
        with stage("performance"):
            plans = _mk1_and_dexed(run, voice_export, wav, options)
    if mid is not None:
        chosen = resolve_target(target, breath, cc_lanes)
        with stage("performance"):
            info["mid"] = export_performance(run, wav, mid, home=home, voice_export=voice_export, breath=breath,
                                             cc_lanes=cc_lanes, target=target, **options,
                                             plan=plans.get(chosen) if plans and not breath else None)
        for line in info["mid"].get("warnings", []):
            warn(line)
    if check:
        from ddx7.evaluate.e2e import save_check

        with stage("checking on the DX7 engine"):
            info["check"] = save_check(run, wav, home=home, voice_export=voice_export, plans=plans)
    return info


def _check_arguments(syx, mid, wav, check: bool, target, breath: bool, cc_lanes: bool, controller: str) -> None:
    """:func:`export_run`'s bad input, found before any work (one :class:`DX7Error`)."""
    if syx is None and mid is None:
        raise DX7Error("nothing to export: give --syx OUT.syx and/or --mid OUT.mid --from IN.wav")
    if mid is not None and wav is None:
        raise DX7Error("--mid needs --from IN.wav (the recording to perform)")
    if check and wav is None:
        raise DX7Error("--check needs --from IN.wav (the recording to compare with)")
    resolve_target(target, breath, cc_lanes)  # an unknown target fails before any work
    if controller not in CONTROLLERS:
        raise DX7Error(f"unknown controller {controller!r}; choose one of {', '.join(CONTROLLERS)}")
    if wav is not None and not Path(wav).exists():
        raise DX7Error("no such file", str(wav))
    for out_path in (syx, mid):
        if out_path is not None and not Path(out_path).parent.resolve().is_dir():
            raise DX7Error("cannot write: the folder does not exist", str(out_path))


def _mk1_and_dexed(run: Run, voice_export, wav, options: dict) -> dict:
    """The mk1 and dexed plans of ``wav`` (:func:`ddx7.export.mk1.plan_mk1_and_dexed`)."""
    from ddx7.export.mk1 import plan_mk1_and_dexed
    from ddx7.export.performance import performance_features

    return plan_mk1_and_dexed(run, voice_export, *performance_features(run, wav), source=str(wav), **options)


def _fidelity(home, run: Run, voice_export, stage, warn) -> dict | None:
    """The exported and the baseline voice against the model (dexed-py), or None without it."""
    baseline, source = baseline_voice(home, run.fixed_config)
    try:
        with stage("rendering with dexed"):
            figures = voice_fidelity(voice_export, baseline)
    except MissingExtra:
        warn("fidelity not measured: dexed-py (optional extra 'dexed') is not installed")
        return None
    return {"baseline_voice": source, **figures}
