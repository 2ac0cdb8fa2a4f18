"""Primitive encodings and file-list indexes, against captured bytes and round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.constants import NDX_DEL_STATS, NDX_DONE, NDX_FLIST_EOF
from rsyncd_py.protocol.errors import LocalProtocolError, RemoteProtocolError
from rsyncd_py.protocol.ints import (
    Cursor,
    pack_int,
    pack_longint,
    pack_varint,
    pack_varlong,
    pack_vstring,
    read_item,
)
from rsyncd_py.protocol.ndx import NdxDecoder, NdxEncoder


def decode_bytewise(data: bytes, decode):
    """Feed `data` one byte at a time; the decoder must wait, then yield one value."""
    buf = ReceiveBuffer()
    for i, byte in enumerate(data):
        assert read_item(buf, decode) is None or i == len(data)
        buf.extend(bytes([byte]))
    value = read_item(buf, decode)
    assert len(buf) == 0
    return value


# captured from rsync 3.5.0 (rsync-protocol.md A.3)
@pytest.mark.parametrize(
    ("value", "min_bytes", "wire"),
    [(0x1FF, None, "81ff"), (4096, 3, "000010"), (200006, 3, "03460d"), (0, None, "00")],
)
def test_captured_var_encodings(value, min_bytes, wire):
    encoded = pack_varint(value) if min_bytes is None else pack_varlong(value, min_bytes)
    assert encoded.hex() == wire
    if min_bytes is None:
        assert decode_bytewise(encoded, Cursor.varint) == value
    else:
        assert decode_bytewise(encoded, lambda c: c.varlong(min_bytes)) == value


@given(st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_varint_round_trip(value):
    assert read_item(ReceiveBuffer(pack_varint(value)), Cursor.varint) == value


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.sampled_from([3, 4]))
def test_varlong_round_trip(value, min_bytes):
    data = pack_varlong(value, min_bytes)
    assert len(data) >= min_bytes
    assert read_item(ReceiveBuffer(data), lambda c: c.varlong(min_bytes)) == value


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_longint_round_trip(value):
    data = pack_longint(value)
    assert len(data) == (4 if 0 <= value <= 0x7FFFFFFF else 12)
    assert read_item(ReceiveBuffer(data), Cursor.longint) == value


@given(st.binary(max_size=0x7FFF))
def test_vstring_round_trip(data):
    encoded = pack_vstring(data)
    assert len(encoded) == len(data) + (1 if len(data) <= 0x7F else 2)
    assert read_item(ReceiveBuffer(encoded), lambda c: c.vstring(0x8000)) == data


def test_encoders_refuse_what_the_wire_cannot_carry():
    with pytest.raises(LocalProtocolError):
        pack_vstring(b"x" * 0x8000)
    with pytest.raises(LocalProtocolError):
        pack_int(1 << 32)


def test_decoders_refuse_overlong_and_overflowing_values():
    with pytest.raises(RemoteProtocolError):
        read_item(ReceiveBuffer(pack_vstring(b"abcd")), lambda c: c.vstring(4))
    with pytest.raises(RemoteProtocolError):  # 0xFC..: 5 extra bytes cannot be an int32
        read_item(ReceiveBuffer(b"\xfc" + bytes(5)), Cursor.varint)


def test_incomplete_items_consume_nothing():
    buf = ReceiveBuffer(pack_varlong(1 << 40, 3)[:-1])
    before = len(buf)
    assert read_item(buf, lambda c: (c.varint(), c.varlong(3))) is None
    assert len(buf) == before


# captured indexes (rsync-protocol.md A.3)
def test_ndx_captured_bytes():
    enc = NdxEncoder(32)
    assert enc.encode(NDX_FLIST_EOF).hex() == "ff01"
    enc = NdxEncoder(32)
    assert enc.encode(-102).hex() == "ff65"
    assert enc.encode(NDX_FLIST_EOF).hex() == "fffe80020000"
    enc = NdxEncoder(32)
    assert enc.encode(NDX_DEL_STATS).hex() == "ff02"
    assert enc.encode(NDX_DONE).hex() == "00"


def test_ndx_below_30_is_a_plain_int():
    assert NdxEncoder(29).encode(NDX_DONE) == b"\xff\xff\xff\xff"
    assert NdxEncoder(29).encode(7) == pack_int(7)


@given(st.lists(st.integers(min_value=-(2**31) + 1, max_value=2**31 - 1), max_size=40))
def test_ndx_round_trip_keeps_per_direction_state(values):
    enc, dec = NdxEncoder(32), NdxDecoder(32)
    wire = b"".join(enc.encode(v) for v in values)
    buf = ReceiveBuffer()
    out = []
    for byte in wire:  # byte by byte: a half-read index must not move the state
        buf.extend(bytes([byte]))
        value = read_item(buf, dec.read)
        if value is not None:
            out.append(value)
    assert out == values
