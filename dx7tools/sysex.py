"""Reading and writing DX7 voice data: 32-voice cartridges (VMEM), single voices (VCED), raw banks.

Readers accept, in one file:
- SysEx bulk dumps ``F0 43 0n 09 20 00 <4096 bytes> <checksum> F7`` (32 packed voices) and
  ``F0 43 0n 00 01 1B <155 bytes> <checksum> F7`` (one voice), any MIDI channel nibble ``n``,
  any number of them, with unrelated SysEx messages (other makers, parameter changes, other
  Yamaha formats) in between, which are skipped;
- raw packed voices without framing: any multiple of 128 bytes (a 4096-byte bank, hexter's
  16384-byte ``.dx7`` files of 4 banks, 6144-byte files of 48 voices);
- a raw unpacked voice of 155 bytes (156 with the operator on/off byte, as dexed-py writes).

Repairs are warnings, not errors (as Dexed does): a stale checksum loads; a value above its
parameter's range is masked into range; unused bits of packed bytes are dropped (the DX7 spec
calls them "don't care"). Everything else wrong with a file raises :class:`DX7Error`, whose
message names the file, the problem and the byte offset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import params
from .errors import DX7Error
from .files import atomic_write_bytes
from .voice import Voice

YAMAHA = 0x43
SYSEX_START, SYSEX_END = 0xF0, 0xF7
VOICES_PER_BANK = 32
BANK_DATA_SIZE = VOICES_PER_BANK * params.VMEM_SIZE  # 4096

# Bulk-dump formats this reader knows: format byte -> (what, data size in bytes).
_FORMATS = {0: ("single voice (VCED)", params.VCED_SIZE), 9: ("32-voice bank (VMEM)", BANK_DATA_SIZE)}
_HEADER_SIZE = 6  # F0 43 0n ff hh ll
VMEM_MESSAGE_SIZE = _HEADER_SIZE + BANK_DATA_SIZE + 2  # 4104
VCED_MESSAGE_SIZE = _HEADER_SIZE + params.VCED_SIZE + 2  # 163


@dataclass(frozen=True)
class VoiceRecord:
    """A voice read from a file, with where it was found.

    ``bank`` counts 32-voice banks (and single-voice dumps) from 0 in file order; ``slot`` is the
    voice's position 0-31 in its bank; ``offset`` the byte offset of its data in the file.
    """

    voice: Voice
    bank: int
    slot: int
    offset: int


@dataclass
class Cartridge:
    """Everything a file held: voices in file order, and the repairs made while reading."""

    source: str
    voices: list[VoiceRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped_messages: int = 0


def checksum(data: bytes | np.ndarray) -> int:
    """DX7 bulk-dump checksum: two's complement of the 7-bit sum of the data bytes."""
    return int(-int(np.sum(np.frombuffer(bytes(data), dtype=np.uint8), dtype=np.int64))) & 0x7F


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------


def read_file(path: str | os.PathLike, *, repair_names: bool = False) -> Cartridge:
    """Read every voice from a file (see the module docstring for the formats).

    Args:
        path: file to read.
        repair_names: replace control characters in voice names by spaces (with a warning)
            instead of rejecting the file.

    Raises:
        DX7Error: the file is missing, a directory, unreadable, empty, or not DX7 voice data.
    """
    path = Path(path)
    source = str(path)
    if path.is_dir():
        raise DX7Error("is a directory, not a SysEx file", source)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DX7Error("no such file", source) from None
    except OSError as exc:
        raise DX7Error(f"cannot read: {exc.strerror or exc}", source) from None
    return parse_bytes(data, source, repair_names=repair_names)


def parse_bytes(data: bytes, source: str = "<bytes>", *, repair_names: bool = False) -> Cartridge:
    """Read every voice from bytes; same rules and errors as :func:`read_file`."""
    data = bytes(data)
    cart = Cartridge(source)
    if not data:
        raise DX7Error("empty file", source)
    if data[0] != SYSEX_START and SYSEX_START not in data:
        _parse_raw(data, cart, repair_names)
    elif data[0] != SYSEX_START and len(data) % params.VMEM_SIZE == 0:
        # Whole packed voices without a leading F0: a raw bank, in which an F0 is a bad byte.
        _parse_raw(data, cart, repair_names)
    else:
        _parse_sysex_stream(data, cart, repair_names)
    return cart


