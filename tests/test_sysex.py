"""SysEx readers and writers: every framing, repairs as warnings, bad input as one DX7Error."""

from __future__ import annotations

import numpy as np
import pytest

from dx7tools import DX7Error, Voice, params, parse_bytes, read_file, vced_message, vmem_message
from dx7tools.sysex import checksum, write_cartridge, write_single
from tests.conftest import random_voices


@pytest.fixture
def voices(rng):
    return random_voices(rng, 32)


@pytest.fixture
def bank(voices):
    return vmem_message(voices)


def names(cart):
    return [r.voice.name for r in cart.voices]


def test_vmem_message_layout(bank, voices):
    assert len(bank) == 4104
    assert bank[:6] == bytes([0xF0, 0x43, 0x00, 0x09, 0x20, 0x00]) and bank[-1] == 0xF7
    assert (sum(bank[6:4102]) + bank[4102]) % 128 == 0
    cart = parse_bytes(bank)
    assert [r.voice for r in cart.voices] == voices and not cart.warnings
    assert [(r.bank, r.slot) for r in cart.voices] == [(0, i) for i in range(32)]


def test_vced_message_layout(voices):
    msg = vced_message(voices[0], channel=5)
    assert len(msg) == 163 and msg[:6] == bytes([0xF0, 0x43, 0x04, 0x00, 0x01, 0x1B])
    assert checksum(msg[6:161]) == msg[161]
    cart = parse_bytes(msg)
    assert [r.voice for r in cart.voices] == [voices[0]]


@pytest.mark.parametrize("channel", [1, 2, 10, 16])
def test_any_channel_nibble(voices, channel):
    assert parse_bytes(vmem_message(voices, channel=channel)).voices[5].voice == voices[5]


def test_short_bank_is_padded_with_init_voice(voices):
    cart = parse_bytes(vmem_message(voices[:3]))
    assert len(cart.voices) == 32
    assert all(r.voice == Voice.init() for r in cart.voices[3:])
    with pytest.raises(DX7Error, match="at most 32"):
        vmem_message(voices + voices[:1])


def test_several_messages_with_unrelated_ones_between(voices):
    roland = bytes([0xF0, 0x41, 0x10, 0x42, 0x12, 0x40, 0x00, 0x7F, 0x00, 0x41, 0xF7])
    param_change = bytes([0xF0, 0x43, 0x10, 0x01, 0x06, 0x05, 0xF7])
    universal = bytes([0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7])
    data = roland + vmem_message(voices) + param_change + b"\x90\x3c\x40" + vced_message(voices[7]) + universal
    data += vmem_message(voices[::-1], channel=3)
    cart = parse_bytes(data)
    assert len(cart.voices) == 65
    assert cart.voices[32].voice == voices[7] and cart.voices[32].bank == 1
    assert cart.voices[33].voice == voices[31] and cart.voices[33].bank == 2
    assert cart.skipped_messages == 3


def test_other_yamaha_formats_are_skipped_with_a_warning(voices):
    other = bytes([0xF0, 0x43, 0x00, 0x05, 0x00, 0x02, 1, 2, 0x7D, 0xF7])
    cart = parse_bytes(other + vmem_message(voices))
    assert len(cart.voices) == 32 and "format 5" in cart.warnings[0]


def test_raw_packed_banks_and_concatenations(voices):
    raw = b"".join(v.to_vmem() for v in voices)
    for n_banks in (1, 4):
        cart = parse_bytes(raw * n_banks)
        assert len(cart.voices) == 32 * n_banks
        assert (cart.voices[-1].bank, cart.voices[-1].slot) == (n_banks - 1, 31)
    assert len(parse_bytes(raw + raw[: 16 * 128]).voices) == 48  # hexter ships 48-voice files


def test_raw_single_voice(voices):
    assert parse_bytes(voices[0].to_vced()).voices[0].voice == voices[0]
    assert parse_bytes(voices[0].to_vced() + b"\x3f").voices[0].voice == voices[0]


def test_stale_checksum_loads_with_a_warning(bank, voices):
    bad = bytearray(bank)
    bad[4102] = (bad[4102] + 1) & 0x7F
    cart = parse_bytes(bytes(bad), "old.syx")
    assert [r.voice for r in cart.voices] == voices
    assert len(cart.warnings) == 1 and "stale checksum" in cart.warnings[0]


def test_out_of_range_values_are_masked_with_a_warning_naming_voice_and_parameter(voices):
    raw = bytearray(b"".join(v.to_vmem() for v in voices))
    level = params.BY_KEY["op1_output_level"]
    raw[4 * 128 + level.vmem_byte] = 120
    raw[4 * 128 + params.BY_KEY["transpose"].vmem_byte] = 100
    cart = parse_bytes(bytes(raw))
    v = cart.voices[4].voice
    assert v.op(1).output_level == 99 and v["transpose"] == 48
    assert len(cart.warnings) == 2
    assert "bank 1 voice 5" in cart.warnings[0] and "op1_output_level = 120" in cart.warnings[0]
    assert voices[4].name in cart.warnings[0]


