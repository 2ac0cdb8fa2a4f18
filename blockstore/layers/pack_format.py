"""The pack object format: what a `packs/<id>` object holds and how it is read back.

A pack is its objects back to back (each already compressed and encrypted on its own by
the layers above the pack layer), then a trailer of one (kind, id, length) entry per
object, then a fixed tail: magic, version, object count, creation time in ns, trailer
length and the trailer's CRC-32. The trailer holds only ids and lengths, never
plaintext (in an encrypted store the ids are keyed hashes and the objects ciphertext),
and it makes the bucket self-describing: `reindex` rebuilds the local index from the
trailers alone. A pack's name is 256 random bits (see layers/pack.py for why).

`PackBuffer` builds a pack in a reusable buffer; `read_trailer` reads one back.
"""

from __future__ import annotations

import re
import secrets
import struct
import time
import zlib
from dataclasses import dataclass, field

from blockstore.backend import Backend, IntegrityError
from blockstore.volume.index import PackInfo

PACK_PREFIX = "packs/"
KIND_PREFIXES = ("blocks/", "trees/")  # kind 0 and 1 in the index
PACK_KEY_RE = re.compile(r"^packs/[0-9a-f]{64}$")
_KEY_RE = re.compile(r"^(blocks|trees)/([0-9a-f]{64})$")
_ENTRY = struct.Struct("<B32sI")
_TAIL = struct.Struct("<4sB3xIQII4x")  # magic, version, count, created ns, entries len, crc
_MAGIC = b"RSPK"
_VERSION = 1
_TRAILER_GUESS = 64 << 10


def trailer_size(count: int) -> int:
    """Bytes the trailer and tail of a pack of `count` objects take."""
    return count * _ENTRY.size + _TAIL.size


def parse_key(key: str) -> tuple[int, bytes] | None:
    """(kind, id) for a key the pack layer packs, else None."""
    match = _KEY_RE.match(key)
    if match is None:
        return None
    return (0 if match.group(1) == "blocks" else 1), bytes.fromhex(match.group(2))


def object_key(kind: int, ident: bytes) -> str:
    return KIND_PREFIXES[kind] + ident.hex()


def object_bytes(info: PackInfo) -> int:
    """Bytes of objects in a pack: its size without the trailer (gc's repack measure)."""
    return info.size - trailer_size(info.count)


@dataclass(slots=True)
class PackBuffer:
    """A pack being filled or uploaded: its objects (key, kind, id, offset, length).

    Their bytes are copied back to back into `buffer` as they come (a reused buffer,
    see `PackLayer._provide_buffer`).
    """

    buffer: bytearray = field(default_factory=bytearray)
    entries: list[tuple[str, int, bytes, int, int]] = field(default_factory=list)
    size: int = 0

    def fits(self, length: int) -> bool:
        """Whether an object of `length` bytes fits in the buffer beside the trailer."""
        return self.size + length + trailer_size(len(self.entries) + 1) <= len(self.buffer)

    def add(self, key: str, kind: int, ident: bytes, data: bytes) -> int:
        """Copy `data` into the buffer (it must fit); return its offset."""
        offset = self.size
        self.buffer[offset : offset + len(data)] = data
        self.entries.append((key, kind, ident, offset, len(data)))
        self.size += len(data)
        return offset

    def seal(self) -> tuple[str, int]:
        """Write the trailer after the objects; return a fresh random name and the time.

        The buffer is then cut to the pack's length (a shrink of less than half keeps its
        memory, so it can grow back for the next pack without a new allocation).
        """
        created = time.time_ns()
        trailer = b"".join(_ENTRY.pack(k, i, n) for _key, k, i, _off, n in self.entries)
        tail = _TAIL.pack(
            _MAGIC, _VERSION, len(self.entries), created, len(trailer), zlib.crc32(trailer)
        )
        end = self.size + len(trailer) + len(tail)
        self.buffer[self.size : end] = trailer + tail
        del self.buffer[end:]
        return secrets.token_hex(32), created


def read_trailer(
    backend: Backend, name: str, size: int
) -> tuple[int, list[tuple[int, bytes, int, int]]]:
    """(creation time, [(kind, id, offset, length)]) of pack `name` of `size` bytes."""
    key = PACK_PREFIX + name
    guess = min(size, _TRAILER_GUESS)
    tail_bytes = backend.get_range(key, size - guess, guess)
    if len(tail_bytes) < _TAIL.size:
        raise IntegrityError(f"{key}: too short to be a pack", key=key)
    magic, version, count, created, entries_len, crc = _TAIL.unpack_from(
        tail_bytes, len(tail_bytes) - _TAIL.size
    )
    if magic != _MAGIC or version != _VERSION or entries_len != count * _ENTRY.size:
        raise IntegrityError(f"{key}: not a pack (bad trailer)", key=key)
    if entries_len + _TAIL.size > size:
        raise IntegrityError(f"{key}: trailer longer than the pack", key=key)
    if entries_len + _TAIL.size > len(tail_bytes):
        trailer = backend.get_range(key, size - _TAIL.size - entries_len, entries_len)
    else:
        trailer = tail_bytes[
            len(tail_bytes) - _TAIL.size - entries_len : len(tail_bytes) - _TAIL.size
        ]
    if zlib.crc32(trailer) != crc:
        raise IntegrityError(f"{key}: pack trailer checksum mismatch", key=key)
    entries = []
    offset = 0
    for kind, ident, length in _ENTRY.iter_unpack(trailer):
        entries.append((kind, ident, offset, length))
        offset += length
    if offset + entries_len + _TAIL.size != size:
        raise IntegrityError(f"{key}: pack size does not match its trailer", key=key)
    return created, entries
