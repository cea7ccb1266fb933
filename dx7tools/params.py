"""The DX7 voice parameter table: the single description of the voice layout.

One row per voice parameter (155 rows) gives its key, its label, its offset in the unpacked
single-voice format (VCED, which is also its DX7 parameter-change number in group 0), where it
sits in the packed 128-byte cartridge format (VMEM: byte, bit shift, bit width), its range and
its INIT VOICE value. Unpacking, packing, validation, parameter-change messages, ``show`` and the
docs table (:func:`markdown_table`) are all driven by this table; nothing else in the project
knows the byte layout.

Source of the layout: Yamaha DX7 Operation Manual, "DX7 Data Format" (SysEx bulk data for
1 voice, format 0, and for 32 voices, format 9), cross-checked in the tests against dexed-py.
Operators are stored OP6 first in both formats; keys and every API here use OP1..OP6 numbering.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VCED_SIZE = 155
"""Bytes of one unpacked voice (VCED), without the operator on/off byte that some tools append."""
VMEM_SIZE = 128
"""Bytes of one packed voice (VMEM) in a 32-voice cartridge."""
NAME_LENGTH = 10
N_OPERATORS = 6

_OP_VCED_STRIDE = 21
_OP_VMEM_STRIDE = 17


@dataclass(frozen=True)
class Param:
    """One voice parameter.

    Attributes:
        key: identifier, e.g. ``"op1_output_level"``, ``"algorithm"``, ``"name_3"``.
        label: what the DX7 calls it, e.g. ``"OP1 OUTPUT LEVEL"``.
        vced: byte offset in the 155-byte VCED voice; also the parameter-change number.
        vmem_byte: byte offset in the 128-byte VMEM voice.
        vmem_shift: bit position of the field's lowest bit in that byte.
        bits: width of the field in the packed byte.
        max: largest valid value (the minimum is always 0).
        init: value in the DX7's INIT VOICE.
        operator: 1..6 for operator parameters, ``None`` for voice-wide ones.
        field: the key without the operator prefix (``"output_level"``).
        display_offset: added when showing the value (the algorithm is stored 0-31, shown 1-32).
    """

    key: str
    label: str
    vced: int
    vmem_byte: int
    vmem_shift: int
    bits: int
    max: int
    init: int
    operator: int | None
    field: str
    display_offset: int = 0

    @property
    def field_mask(self) -> int:
        return (1 << self.bits) - 1


# Per-operator fields: (field, label, vced offset, vmem offset, shift, bits, max, init).
# Offsets are relative to the operator's block (21 bytes in VCED, 17 in VMEM).
_OPERATOR_FIELDS = (
    ("eg_rate_1", "EG RATE 1", 0, 0, 0, 7, 99, 99),
    ("eg_rate_2", "EG RATE 2", 1, 1, 0, 7, 99, 99),
    ("eg_rate_3", "EG RATE 3", 2, 2, 0, 7, 99, 99),
    ("eg_rate_4", "EG RATE 4", 3, 3, 0, 7, 99, 99),
    ("eg_level_1", "EG LEVEL 1", 4, 4, 0, 7, 99, 99),
    ("eg_level_2", "EG LEVEL 2", 5, 5, 0, 7, 99, 99),
    ("eg_level_3", "EG LEVEL 3", 6, 6, 0, 7, 99, 99),
    ("eg_level_4", "EG LEVEL 4", 7, 7, 0, 7, 99, 0),
    ("breakpoint", "KBD LEV SCL BRK PT", 8, 8, 0, 7, 99, 39),
    ("left_depth", "KBD LEV SCL LFT DEPTH", 9, 9, 0, 7, 99, 0),
    ("right_depth", "KBD LEV SCL RHT DEPTH", 10, 10, 0, 7, 99, 0),
    ("left_curve", "KBD LEV SCL LFT CURVE", 11, 11, 0, 2, 3, 0),
    ("right_curve", "KBD LEV SCL RHT CURVE", 12, 11, 2, 2, 3, 0),
    ("rate_scaling", "KBD RATE SCALING", 13, 12, 0, 3, 7, 0),
    ("amp_mod_sensitivity", "AMP MOD SENSITIVITY", 14, 13, 0, 2, 3, 0),
    ("velocity_sensitivity", "KEY VEL SENSITIVITY", 15, 13, 2, 3, 7, 0),
    ("output_level", "OUTPUT LEVEL", 16, 14, 0, 7, 99, 0),
    ("mode", "OSC MODE", 17, 15, 0, 1, 1, 0),
    ("coarse", "OSC FREQ COARSE", 18, 15, 1, 5, 31, 1),
    ("fine", "OSC FREQ FINE", 19, 16, 0, 7, 99, 0),
    ("detune", "OSC DETUNE", 20, 12, 3, 4, 14, 7),
)

# Voice-wide fields: (key, label, vced, vmem byte, shift, bits, max, init).
_VOICE_FIELDS = (
    ("pitch_eg_rate_1", "PITCH EG RATE 1", 126, 102, 0, 7, 99, 99),
    ("pitch_eg_rate_2", "PITCH EG RATE 2", 127, 103, 0, 7, 99, 99),
    ("pitch_eg_rate_3", "PITCH EG RATE 3", 128, 104, 0, 7, 99, 99),
    ("pitch_eg_rate_4", "PITCH EG RATE 4", 129, 105, 0, 7, 99, 99),
    ("pitch_eg_level_1", "PITCH EG LEVEL 1", 130, 106, 0, 7, 99, 50),
    ("pitch_eg_level_2", "PITCH EG LEVEL 2", 131, 107, 0, 7, 99, 50),
    ("pitch_eg_level_3", "PITCH EG LEVEL 3", 132, 108, 0, 7, 99, 50),
    ("pitch_eg_level_4", "PITCH EG LEVEL 4", 133, 109, 0, 7, 99, 50),
    ("algorithm", "ALGORITHM", 134, 110, 0, 5, 31, 0),
    ("feedback", "FEEDBACK", 135, 111, 0, 3, 7, 0),
    ("osc_key_sync", "OSC KEY SYNC", 136, 111, 3, 1, 1, 1),
    ("lfo_speed", "LFO SPEED", 137, 112, 0, 7, 99, 35),
    ("lfo_delay", "LFO DELAY", 138, 113, 0, 7, 99, 0),
    ("lfo_pitch_mod_depth", "LFO PITCH MOD DEPTH", 139, 114, 0, 7, 99, 0),
    ("lfo_amp_mod_depth", "LFO AMP MOD DEPTH", 140, 115, 0, 7, 99, 0),
    ("lfo_key_sync", "LFO KEY SYNC", 141, 116, 0, 1, 1, 1),
    ("lfo_waveform", "LFO WAVE", 142, 116, 1, 3, 5, 0),
    ("pitch_mod_sensitivity", "PITCH MOD SENSITIVITY", 143, 116, 4, 3, 7, 3),
    ("transpose", "TRANSPOSE", 144, 117, 0, 7, 48, 24),
) + tuple(
    # Name characters: ASCII 32-127 on the DX7 display (92 shows as a yen sign, 126/127 as arrows).
    (f"name_{i + 1}", f"VOICE NAME CHAR {i + 1}", 145 + i, 118 + i, 0, 7, 127, ord("INIT VOICE"[i]))
    for i in range(NAME_LENGTH)
)


def _build_table() -> tuple[Param, ...]:
    rows: list[Param] = []
    for block in range(N_OPERATORS):
        operator = N_OPERATORS - block  # stored OP6 first
        for field, label, vced, vmem, shift, bits, vmax, init in _OPERATOR_FIELDS:
            if field == "output_level" and operator == 1:
                init = 99  # INIT VOICE sounds OP1 alone
            rows.append(
                Param(
                    key=f"op{operator}_{field}",
                    label=f"OP{operator} {label}",
                    vced=block * _OP_VCED_STRIDE + vced,
                    vmem_byte=block * _OP_VMEM_STRIDE + vmem,
                    vmem_shift=shift,
                    bits=bits,
                    max=vmax,
                    init=init,
                    operator=operator,
                    field=field,
                )
            )
    for key, label, vced, vmem, shift, bits, vmax, init in _VOICE_FIELDS:
        rows.append(
            Param(key, label, vced, vmem, shift, bits, vmax, init, None, key, 1 if key == "algorithm" else 0)
        )
    rows.sort(key=lambda p: p.vced)
    return tuple(rows)


PARAMETERS: tuple[Param, ...] = _build_table()
"""All 155 voice parameters, in VCED order (``PARAMETERS[i].vced == i``)."""

BY_KEY: dict[str, Param] = {p.key: p for p in PARAMETERS}
OPERATOR_FIELD_NAMES: tuple[str, ...] = tuple(f[0] for f in _OPERATOR_FIELDS)
NAME_SLICE = slice(BY_KEY["name_1"].vced, BY_KEY["name_10"].vced + 1)

# Column views of the table, for vectorised packing and unpacking of whole banks.
VMEM_BYTE = np.array([p.vmem_byte for p in PARAMETERS], dtype=np.intp)
VMEM_SHIFT = np.array([p.vmem_shift for p in PARAMETERS], dtype=np.uint8)
FIELD_MASK = np.array([p.field_mask for p in PARAMETERS], dtype=np.uint8)
MAXIMUM = np.array([p.max for p in PARAMETERS], dtype=np.uint8)
INIT_VCED = np.array([p.init for p in PARAMETERS], dtype=np.uint8)

# Packing sums the shifted fields of each packed byte; they never overlap, so a sum is an OR.
_PACK_ORDER = np.argsort(VMEM_BYTE, kind="stable")
_PACK_STARTS = np.flatnonzero(np.r_[True, np.diff(VMEM_BYTE[_PACK_ORDER]) != 0])
# Bits of each packed byte that carry a field; the others are "don't care" in the DX7 spec.
USED_BITS = np.zeros(VMEM_SIZE, dtype=np.uint8)
for _p in PARAMETERS:
    USED_BITS[_p.vmem_byte] |= _p.field_mask << _p.vmem_shift
assert len(PARAMETERS) == VCED_SIZE and all(p.vced == i for i, p in enumerate(PARAMETERS))
assert np.all(USED_BITS > 0) and len(_PACK_STARTS) == VMEM_SIZE  # every packed byte is described


def unpack(packed: np.ndarray) -> np.ndarray:
    """Packed voices to unpacked ones, field by field as the table says.

    Args:
        packed: uint8 array of shape ``(..., 128)`` (VMEM voices).

    Returns:
        uint8 array of shape ``(..., 155)`` (VCED voices). Bits outside each field are dropped
        (they are "don't care" in the DX7 spec); values may still exceed ``Param.max`` —
        see :func:`out_of_range`.
    """
    packed = np.asarray(packed, dtype=np.uint8)
    return (packed[..., VMEM_BYTE] >> VMEM_SHIFT) & FIELD_MASK


def pack(vced: np.ndarray) -> np.ndarray:
    """Unpacked voices to packed ones; the inverse of :func:`unpack` for valid voices.

    Args:
        vced: uint8 array of shape ``(..., 155)`` with every value within its field width.

    Returns:
        uint8 array of shape ``(..., 128)``.
    """
    vced = np.asarray(vced, dtype=np.uint8)
    shifted = ((vced & FIELD_MASK) << VMEM_SHIFT)[..., _PACK_ORDER]
    return np.add.reduceat(shifted, _PACK_STARTS, axis=-1).astype(np.uint8)


def out_of_range(vced: np.ndarray) -> np.ndarray:
    """Boolean mask of values above their parameter's maximum, shape like ``vced``."""
    return np.asarray(vced) > MAXIMUM