def _parse_raw(data: bytes, cart: Cartridge, repair_names: bool) -> None:
    n = len(data)
    if n in (params.VCED_SIZE, params.VCED_SIZE + 1):
        _check_7bit(data, cart.source, "raw single voice")
        _add_vced(np.frombuffer(data[: params.VCED_SIZE], dtype=np.uint8), 0, 0, cart, repair_names)
        return
    if n % params.VMEM_SIZE:
        raise DX7Error(
            f"not SysEx (no F0 status byte) and not a raw packed bank: {n} bytes is not a "
            f"multiple of {params.VMEM_SIZE}",
            cart.source,
        )
    _check_7bit(data, cart.source, "raw packed bank")
    _add_vmem(np.frombuffer(data, dtype=np.uint8), 0, cart, repair_names)


def _first_high_byte(data: bytes) -> int | None:
    """Offset of the first byte with bit 7 set (a MIDI status byte), or ``None``."""
    high = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) & 0x80)
    return int(high[0]) if len(high) else None


def _check_7bit(data: bytes, source: str, what: str) -> None:
    i = _first_high_byte(data)
    if i is not None:
        raise DX7Error(f"byte 0x{data[i]:02X} with bit 7 set inside {what}", source, i)


def _parse_sysex_stream(data: bytes, cart: Cartridge, repair_names: bool) -> None:
    source = cart.source
    other_makers: set[int] = set()
    bank = 0
    pos = data.find(SYSEX_START)
    while pos != -1:
        if len(data) - pos < 4 or data[pos + 1] != YAMAHA or data[pos + 2] & 0xF0:
            # Another maker, a Yamaha parameter change / dump request, or a fragment: skip it.
            if len(data) - pos >= 2 and data[pos + 1] < 0x80 and data[pos + 1] != YAMAHA:
                other_makers.add(data[pos + 1])
            cart.skipped_messages += 1
            pos = data.find(SYSEX_START, pos + 1)
            continue
        fmt = data[pos + 3]
        if fmt not in _FORMATS:
            cart.warnings.append(f"skipped Yamaha bulk dump of format {fmt} at byte {pos} (not DX7 voice data)")
            cart.skipped_messages += 1
            pos = data.find(SYSEX_START, pos + 1)
            continue
        end = _parse_dump(data, pos, fmt, bank, cart, repair_names)
        bank += 1
        pos = data.find(SYSEX_START, end)
    if not cart.voices:
        if other_makers:
            makers = ", ".join(f"0x{m:02X}" for m in sorted(other_makers))
            raise DX7Error(f"no DX7 voice data: SysEx from manufacturer {makers}, not Yamaha (0x43)", source)
        raise DX7Error("no DX7 voice dump found (SysEx present, but no 32-voice or single-voice dump)", source)


def _parse_dump(data: bytes, pos: int, fmt: int, bank: int, cart: Cartridge, repair_names: bool) -> int:
    """Parse one Yamaha voice dump starting at ``pos``; return the offset after its F7."""
    source = cart.source
    what, size = _FORMATS[fmt]
    if len(data) < pos + _HEADER_SIZE:
        raise DX7Error(f"truncated {what} dump: header cut off", source, pos)
    count = (data[pos + 4] << 7) | data[pos + 5]
    if data[pos + 4] & 0x80 or data[pos + 5] & 0x80:
        raise DX7Error(f"truncated {what} dump: header cut off", source, pos)
    if count != size:
        raise DX7Error(
            f"header is inconsistent: format {fmt} is a {what} of {size} bytes, but the byte count says {count}",
            source,
            pos + 4,
        )
    start = pos + _HEADER_SIZE
    payload = data[start : start + size]
    i = _first_high_byte(payload)
    if i is not None:
        if payload[i] in (SYSEX_START, SYSEX_END):
            raise DX7Error(
                f"truncated {what} dump: it ends after {i} of {size} data bytes "
                f"(expected {size + _HEADER_SIZE + 2} bytes in all)",
                source,
                start + i,
            )
        raise DX7Error(f"byte 0x{payload[i]:02X} with bit 7 set inside {what} dump", source, start + i)
    if len(payload) < size:
        raise DX7Error(
            f"truncated {what} dump: file ends after {len(payload)} of {size} data bytes",
            source,
            len(data),
        )
    sum_at, end_at = start + size, start + size + 1
    if end_at >= len(data):
        raise DX7Error(f"truncated {what} dump: checksum or F7 missing at the end of the file", source, len(data))
    if data[sum_at] & 0x80 or data[end_at] != SYSEX_END:
        bad = sum_at if data[sum_at] & 0x80 else end_at
        raise DX7Error(
            f"{what} dump is not terminated where its header says: expected checksum and F7 at "
            f"bytes {sum_at}-{end_at}, found 0x{data[sum_at]:02X} 0x{data[end_at]:02X}",
            source,
            bad,
        )
    expected = checksum(payload)
    if data[sum_at] != expected:
        cart.warnings.append(
            f"{what} dump at byte {pos}: stale checksum 0x{data[sum_at]:02X} "
            f"(data sums to 0x{expected:02X}); loaded anyway"
        )
    arr = np.frombuffer(payload, dtype=np.uint8)
    if fmt == 9:
        _add_vmem(arr, start, cart, repair_names, first_bank=bank)
    else:
        _add_vced(arr, bank, start, cart, repair_names)
    return end_at + 1