def test_writers_are_atomic_and_round_trip(tmp_path, voices):
    path = tmp_path / "cart.syx"
    write_cartridge(path, voices)
    assert path.read_bytes() == vmem_message(voices)
    assert [r.voice for r in read_file(path).voices] == voices
    write_single(tmp_path / "one.syx", voices[3], channel=2)
    assert read_file(tmp_path / "one.syx").voices[0].voice == voices[3]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(DX7Error, match="folder does not exist"):
        write_cartridge(tmp_path / "nope" / "x.syx", voices)


# --- bad input: one DX7Error naming the file, the problem, and the offset where it helps -------


def bad(data: bytes, match: str, offset: int | None = None, **kw):
    with pytest.raises(DX7Error, match=match) as info:
        parse_bytes(data, "f.syx", **kw)
    assert str(info.value).startswith("f.syx: ") and "\n" not in str(info.value)
    if offset is not None:
        assert info.value.offset == offset, str(info.value)
    return info.value


def test_empty():
    bad(b"", "empty file")


def test_not_sysex():
    bad(b"hello world, this is text", "not SysEx")
    bad(bytes(1000), "1000 bytes is not a multiple of 128")


def test_wrong_manufacturer():
    roland = bytes([0xF0, 0x41, 0x10, 0x42, 0x12, 0x40, 0x00, 0x7F, 0x00, 0x41, 0xF7])
    bad(roland, r"manufacturer 0x41, not Yamaha")


def test_yamaha_without_voices():
    bad(bytes([0xF0, 0x43, 0x10, 0x01, 0x06, 0x05, 0xF7]), "no DX7 voice dump")


def test_truncated_dump(bank):
    bad(bank[:2000], "truncated .* file ends after 1994 of 4096", offset=2000)
    bad(bank[:4102], "truncated .*checksum or F7 missing")
    bad(bank[:2000] + bank[:100], "truncated .*ends after 1994 of 4096", offset=2000)


def test_bit7_inside_dump(bank):
    data = bytearray(bank)
    data[700] = 0x85
    bad(bytes(data), "0x85 with bit 7 set inside 32-voice bank", offset=700)
    raw = bytearray(bank[6:4102])
    raw[300] = 0x90
    bad(bytes(raw), "bit 7 set inside raw packed bank", offset=300)


def test_header_that_lies(voices):
    msg = bytearray(vmem_message(voices))
    msg[3] = 0  # says "single voice" but carries 4096 bytes and says so in the byte count
    bad(bytes(msg), "header is inconsistent", offset=4)
    msg = bytearray(vmem_message(voices))
    msg[4], msg[5] = 0x01, 0x1B  # byte count of a single voice
    bad(bytes(msg), "header is inconsistent")
    # 4104 bytes whose header announces one voice: no F7 where a single voice would end
    msg = bytearray(vmem_message(voices))
    msg[3:6] = bytes([0, 0x01, 0x1B])
    bad(bytes(msg), "not terminated where its header says", offset=162)


def test_control_characters_in_name(voices):
    raw = bytearray(b"".join(v.to_vmem() for v in voices))
    raw[2 * 128 + 118 + 3] = 0x07
    err = bad(bytes(raw), "bank 1 voice 3: voice name has control character 0x07", offset=2 * 128 + 121)
    assert "--repair-names" in str(err)
    cart = parse_bytes(bytes(raw), repair_names=True)
    assert cart.voices[2].voice.raw_name[3] == 32 and "replaced by spaces" in cart.warnings[0]


def test_file_errors(tmp_path):
    with pytest.raises(DX7Error, match="no such file"):
        read_file(tmp_path / "missing.syx")
    with pytest.raises(DX7Error, match="is a directory"):
        read_file(tmp_path)
    # paths that exist as names but cannot be read, whoever runs the test (root included)
    loop = tmp_path / "loop.syx"
    loop.symlink_to(loop)  # a link to itself: ELOOP
    with pytest.raises(DX7Error, match=r"loop\.syx: cannot read: .+"):
        read_file(loop)
    plain = tmp_path / "plain.syx"
    plain.write_bytes(vced_message(Voice.init()))
    with pytest.raises(DX7Error, match=r"plain\.syx/inner\.syx: cannot read: .+"):  # ENOTDIR
        read_file(plain / "inner.syx")


def test_file_without_read_permission(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("running as root, which reads a file whatever its permissions; "
                    "test_file_errors covers unreadable paths that root cannot read either")
    locked = tmp_path / "locked.syx"
    locked.write_bytes(vced_message(Voice.init()))
    locked.chmod(0)
    try:
        with pytest.raises(DX7Error, match=r"locked\.syx: cannot read: Permission denied"):
            read_file(locked)
    finally:
        locked.chmod(0o600)


def test_every_valid_voice_round_trips_packed_unpacked_packed(rng):
    for v in random_voices(rng, 500):
        assert Voice.from_vmem(v.to_vmem()).to_vmem() == v.to_vmem()
        assert np.array_equal(Voice(v.to_vced()).values, v.values)
