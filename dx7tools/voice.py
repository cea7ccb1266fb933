"""A DX7 voice: 155 parameter values with named, table-driven access.

A :class:`Voice` is an immutable value holding the unpacked VCED bytes. Every accessor goes
through :mod:`dx7tools.params`; ``voice["op1_output_level"]`` reads a raw stored value and
``voice.op(1).output_level`` does the same through an operator view (OP1..OP6 numbering).
"""

from __future__ import annotations

import hashlib
from typing import Iterator

import numpy as np

from . import params
from .errors import DX7Error
from .frequency import fixed_frequency, frequency_ratio

# DX7 display characters that differ from ASCII. 126 stays "~" as Dexed shows it.
_DISPLAY_CHARS = {127: "\u2190"}
_CHAR_CODES = {v: k for k, v in _DISPLAY_CHARS.items()}


def decode_name(raw: bytes) -> str:
    """Ten DX7 name bytes to text, trailing spaces removed."""
    return "".join(_DISPLAY_CHARS.get(b, chr(b)) for b in raw).rstrip()


def encode_name(text: str) -> bytes:
    """Text to ten DX7 name bytes (padded with spaces); :class:`DX7Error` if it cannot be shown."""
    if len(text) > params.NAME_LENGTH:
        raise DX7Error(f"voice name {text!r} is longer than {params.NAME_LENGTH} characters")
    codes = []
    for ch in text:
        code = _CHAR_CODES.get(ch, ord(ch))
        if not 32 <= code <= 127:
            raise DX7Error(f"voice name {text!r} has a character the DX7 cannot show: {ch!r}")
        codes.append(code)
    return bytes(codes).ljust(params.NAME_LENGTH, b" ")


class Operator:
    """Read-only view of one operator's parameters: ``voice.op(1).output_level``."""

    __slots__ = ("_voice", "number")

    def __init__(self, voice: "Voice", number: int):
        self._voice = voice
        self.number = number

    def __getattr__(self, field: str) -> int:
        key = f"op{self.number}_{field}"
        if key not in params.BY_KEY:
            raise AttributeError(field)
        return self._voice[key]

    @property
    def is_fixed(self) -> bool:
        return self.mode == 1

    @property
    def ratio(self) -> float | None:
        """Frequency ratio to the note's f0, or ``None`` for a fixed-frequency operator."""
        return None if self.is_fixed else frequency_ratio(self.coarse, self.fine)

    @property
    def fixed_hz(self) -> float | None:
        """Frequency in Hz of a fixed-frequency operator, or ``None`` in ratio mode."""
        return fixed_frequency(self.coarse, self.fine) if self.is_fixed else None

    def to_dict(self) -> dict[str, int]:
        return {field: getattr(self, field) for field in params.OPERATOR_FIELD_NAMES}

    def __repr__(self) -> str:
        return f"Operator({self.number}, {self.to_dict()})"


