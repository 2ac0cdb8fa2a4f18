"""rsync's primitive encodings (io.c): ints, longints, varints, varlongs, vstrings.

Encoders are plain functions returning bytes. Decoding goes through a `Cursor`, which
reads from a `ReceiveBuffer` at a private offset without consuming anything; a decoder
is any function `decode(cursor) -> value`. `read_item(buf, decode)` runs it and only
when it returns consumes exactly the bytes it looked at. If the buffer runs out
mid-item the cursor raises `NeedData`, `read_item` returns None and the buffer is
untouched -- the transactional-reader rule of `buffer.py`, extended to composite items.

Decoders that keep state across items (ndx deltas, file-list "same as previous"
fields) must not change that state until the whole item has been read: they register
the change with `cursor.on_commit(fn)`, which `read_item` runs only on success.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TypeVar

from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.errors import LocalProtocolError, RemoteProtocolError

T = TypeVar("T")

_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_U16 = struct.Struct("<H")

# io.c int_byte_extra: how many bytes follow a varint's first byte, by its top 6 bits.
_INT_BYTE_EXTRA = bytes([0] * 32 + [1] * 16 + [2] * 8 + [3] * 4 + [4] * 2 + [5, 6])


class NeedData(Exception):
    """Raised by a Cursor when the item is not complete yet (internal to decoders)."""


class Cursor:
    """A read position over a ReceiveBuffer that consumes nothing until committed."""

    __slots__ = ("_buf", "_commits", "pos")

    def __init__(self, buf: ReceiveBuffer) -> None:
        self._buf = buf
        self.pos = 0
        self._commits: list[Callable[[], None]] = []

    def on_commit(self, fn: Callable[[], None]) -> None:
        """Run `fn` once the item being decoded has been read completely."""
        self._commits.append(fn)

    def take(self, n: int) -> bytes:
        """Return the next `n` bytes."""
        data = self._buf.peek(n, self.pos)
        if data is None:
            raise NeedData
        self.pos += n
        return data

    def byte(self) -> int:
        """io.c read_byte: one unsigned byte."""
        value = self._buf.peek_byte(self.pos)
        if value is None:
            raise NeedData
        self.pos += 1
        return value

    def int32(self) -> int:
        """io.c read_int: 4 bytes, little-endian, signed."""
        return _I32.unpack(self.take(4))[0]

    def uint32(self) -> int:
        """io.c read_uint: 4 bytes, little-endian, unsigned."""
        return _U32.unpack(self.take(4))[0]

    def shortint(self) -> int:
        """io.c read_shortint: 2 bytes, little-endian, unsigned."""
        return _U16.unpack(self.take(2))[0]

    def longint(self) -> int:
        """io.c read_longint: an int, or -1 followed by an int64 (below protocol 30)."""
        value = self.int32()
        if value != -1:
            return value
        return _I64.unpack(self.take(8))[0]

    def varint(self) -> int:
        """io.c read_varint: 1-5 bytes; the first byte's leading 1-bits count the rest."""
        first = self.byte()
        extra = _INT_BYTE_EXTRA[first >> 2]
        if not extra:
            return first
        if extra > 4:
            raise RemoteProtocolError("Overflow in read_varint()", 12)
        low = self.take(extra)
        high = first & ((1 << (8 - extra)) - 1)
        raw = int.from_bytes(low + bytes([high]), "little")
        return _I32.unpack(_U32.pack(raw & 0xFFFFFFFF))[0]

    def varlong(self, min_bytes: int) -> int:
        """io.c read_varlong: at least `min_bytes` bytes, then extra bytes as for varint."""
        head = self.take(min_bytes)
        first = head[0]
        extra = _INT_BYTE_EXTRA[first >> 2]
        if min_bytes + extra > 9:
            raise RemoteProtocolError("Overflow in read_varlong()", 12)
        low = head[1:]
        if extra:
            low += self.take(extra)
            low += bytes([first & ((1 << (8 - extra)) - 1)])
        else:
            low += bytes([first])
        return _I64.unpack(low.ljust(8, b"\0")[:8])[0]

    def varint30(self, protocol: int) -> int:
        """io.h read_varint30: an int below protocol 30, a varint from 30 on."""
        return self.int32() if protocol < 30 else self.varint()

    def varlong30(self, protocol: int, min_bytes: int) -> int:
        """io.h read_varlong30: a longint below protocol 30, a varlong from 30 on."""
        return self.longint() if protocol < 30 else self.varlong(min_bytes)

    def vstring(self, max_len: int) -> bytes:
        """io.c read_vstring: a 1- or 2-byte length, then that many bytes."""
        length = self.byte()
        if length & 0x80:
            length = (length & 0x7F) * 0x100 + self.byte()
        if length >= max_len:
            raise RemoteProtocolError(f"over-long vstring received ({length} > {max_len - 1})")
        return self.take(length)


