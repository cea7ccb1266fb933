"""The fixed configuration of a DX7 voice: what DDX7 keeps from a patch and never learns.

DDX7 copies a patch's algorithm, operator frequencies and feedback and lets a network drive
only the six output levels frame by frame. :class:`FixedConfig` is exactly that part of a
:class:`~dx7tools.voice.Voice` -- algorithm, per-operator oscillator mode, coarse, fine and
detune, and the feedback level -- kept as the voice's own raw parameters so it maps back onto a
DX7 without loss. It is what the synth needs besides its controls and is saved with every model
(:meth:`FixedConfig.to_dict` / :meth:`FixedConfig.from_dict`, plain JSON).

Two voices with the same fixed configuration sound the same under DDX7 whatever their
envelopes and levels; :attr:`FixedConfig.key` identifies that class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .algorithms import Algorithm, get_algorithm
from .errors import DX7Error
from .frequency import detune_ratio, fixed_frequency, frequency_ratio

_OPS = range(1, 7)


def _six(name: str, values, low: int, high: int) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in values)
        exact = all(float(v) == int(v) for v in values)
    except (TypeError, ValueError):
        raise DX7Error(f"{name} must be 6 whole numbers {low}-{high} (OP1..OP6), got {values!r}") from None
    if len(out) != 6 or not exact or any(not low <= v <= high for v in out):
        raise DX7Error(f"{name} must be 6 whole numbers {low}-{high} (OP1..OP6), got {values!r}")
    return out


def _ratio_table() -> np.ndarray:
    """(3200,) every ratio-mode setting's ratio, index ``coarse * 100 + fine``."""
    coarse, fine = np.divmod(np.arange(32 * 100), 100)
    return frequency_ratio(coarse, fine)