def clamp(vced: np.ndarray) -> np.ndarray:
    """Values masked into the DX7's range: each value above its maximum becomes the maximum."""
    return np.minimum(np.asarray(vced, dtype=np.uint8), MAXIMUM)


def parameter_change(key: str, value: int, channel: int = 1) -> bytes:
    """A DX7 voice parameter-change SysEx message: ``F0 43 1n gp pp vv F7``.

    Args:
        key: parameter key (see :data:`BY_KEY`), e.g. ``"op1_output_level"``.
        value: raw stored value (the algorithm 0-31, not 1-32).
        channel: MIDI channel 1-16.

    The parameter number is the VCED offset; numbers above 127 carry their top bit in the
    group byte (group 0 = voice parameters), as the DX7 manual's format table says.
    """
    from .errors import DX7Error

    if key not in BY_KEY:
        raise DX7Error(f"unknown voice parameter {key!r}")
    param = BY_KEY[key]
    if not 0 <= value <= param.max:
        raise DX7Error(f"{key} must be 0-{param.max}, got {value}")
    if not 1 <= channel <= 16:
        raise DX7Error(f"MIDI channel must be 1-16, got {channel}")
    number = param.vced
    return bytes([0xF0, 0x43, 0x10 | (channel - 1), number >> 7, number & 0x7F, value, 0xF7])


def markdown_table() -> str:
    """The parameter table as Markdown (for the docs), generated from :data:`PARAMETERS`."""
    lines = [
        "| VCED / param # | key | label | VMEM byte | bits | range |",
        "|---|---|---|---|---|---|",
    ]
    for p in PARAMETERS:
        hi = p.vmem_shift + p.bits - 1
        bits = f"{p.vmem_shift}" if p.bits == 1 else f"{hi}..{p.vmem_shift}"
        lo, hi_v = p.display_offset, p.max + p.display_offset
        lines.append(f"| {p.vced} | `{p.key}` | {p.label} | {p.vmem_byte} | {bits} | {lo}-{hi_v} |")
    return "\n".join(lines)
