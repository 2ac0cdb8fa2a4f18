"""Varint primitives shared by the volume's binary object formats (trees, lists, snapshots).

Every volume object is `type byte, version byte, body`. Bodies are built from unsigned
LEB128 varints, zigzag varints for signed values, and length-prefixed byte strings.
Decoding never trusts the input: running off the end or a value out of range raises
`CorruptObjectError` (an `IntegrityError`) naming the object key, never IndexError.
"""

from __future__ import annotations

from blockstore.backend import IntegrityError

FORMAT_VERSION = 1


class CorruptObjectError(IntegrityError):
    """A volume object decoded to nonsense (truncated, wrong type, bad field)."""


def put_uvarint(out: bytearray, value: int) -> None:
    """Append `value` (>= 0) as an unsigned LEB128 varint."""
    if value < 0:
        raise ValueError(f"negative value {value} for an unsigned varint")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def put_svarint(out: bytearray, value: int) -> None:
    """Append a signed value as a zigzag varint (small magnitudes stay short)."""
    put_uvarint(out, (value << 1) if value >= 0 else ((-value << 1) - 1))


def put_bytes(out: bytearray, value: bytes) -> None:
    """Append a length-prefixed byte string."""
    put_uvarint(out, len(value))
    out += value


def header(kind: bytes) -> bytearray:
    """Start an object of type `kind` (one ASCII byte) in the current format version."""
    return bytearray(kind + bytes([FORMAT_VERSION]))


class Decoder:
    """A cursor over one encoded object; every read checks bounds."""

    __slots__ = ("buf", "key", "pos")

    def __init__(self, buf: bytes | memoryview, key: str, kind: bytes) -> None:
        self.buf = memoryview(buf)
        self.key = key
        if len(self.buf) < 2 or bytes(self.buf[:1]) != kind:
            raise self.error(f"not a {kind.decode()!r} object")
        if self.buf[1] != FORMAT_VERSION:
            raise self.error(f"unsupported format version {self.buf[1]}")
        self.pos = 2

    def error(self, what: str) -> CorruptObjectError:
        return CorruptObjectError(f"{self.key}: corrupt object: {what}", key=self.key)

    def at_end(self) -> bool:
        return self.pos >= len(self.buf)

    def uvarint(self) -> int:
        result = shift = 0
        buf, pos = self.buf, self.pos
        while True:
            if pos >= len(buf):
                raise self.error("truncated varint")
            byte = buf[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                self.pos = pos
                return result
            shift += 7
            if shift > 70:
                raise self.error("varint too long")

    def svarint(self) -> int:
        raw = self.uvarint()
        return (raw >> 1) if not raw & 1 else -((raw + 1) >> 1)

    def raw(self, length: int) -> bytes:
        end = self.pos + length
        if length < 0 or end > len(self.buf):
            raise self.error("truncated field")
        value = bytes(self.buf[self.pos : end])
        self.pos = end
        return value

    def bytes(self) -> bytes:
        return self.raw(self.uvarint())

    def view(self, length: int) -> memoryview:
        """Return the next `length` bytes without copying."""
        end = self.pos + length
        if length < 0 or end > len(self.buf):
            raise self.error("truncated field")
        value = self.buf[self.pos : end]
        self.pos = end
        return value