@dataclass(frozen=True)
class FixedConfig:
    """Algorithm, operator frequencies and feedback of a DX7 voice (all tuples are OP1..OP6).

    Attributes:
        algorithm: DX7 algorithm 1-32.
        mode: oscillator mode per operator, 0 = ratio (follows the note), 1 = fixed frequency.
        coarse: FREQ COARSE 0-31.
        fine: FREQ FINE 0-99.
        detune: OSC DETUNE 0-14 (7 = none).
        feedback: FEEDBACK 0-7.
        name: the voice it came from (informational; not part of :attr:`key`).
    """

    algorithm: int
    mode: tuple[int, ...]
    coarse: tuple[int, ...]
    fine: tuple[int, ...]
    detune: tuple[int, ...] = (7, 7, 7, 7, 7, 7)
    feedback: int = 0
    name: str = ""

    def __post_init__(self) -> None:
        get_algorithm(self.algorithm)  # raises DX7Error naming the bad number
        object.__setattr__(self, "mode", _six("mode", self.mode, 0, 1))
        object.__setattr__(self, "coarse", _six("coarse", self.coarse, 0, 31))
        object.__setattr__(self, "fine", _six("fine", self.fine, 0, 99))
        object.__setattr__(self, "detune", _six("detune", self.detune, 0, 14))
        if not isinstance(self.feedback, (int, np.integer)) or not 0 <= int(self.feedback) <= 7:
            raise DX7Error(f"feedback must be a whole number 0-7, got {self.feedback!r}")
        object.__setattr__(self, "feedback", int(self.feedback))
        object.__setattr__(self, "name", str(self.name))

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_voice(cls, voice) -> "FixedConfig":
        """The fixed configuration of a :class:`~dx7tools.voice.Voice`."""
        return cls(
            algorithm=voice.algorithm,
            mode=tuple(voice[f"op{n}_mode"] for n in _OPS),
            coarse=tuple(voice[f"op{n}_coarse"] for n in _OPS),
            fine=tuple(voice[f"op{n}_fine"] for n in _OPS),
            detune=tuple(voice[f"op{n}_detune"] for n in _OPS),
            feedback=voice.feedback,
            name=voice.name,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FixedConfig":
        """Inverse of :meth:`to_dict` (extra keys such as ``ratio`` are ignored)."""
        try:
            ops = sorted(data["operators"], key=lambda o: int(o["op"]))
            if [int(o["op"]) for o in ops] != list(_OPS):
                raise DX7Error(f"operators must list op 1-6 once each, got {[o['op'] for o in ops]}")
            return cls(
                algorithm=int(data["algorithm"]),
                mode=tuple(1 if o["mode"] in (1, "fixed") else 0 if o["mode"] in (0, "ratio") else -1
                           for o in ops),
                coarse=tuple(o["coarse"] for o in ops),
                fine=tuple(o["fine"] for o in ops),
                detune=tuple(o.get("detune", 7) for o in ops),
                feedback=int(data.get("feedback", 0)),
                name=str(data.get("name", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, DX7Error):
                raise
            raise DX7Error(f"not a fixed configuration: {exc!r}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description: raw parameters plus the derived ratio / fixed Hz per operator."""
        ops = []
        for i in range(6):
            fixed = self.mode[i] == 1
            ops.append({
                "op": i + 1,
                "mode": "fixed" if fixed else "ratio",
                "coarse": self.coarse[i],
                "fine": self.fine[i],
                "detune": self.detune[i],
                "ratio": None if fixed else self.ratios[i],
                "fixed_hz": self.fixed_hz[i] if fixed else None,
            })
        return {"algorithm": self.algorithm, "feedback": self.feedback, "name": self.name, "operators": ops}

    def apply_to(self, voice):
        """``voice`` with this configuration's algorithm, frequencies and feedback."""
        changes: dict[str, int] = {"algorithm": self.algorithm - 1, "feedback": self.feedback}
        for i, n in enumerate(_OPS):
            changes.update({f"op{n}_mode": self.mode[i], f"op{n}_coarse": self.coarse[i],
                            f"op{n}_fine": self.fine[i], f"op{n}_detune": self.detune[i]})
        return voice.replace(**changes)

    def transposed(self, octaves: int) -> "FixedConfig":
        """This configuration with every ratio-mode operator moved ``octaves`` octaves (exactly).

        Doubling a ratio doubles its coarse value (coarse 0, ratio 0.5, becomes 1); halving
        needs an even coarse value (or 1, which becomes 0). Fixed-frequency operators stay.

        Raises:
            DX7Error: a ratio cannot be moved exactly within the DX7's coarse range.
        """
        coarse = list(self.coarse)
        for _ in range(abs(int(octaves))):
            for i in range(6):
                if self.mode[i]:
                    continue
                c = coarse[i]
                if octaves > 0:
                    new = 1 if c == 0 else 2 * c
                else:
                    new = 0 if c == 1 else c // 2 if c % 2 == 0 and c > 0 else None
                if new is None or new > 31:
                    raise DX7Error(f"{self.describe()}: OP{i + 1}'s ratio cannot be moved {octaves:+d} octave(s) "
                                   "exactly")
                coarse[i] = new
        return FixedConfig(self.algorithm, self.mode, tuple(coarse), self.fine, self.detune, self.feedback, self.name)

    def scaled(self, factor: float) -> "FixedConfig":
        """This configuration with every ratio-mode operator's ratio multiplied by ``factor``
        (exactly: each new ratio must be a DX7 coarse/fine setting; the one with the lowest fine
        value is taken). Fixed-frequency operators and detune stay.

        It plays, at a note pitch ``f``, what this configuration plays at ``f * factor``: e.g.
        ROM1A's CHIMES (carriers at 2.5, 3 and 4 times its key) scaled by 0.4 has its carriers at
        1, 1.2 and 1.6 times the pitch a tracker hears (its 2.5 partial).

        Raises:
            DX7Error: ``factor`` is not > 0, or a ratio has no exact DX7 setting.
        """
        if not (np.isfinite(factor) and factor > 0):
            raise DX7Error(f"a ratio factor must be > 0, got {factor!r}")
        coarse, fine = list(self.coarse), list(self.fine)
        table = _ratio_table()
        for i in range(6):
            if self.mode[i]:
                continue
            target = self.ratios[i] * factor
            hit = np.flatnonzero(np.abs(table - target) <= 1e-9 * target)
            if not len(hit):
                raise DX7Error(f"{self.describe()}: OP{i + 1}'s ratio {self.ratios[i]:g} times {factor:g} "
                               "has no exact DX7 setting")
            coarse[i], fine[i] = divmod(int(min(hit, key=lambda k: (k % 100, k))), 100)
        return FixedConfig(self.algorithm, self.mode, tuple(coarse), tuple(fine), self.detune, self.feedback,
                           self.name)

    # -- derived -----------------------------------------------------------------------------
    @property
    def algorithm_spec(self) -> Algorithm:
        return get_algorithm(self.algorithm)

    @property
    def key(self) -> tuple:
        """Identity of the configuration (everything but :attr:`name`)."""
        return (self.algorithm, self.mode, self.coarse, self.fine, self.detune, self.feedback)

    @property
    def is_fixed(self) -> tuple[bool, ...]:
        return tuple(m == 1 for m in self.mode)

    @property
    def ratios(self) -> tuple[float, ...]:
        """Frequency ratio per operator (meaningful for ratio-mode operators; undetuned)."""
        return tuple(float(r) for r in frequency_ratio(np.array(self.coarse), np.array(self.fine)))

    @property
    def fixed_hz(self) -> tuple[float, ...]:
        """Frequency in Hz per operator if it were in fixed mode (undetuned)."""
        return tuple(float(f) for f in fixed_frequency(np.array(self.coarse), np.array(self.fine)))

    def frequencies(self, f0_hz) -> np.ndarray:
        """Operator frequencies (Hz) for fundamentals ``f0_hz``, detune included.

        Args:
            f0_hz: fundamental(s) in Hz (> 0), any shape.

        Returns:
            float64 array ``f0_hz.shape + (6,)``, OP1..OP6; fixed operators ignore ``f0_hz``.
        """
        f0 = np.asarray(f0_hz, dtype=np.float64)[..., None]
        ratio = np.array(self.ratios) * detune_ratio(np.array(self.detune), f0)
        fixed = np.array(self.fixed_hz) * detune_ratio(np.array(self.detune), f0, fixed=True)
        return np.where(np.array(self.is_fixed), fixed, f0 * ratio)

    def describe(self) -> str:
        """One line, e.g. ``alg 2 | ratios 1, 1, 1, 1, 3, 14 | fb 7``."""
        parts = []
        for i in range(6):
            parts.append(f"{self.fixed_hz[i]:g}Hz" if self.mode[i] else f"{self.ratios[i]:g}")
        return f"alg {self.algorithm} | ratios {', '.join(parts)} | fb {self.feedback}"
