"""Fuzzing the reader: thousands of generated and mutated inputs end in voices or a DX7Error."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dx7tools import DX7Error, Voice, parse_bytes, vced_message, vmem_message
from tests.conftest import random_voices

_rng = np.random.default_rng(7)
SEEDS = [vmem_message(random_voices(_rng, 32)), vced_message(Voice.init())]
SEEDS.append(SEEDS[1] + SEEDS[0])
SEEDS.append(b"".join(v.to_vmem() for v in random_voices(_rng, 32)))
SEEDS.append(bytes([0xF0, 0x41, 0x10, 0x42, 0x12, 0xF7]) + SEEDS[0])

FUZZ = settings(max_examples=2500, suppress_health_check=list(HealthCheck), deadline=None)


def parse_or_reject(data: bytes) -> None:
    try:
        cart = parse_bytes(data, "fuzz.syx")
    except DX7Error as exc:
        text = str(exc)
        assert text.startswith("fuzz.syx: ") and "\n" not in text
        return
    assert cart.voices, "a successful read yields voices"
    for record in cart.voices:
        # whatever was read is a valid voice that survives the round trip
        assert Voice.from_vmem(record.voice.to_vmem()) == record.voice


@FUZZ
@given(st.binary(max_size=5000))
def test_random_bytes(data):
    parse_or_reject(data)


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.integers(0, 3))
        pos = draw(st.integers(0, len(data) - 1)) if data else 0
        if kind == 0 and data:  # flip / overwrite a byte, often with a status byte
            data[pos] = draw(st.one_of(st.integers(0, 255), st.sampled_from([0xF0, 0xF7, 0x80, 0x43, 0x7F])))
        elif kind == 1:  # truncate
            del data[pos:]
        elif kind == 2 and data:  # delete a run
            del data[pos : pos + draw(st.integers(1, 64))]
        else:  # insert junk
            data[pos:pos] = draw(st.binary(max_size=32))
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_dumps(data):
    parse_or_reject(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(SEEDS), min_size=1, max_size=4))
def test_concatenated_valid_dumps_always_read(parts):
    data = b"".join(parts)
    if data[0] != 0xF0:  # a raw bank followed by SysEx is not a format; keep raw banks alone
        data = parts[0]
    cart = parse_bytes(data)
    assert len(cart.voices) >= 1
