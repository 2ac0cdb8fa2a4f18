"""Compression layer: each object is zstd-compressed on its own, behind a small header.

Stored form (store format 2): a header byte, the XXH3-64 of the plaintext (8 bytes,
little-endian), then the body: 2 = stored raw, 3 = a zstd frame. Format-1 stores (and
`checksums=False`) use the older headers without the checksum: 0 = raw, 1 = zstd.

Data that does not shrink (already compressed media, encrypted archives, tiny
objects) is stored raw. Whether an object is worth compressing is first asked of its
first `PROBE` bytes: zstd spent 0.44 CPU-s per GiB of random data only to find it did
not shrink, the probe 0.06; an object whose sample does not shrink by 1/32 is stored
raw without compressing the rest (a chunk of text behind an incompressible first
4 KiB is then stored raw too: the price of the probe). Each object stands alone so it
can be read alone (from inside a pack, with a range GET).

The checksum is what makes reads of an unencrypted store trustworthy at 30 GB/s: zstd
frames carry no checksum and raw bodies none at all, so without it the volume had to
re-hash every block it read with SHA-256 (0.5 CPU-s per GiB read). With `checksums`,
every object this layer returns has been checked (`checks_content`), and a header
without a checksum is refused as damage; `fsck --read-data` still re-hashes ids.

zstd compressor and decompressor contexts are not thread-safe, so each thread keeps
its own.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import xxhash
import zstandard

from blockstore.backend import Backend, IntegrityError, Layer

HEADER_RAW = 0  # format 1: no checksum
HEADER_ZSTD = 1
HEADER_RAW_SUM = 2  # format 2: XXH3-64 of the plaintext follows the header byte
HEADER_ZSTD_SUM = 3
SUM_SIZE = 8
PROBE = 4096  # bytes compressed first to decide whether the rest is worth it
# New stores compress at zstd level 1: over the bench's text in 64 KiB objects, level 1
# ran at 433 MB/s for a ratio of 3.01, level 3 at 371 MB/s for 3.08 (15% less CPU per
# byte pushed for 2.3% more bytes stored); -1 gains 6% more speed but drops to 2.23.
DEFAULT_LEVEL = 1
# A frame claiming more than this is corrupt or hostile, not one of our objects.
MAX_OBJECT_SIZE = 1 << 30


class CompressLayer(Layer):
    """Compress with zstd at `level` on put; decompress on get (see module docstring)."""

    def __init__(
        self, inner: Backend, level: int = DEFAULT_LEVEL, *, checksums: bool = True
    ) -> None:
        super().__init__(inner)
        self.level = level
        self.checksums = checksums
        self._local = threading.local()

    @property
    def checks_content(self) -> bool:
        """Whether every object `get` returns was checked against a stored checksum."""
        return self.checksums

    def _contexts(self) -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
        contexts = getattr(self._local, "contexts", None)
        if contexts is None:
            contexts = (zstandard.ZstdCompressor(level=self.level), zstandard.ZstdDecompressor())
            self._local.contexts = contexts
        return contexts

    def encode(self, data: bytes) -> bytes:
        """Return the stored form of `data`: header, checksum, zstd frame or raw bytes."""
        frame = self._frame(data)
        if not self.checksums:
            return bytes((HEADER_RAW if frame is None else HEADER_ZSTD,)) + (frame or data)
        header = HEADER_RAW_SUM if frame is None else HEADER_ZSTD_SUM
        return b"".join((bytes((header,)), xxhash.xxh3_64_digest(data), frame or data))

    def _frame(self, data: bytes) -> bytes | None:
        """`data` as a zstd frame, or None when it is not worth compressing."""
        if not data:
            return None
        compressor = self._contexts()[0]
        if len(data) > 2 * PROBE:
            sample = compressor.compress(memoryview(data)[:PROBE])
            if len(sample) > PROBE - PROBE // 32:
                return None
        frame = compressor.compress(data)
        return frame if len(frame) < len(data) else None

    def decode(self, key: str, stored: bytes) -> bytes:
        """Invert `encode`; IntegrityError naming `key` if `stored` is not valid."""
        if not stored:
            raise IntegrityError(f"{key}: empty object (missing compression header)", key=key)
        header = stored[0]
        expected_sum = None
        if header in (HEADER_RAW_SUM, HEADER_ZSTD_SUM):
            if len(stored) < 1 + SUM_SIZE:
                raise IntegrityError(f"{key}: truncated object (no checksum)", key=key)
            expected_sum = stored[1 : 1 + SUM_SIZE]
            body = memoryview(stored)[1 + SUM_SIZE :]
            compressed = header == HEADER_ZSTD_SUM
        elif header in (HEADER_RAW, HEADER_ZSTD) and not self.checksums:
            body = memoryview(stored)[1:]
            compressed = header == HEADER_ZSTD
        else:
            raise IntegrityError(f"{key}: unknown compression header {header}", key=key)
        data = self._decompress(key, body) if compressed else bytes(body)
        if expected_sum is not None and xxhash.xxh3_64_digest(data) != expected_sum:
            raise IntegrityError(f"{key}: content does not match its checksum", key=key)
        return data

    def _decompress(self, key: str, body: memoryview) -> bytes:
        try:
            size = zstandard.frame_content_size(body)
            if not 0 <= size <= MAX_OBJECT_SIZE:
                raise IntegrityError(f"{key}: zstd frame without a sane content size", key=key)
            data = self._contexts()[1].decompress(body)
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"{key}: corrupt zstd data: {exc}", key=key) from exc
        if len(data) != size:
            raise IntegrityError(f"{key}: zstd frame decoded to the wrong size", key=key)
        return data

    def get(self, key: str) -> bytes:
        return self.decode(key, self.inner.get(key))

    def get_many(self, keys: Sequence[str]) -> list[bytes]:
        stored = self.inner.get_many(keys)
        return [self.decode(key, data) for key, data in zip(keys, stored, strict=True)]

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self.get(key)[offset : offset + length]

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, self.encode(data))

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        self.inner.put_many([(key, self.encode(data)) for key, data in items])

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self.inner.put_if_absent(key, self.encode(data))
