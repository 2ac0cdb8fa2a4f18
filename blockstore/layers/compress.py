"""Compression layer: each object is zstd-compressed on its own, behind a 1-byte header.

Every object gets a one-byte header: 0 = stored raw, 1 = a zstd frame. Data that does
not shrink (already compressed media, encrypted archives, tiny objects) is stored raw,
so the layer never costs more than one byte per object. Each object stands alone so
it can be read alone (from inside a pack, with a range GET). zstd compressor and
decompressor contexts are not thread-safe, so each thread keeps its own.
"""

from __future__ import annotations

import threading

import zstandard

from blockstore.backend import Backend, IntegrityError, Layer

HEADER_RAW = 0
HEADER_ZSTD = 1
# A frame claiming more than this is corrupt or hostile, not one of our objects.
MAX_OBJECT_SIZE = 1 << 30


class CompressLayer(Layer):
    """Compress with zstd at `level` on put; decompress on get (see module docstring)."""

    def __init__(self, inner: Backend, level: int = 3) -> None:
        super().__init__(inner)
        self.level = level
        self._local = threading.local()

    def _contexts(self) -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
        contexts = getattr(self._local, "contexts", None)
        if contexts is None:
            contexts = (zstandard.ZstdCompressor(level=self.level), zstandard.ZstdDecompressor())
            self._local.contexts = contexts
        return contexts

    def encode(self, data: bytes) -> bytes:
        """Return the stored form of `data`: header byte plus zstd frame or raw bytes."""
        if data:
            frame = self._contexts()[0].compress(data)
            if len(frame) < len(data):
                return bytes((HEADER_ZSTD,)) + frame
        return bytes((HEADER_RAW,)) + data

    def decode(self, key: str, stored: bytes) -> bytes:
        """Invert `encode`; IntegrityError naming `key` if `stored` is not valid."""
        if not stored:
            raise IntegrityError(f"{key}: empty object (missing compression header)", key=key)
        header, body = stored[0], memoryview(stored)[1:]
        if header == HEADER_RAW:
            return bytes(body)
        if header != HEADER_ZSTD:
            raise IntegrityError(f"{key}: unknown compression header {header}", key=key)
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

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self.get(key)[offset : offset + length]

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, self.encode(data))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self.inner.put_if_absent(key, self.encode(data))
