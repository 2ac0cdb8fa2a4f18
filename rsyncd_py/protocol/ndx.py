"""File-list indexes on the wire (io.c write_ndx / read_ndx).

Theory of operation: from protocol 30 an index is sent as a difference from the
previous index of the same sign *in the same direction*, so each direction keeps its own
state: `NdxEncoder` for what we send, `NdxDecoder` for what we receive. Below 30 an index
is a plain int and neither side keeps state.

State (per direction):      prev_positive  prev_negative
  initial                        -1              1
  after sending n >= 0            n          unchanged
  after sending n < -1        unchanged         -n
NDX_DONE (-1) is the single byte 00 and leaves the state alone.

Encoding of the difference d (from the matching prev value):
  1..253                -> one byte d
  0 or 254..32767       -> FE, d >> 8, d & FF          (the only big-endian field)
  otherwise             -> FE, (n >> 24) | 80, n & FF, (n >> 8) & FF, (n >> 16) & FF
Negative values are prefixed by FF and encoded by their absolute value.
"""

from __future__ import annotations

from rsyncd_py.protocol.constants import NDX_DONE
from rsyncd_py.protocol.errors import RemoteProtocolError
from rsyncd_py.protocol.ints import Cursor, pack_int

_MAX_INT32 = 0x7FFFFFFF


class NdxEncoder:
    """Encodes the indexes one direction sends (io.c write_ndx)."""

    __slots__ = ("_prev_negative", "_prev_positive", "protocol")

    def __init__(self, protocol: int) -> None:
        self.protocol = protocol
        self._prev_positive = -1
        self._prev_negative = 1

    def encode(self, ndx: int) -> bytes:
        if self.protocol < 30:
            return pack_int(ndx)
        if ndx == NDX_DONE:
            return b"\x00"
        if ndx >= 0:
            prefix = b""
            num = ndx
            diff = num - self._prev_positive
            self._prev_positive = num
        else:
            prefix = b"\xff"
            num = -ndx
            diff = num - self._prev_negative
            self._prev_negative = num
        if 0 < diff < 0xFE:
            return prefix + bytes((diff,))
        if diff < 0 or diff > 0x7FFF:
            return prefix + bytes(
                (0xFE, (num >> 24) | 0x80, num & 0xFF, (num >> 8) & 0xFF, (num >> 16) & 0xFF)
            )
        return prefix + bytes((0xFE, diff >> 8, diff & 0xFF))


class NdxDecoder:
    """Decodes the indexes one direction receives (io.c read_ndx).

    `read(cursor)` is a Cursor decoder: the state change is committed only when the
    surrounding item is complete.
    """

    __slots__ = ("_prev_negative", "_prev_positive", "protocol")

    def __init__(self, protocol: int) -> None:
        self.protocol = protocol
        self._prev_positive = -1
        self._prev_negative = 1

    def read(self, cur: Cursor) -> int:
        if self.protocol < 30:
            return cur.int32()
        first = cur.byte()
        if first == 0:
            return NDX_DONE
        negative = first == 0xFF
        if negative:
            first = cur.byte()
        prev = self._prev_negative if negative else self._prev_positive
        if first == 0xFE:
            b0, b1 = cur.take(2)
            if b0 & 0x80:
                b2, b3 = cur.take(2)
                num = b1 | (b2 << 8) | (b3 << 16) | ((b0 & 0x7F) << 24)
            else:
                num = ((b0 << 8) | b1) + prev
        else:
            num = first + prev
        if not 0 <= num <= _MAX_INT32:
            raise RemoteProtocolError(f"Invalid file index: {num & 0xFFFFFFFF}")
        if negative:
            cur.on_commit(lambda: setattr(self, "_prev_negative", num))
            return -num
        cur.on_commit(lambda: setattr(self, "_prev_positive", num))
        return num