class Voice:
    """One DX7 voice, stored as its 155 VCED values (raw: the algorithm is 0-31 here).

    Construct from VCED bytes (155, or 156 with a trailing operator on/off byte, which is
    dropped), or with :meth:`from_vmem` / :meth:`init`. Values must be within the table's
    ranges — readers mask bad input into range (with warnings) before building a Voice.
    """

    __slots__ = ("_data",)

    def __init__(self, vced: bytes | bytearray | np.ndarray | list[int]):
        data = np.array(bytearray(vced) if isinstance(vced, (bytes, bytearray)) else vced)
        if data.ndim != 1 or len(data) not in (params.VCED_SIZE, params.VCED_SIZE + 1):
            raise DX7Error(f"a VCED voice has {params.VCED_SIZE} values, got shape {data.shape}")
        data = data[: params.VCED_SIZE]
        if data.min() < 0 or np.any(data > params.MAXIMUM):
            bad = int(np.flatnonzero((data < 0) | (data > params.MAXIMUM))[0])
            p = params.PARAMETERS[bad]
            raise DX7Error(f"{p.key} must be 0-{p.max}, got {int(data[bad])}")
        data = data.astype(np.uint8)
        data.flags.writeable = False
        self._data = data

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def _trusted(cls, values: np.ndarray) -> "Voice":
        """Wrap values already validated against the table (the readers' hot path)."""
        voice = object.__new__(cls)
        data = np.array(values, dtype=np.uint8)
        data.flags.writeable = False
        voice._data = data
        return voice

    @classmethod
    def init(cls) -> "Voice":
        """The DX7's INIT VOICE (OP1 alone, algorithm 1, all envelopes open)."""
        return cls(params.INIT_VCED)

    @classmethod
    def from_vmem(cls, packed: bytes) -> "Voice":
        """From one 128-byte packed voice; values beyond range raise (readers mask them first)."""
        if len(packed) != params.VMEM_SIZE:
            raise DX7Error(f"a packed voice has {params.VMEM_SIZE} bytes, got {len(packed)}")
        return cls(params.unpack(np.frombuffer(bytes(packed), dtype=np.uint8)))

    def replace(self, **changes: int) -> "Voice":
        """A copy with some raw parameter values changed: ``v.replace(op1_output_level=80)``."""
        data = self._data.astype(np.int64)
        for key, value in changes.items():
            if key not in params.BY_KEY:
                raise DX7Error(f"unknown voice parameter {key!r}")
            data[params.BY_KEY[key].vced] = value
        return Voice(data)

    def with_name(self, name: str) -> "Voice":
        data = self._data.copy()
        data[params.NAME_SLICE] = np.frombuffer(encode_name(name), dtype=np.uint8)
        return Voice(data)

    # -- formats ---------------------------------------------------------------------------
    def to_vced(self) -> bytes:
        """The 155 unpacked bytes (the data of a single-voice dump)."""
        return self._data.tobytes()

    def to_vmem(self) -> bytes:
        """The 128 packed bytes (one slot of a 32-voice cartridge)."""
        return params.pack(self._data).tobytes()

    @property
    def values(self) -> np.ndarray:
        """Read-only uint8 array of the 155 raw values in VCED order."""
        return self._data

    @property
    def content_hash(self) -> str:
        """SHA-256 of the VCED bytes (name included): the library's identity of a voice."""
        return hashlib.sha256(self._data.tobytes()).hexdigest()

    # -- named access ----------------------------------------------------------------------
    def __getitem__(self, key: str) -> int:
        try:
            return int(self._data[params.BY_KEY[key].vced])
        except KeyError:
            raise KeyError(f"unknown voice parameter {key!r}") from None

    @property
    def raw_name(self) -> bytes:
        return self._data[params.NAME_SLICE].tobytes()

    @property
    def name(self) -> str:
        return decode_name(self.raw_name)

    @property
    def algorithm(self) -> int:
        """DX7 algorithm number 1-32 (stored 0-31)."""
        return self["algorithm"] + 1

    @property
    def feedback(self) -> int:
        return self["feedback"]

    def op(self, number: int) -> Operator:
        """Operator ``number`` (1-6, OP1 is the DX7's operator 1)."""
        if not 1 <= number <= params.N_OPERATORS:
            raise DX7Error(f"operator must be 1-6, got {number}")
        return Operator(self, number)

    @property
    def operators(self) -> tuple[Operator, ...]:
        """The six operators, OP1 first."""
        return tuple(Operator(self, n) for n in range(1, params.N_OPERATORS + 1))

    @property
    def ratios(self) -> list[float | None]:
        """Frequency ratios OP1..OP6; ``None`` where the operator is fixed-frequency."""
        return [op.ratio for op in self.operators]

    @property
    def fixed_hz(self) -> list[float | None]:
        """Fixed frequencies in Hz OP1..OP6; ``None`` where the operator is in ratio mode."""
        return [op.fixed_hz for op in self.operators]

    def items(self) -> Iterator[tuple[params.Param, int]]:
        """(parameter, raw value) pairs in VCED order."""
        for p in params.PARAMETERS:
            yield p, int(self._data[p.vced])

    def to_dict(self, include_parameters: bool = True) -> dict:
        """Summary, plus every parameter under its key unless asked not to (algorithm shown 1-32)."""
        data = {
            "name": self.name,
            "algorithm": self.algorithm,
            "ratios": self.ratios,
            "fixed_hz": self.fixed_hz,
            "feedback": self.feedback,
            "hash": self.content_hash,
        }
        if include_parameters:
            data["parameters"] = {p.key: v + p.display_offset for p, v in self.items()}
        return data

    # -- value semantics -------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Voice) and bytes(self._data) == bytes(other._data)

    def __hash__(self) -> int:
        return hash(self._data.tobytes())

    def __repr__(self) -> str:
        return f"Voice({self.name!r}, algorithm={self.algorithm})"