def _add_vmem(arr: np.ndarray, base: int, cart: Cartridge, repair_names: bool, first_bank: int = 0) -> None:
    """Unpack a run of packed voices (32 to a bank) and add them."""
    packed = arr.reshape(-1, params.VMEM_SIZE)
    index = np.arange(len(packed))
    offsets = base + index * params.VMEM_SIZE
    name_offsets = offsets + params.BY_KEY["name_1"].vmem_byte
    _add_rows(params.unpack(packed), first_bank + index // VOICES_PER_BANK, index % VOICES_PER_BANK,
              offsets, name_offsets, cart, repair_names)


def _add_vced(row: np.ndarray, bank: int, base: int, cart: Cartridge, repair_names: bool) -> None:
    offsets = np.array([base])
    _add_rows(row[None, :], np.array([bank]), np.array([0]), offsets, offsets + params.NAME_SLICE.start,
              cart, repair_names)


def _add_rows(vced: np.ndarray, banks: np.ndarray, slots: np.ndarray, offsets: np.ndarray,
              name_offsets: np.ndarray, cart: Cartridge, repair_names: bool) -> None:
    """Validate unpacked voices (whole arrays at once: this is the hot path) and add them."""
    bad = params.out_of_range(vced)
    if bad.any():
        for v, i in zip(*np.nonzero(bad)):
            p = params.PARAMETERS[i]
            name = bytes(vced[v, params.NAME_SLICE]).decode("ascii", "replace").rstrip()
            cart.warnings.append(
                f"bank {banks[v] + 1} voice {slots[v] + 1} {name!r}: {p.key} = {int(vced[v, i])} "
                f"is above {p.max}; masked to {p.max}"
            )
        vced = params.clamp(vced)
    names = vced[:, params.NAME_SLICE]
    control = names < 32
    if control.any():
        v, i = (int(x[0]) for x in np.nonzero(control))
        label = f"bank {banks[v] + 1} voice {slots[v] + 1}"
        if not repair_names:
            raise DX7Error(
                f"{label}: voice name has control character 0x{int(names[v, i]):02X} "
                f"(use --repair-names to replace it by a space)",
                cart.source,
                int(name_offsets[v]) + i,
            )
        for v in np.flatnonzero(control.any(axis=1)):
            cart.warnings.append(
                f"bank {banks[v] + 1} voice {slots[v] + 1}: control characters in the voice name replaced by spaces"
            )
        vced = vced.copy()
        vced[:, params.NAME_SLICE] = np.where(control, 32, names)
    for row, bank, slot, offset in zip(vced, banks.tolist(), slots.tolist(), offsets.tolist()):
        cart.voices.append(VoiceRecord(Voice._trusted(row), bank, slot, offset))


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------


def _channel_nibble(channel: int) -> int:
    if not 1 <= channel <= 16:
        raise DX7Error(f"MIDI channel must be 1-16, got {channel}")
    return channel - 1


def vmem_message(voices: Sequence[Voice], channel: int = 1) -> bytes:
    """A 32-voice bulk dump (4104 bytes); fewer than 32 voices are padded with INIT VOICE."""
    voices = list(voices)
    if len(voices) > VOICES_PER_BANK:
        raise DX7Error(f"a cartridge holds at most {VOICES_PER_BANK} voices, got {len(voices)}")
    voices += [Voice.init()] * (VOICES_PER_BANK - len(voices))
    payload = params.pack(np.stack([v.values for v in voices])).tobytes()
    header = bytes([SYSEX_START, YAMAHA, _channel_nibble(channel), 9, 0x20, 0x00])
    return header + payload + bytes([checksum(payload), SYSEX_END])


def vced_message(voice: Voice, channel: int = 1) -> bytes:
    """A single-voice bulk dump (163 bytes)."""
    payload = voice.to_vced()
    header = bytes([SYSEX_START, YAMAHA, _channel_nibble(channel), 0, 0x01, 0x1B])
    return header + payload + bytes([checksum(payload), SYSEX_END])


def write_cartridge(path: str | os.PathLike, voices: Iterable[Voice], channel: int = 1) -> None:
    """Write a 32-voice cartridge (VMEM bulk dump) atomically."""
    atomic_write_bytes(path, vmem_message(list(voices), channel))


def write_single(path: str | os.PathLike, voice: Voice, channel: int = 1) -> None:
    """Write one voice as a single-voice (VCED) bulk dump atomically."""
    atomic_write_bytes(path, vced_message(voice, channel))
