"""The parameter table: layout invariants, pack/unpack, parameter changes."""

from __future__ import annotations

import numpy as np
import pytest

from dx7tools import DX7Error, Voice, params
from tests.conftest import random_vced


def test_table_has_every_vced_byte_once_in_order():
    assert len(params.PARAMETERS) == 155
    assert [p.vced for p in params.PARAMETERS] == list(range(155))
    assert len(params.BY_KEY) == 155


def test_packed_fields_never_overlap_and_cover_every_byte():
    used = np.zeros(128, dtype=np.int64)
    for p in params.PARAMETERS:
        bits = p.field_mask << p.vmem_shift
        assert used[p.vmem_byte] & bits == 0, p.key
        assert bits < 0x80, f"{p.key} reaches bit 7"
        assert p.max <= p.field_mask, p.key
        used[p.vmem_byte] |= bits
    assert np.all(used > 0)


def test_operators_are_stored_op6_first():
    assert params.BY_KEY["op6_eg_rate_1"].vced == 0
    assert params.BY_KEY["op1_eg_rate_1"].vced == 105
    assert params.BY_KEY["op1_output_level"].vced == 121
    assert params.BY_KEY["op6_output_level"].vmem_byte == 14
    assert params.BY_KEY["op1_output_level"].vmem_byte == 5 * 17 + 14


@pytest.mark.parametrize(
    "key, vced, vmem, shift, bits",
    [
        ("algorithm", 134, 110, 0, 5),
        ("feedback", 135, 111, 0, 3),
        ("osc_key_sync", 136, 111, 3, 1),
        ("lfo_waveform", 142, 116, 1, 3),
        ("pitch_mod_sensitivity", 143, 116, 4, 3),
        ("transpose", 144, 117, 0, 7),
        ("op6_detune", 20, 12, 3, 4),
        ("op6_coarse", 18, 15, 1, 5),
        ("op6_right_curve", 12, 11, 2, 2),
        ("op6_velocity_sensitivity", 15, 13, 2, 3),
        ("name_1", 145, 118, 0, 7),
    ],
)
def test_known_layout_facts(key, vced, vmem, shift, bits):
    # From the DX7 manual's data format tables.
    p = params.BY_KEY[key]
    assert (p.vced, p.vmem_byte, p.vmem_shift, p.bits) == (vced, vmem, shift, bits)


def test_pack_unpack_round_trip_is_byte_identical(rng):
    vced = random_vced(rng, 2000)
    packed = params.pack(vced)
    assert packed.shape == (2000, 128)
    assert np.all(packed < 0x80)
    assert np.array_equal(params.unpack(packed), vced)
    assert np.array_equal(params.pack(params.unpack(packed)), packed)


def test_unpack_drops_dont_care_bits(rng):
    packed = params.pack(random_vced(rng, 10))
    noisy = packed | (~params.USED_BITS & 0x7F)
    assert np.array_equal(params.unpack(noisy), params.unpack(packed))


def test_init_voice_matches_the_dx7():
    v = Voice.init()
    assert v.name == "INIT VOICE"
    assert v.algorithm == 1 and v.feedback == 0
    assert [op.output_level for op in v.operators] == [99, 0, 0, 0, 0, 0]
    assert v["transpose"] == 24 and v["op3_breakpoint"] == 39 and v["op2_detune"] == 7


def test_parameter_change_messages():
    assert params.parameter_change("op6_eg_rate_1", 50) == bytes([0xF0, 0x43, 0x10, 0x00, 0x00, 50, 0xF7])
    # numbers above 127 carry their top bit in the group byte
    assert params.parameter_change("algorithm", 31, channel=16) == bytes([0xF0, 0x43, 0x1F, 0x01, 6, 31, 0xF7])
    with pytest.raises(DX7Error, match="0-99"):
        params.parameter_change("op1_output_level", 100)
    with pytest.raises(DX7Error, match="channel"):
        params.parameter_change("op1_output_level", 1, channel=0)
    with pytest.raises(DX7Error, match="unknown"):
        params.parameter_change("volume", 1)


def test_clamp_and_out_of_range():
    row = params.INIT_VCED.copy()
    row[params.BY_KEY["op1_output_level"].vced] = 120
    assert params.out_of_range(row).sum() == 1
    assert params.clamp(row)[params.BY_KEY["op1_output_level"].vced] == 99


def test_markdown_table_is_generated_from_the_table():
    md = params.markdown_table()
    assert md.count("\n") == 155 + 1
    assert "| 134 | `algorithm` | ALGORITHM | 110 | 4..0 | 1-32 |" in md


def test_voice_rejects_out_of_range_values():
    row = params.INIT_VCED.astype(np.int64)
    row[params.BY_KEY["feedback"].vced] = 8
    with pytest.raises(DX7Error, match="feedback must be 0-7"):
        Voice(row)
    with pytest.raises(DX7Error, match="155"):
        Voice(b"\x00" * 100)
    with pytest.raises(DX7Error, match="op2_output_level must be 0-99, got -1"):
        Voice.init().replace(op2_output_level=-1)
    with pytest.raises(DX7Error, match="op2_output_level must be 0-99, got 300"):
        Voice.init().replace(op2_output_level=300)


def test_voice_accessors_and_names():
    v = Voice.init().replace(op2_mode=1, op2_coarse=2, op2_fine=0, op3_coarse=0, op3_fine=50).with_name("Hello")
    assert v.name == "Hello" and v.raw_name == b"Hello     "
    assert v.ratios[1] is None and v.fixed_hz[1] == pytest.approx(100.0)
    assert v.ratios[2] == pytest.approx(0.75)
    assert v.op(3).coarse == 0 and v["op3_fine"] == 50
    assert Voice(v.to_vced()) == v and Voice.from_vmem(v.to_vmem()) == v
    with pytest.raises(DX7Error):
        v.with_name("much too long name")
    with pytest.raises(DX7Error):
        v.with_name("tab\there")
    with pytest.raises(DX7Error):
        v.op(7)