def read_item(buf: ReceiveBuffer, decode: Callable[[Cursor], T]) -> T | None:
    """Decode one item from `buf`; consume it and return it, or return None untouched."""
    cursor = Cursor(buf)
    try:
        value = decode(cursor)
    except NeedData:
        return None
    buf.skip(cursor.pos)
    for commit in cursor._commits:
        commit()
    return value


# --- encoders --------------------------------------------------------------------


def pack_byte(value: int) -> bytes:
    return bytes((value & 0xFF,))


def pack_int(value: int) -> bytes:
    """io.c write_int: 4 bytes little-endian (signed or unsigned 32-bit values)."""
    if not -(1 << 31) <= value < (1 << 32):
        raise LocalProtocolError(f"integer {value} does not fit in 32 bits")
    return _U32.pack(value & 0xFFFFFFFF)


def pack_shortint(value: int) -> bytes:
    return _U16.pack(value & 0xFFFF)


def pack_longint(value: int) -> bytes:
    """io.c write_longint: 4 bytes if 0 <= value <= 0x7FFFFFFF, else -1 and 8 bytes."""
    if 0 <= value <= 0x7FFFFFFF:
        return _U32.pack(value)
    return b"\xff\xff\xff\xff" + _I64.pack(value)


def pack_varint(value: int) -> bytes:
    """io.c write_varint (a 32-bit value; negative values take 5 bytes)."""
    return _pack_var(value & 0xFFFFFFFF, 4, 1)


def pack_varlong(value: int, min_bytes: int) -> bytes:
    """io.c write_varlong: at least `min_bytes` bytes."""
    return _pack_var(value & 0xFFFFFFFFFFFFFFFF, 8, min_bytes)


def _pack_var(value: int, width: int, min_bytes: int) -> bytes:
    # b[1..width] hold the value little-endian; cnt is how many of them we need.
    b = value.to_bytes(width, "little")
    cnt = width
    while cnt > min_bytes and b[cnt - 1] == 0:
        cnt -= 1
    bit = 1 << (7 - cnt + min_bytes)
    top = b[cnt - 1]
    if top >= bit:
        # The top byte does not fit beside the length bits: spend one more byte.
        first = (~(bit - 1)) & 0xFF
        return bytes((first,)) + b[:cnt]
    if cnt > min_bytes:
        first = (top | ~(bit * 2 - 1)) & 0xFF
        return bytes((first,)) + b[: cnt - 1]
    return bytes((top,)) + b[: cnt - 1]


def pack_varint30(value: int, protocol: int) -> bytes:
    return pack_int(value) if protocol < 30 else pack_varint(value)


def pack_varlong30(value: int, protocol: int, min_bytes: int) -> bytes:
    return pack_longint(value) if protocol < 30 else pack_varlong(value, min_bytes)


def pack_vstring(data: bytes) -> bytes:
    """io.c write_vstring: length in 1 byte (<= 0x7F) or 2 bytes (<= 0x7FFF)."""
    length = len(data)
    if length > 0x7FFF:
        raise LocalProtocolError(f"attempting to send over-long vstring ({length} > 32767)")
    if length > 0x7F:
        return bytes((0x80 | (length >> 8), length & 0xFF)) + data
    return bytes((length,)) + data
