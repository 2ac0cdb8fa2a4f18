"""File content pipelines: writing a new file into blocks, reading a file back.

Writing (`FileBuilder`), theory of operation: bytes pushed with `write` go through the
streaming chunker (chunker.py); each run of final chunks becomes one job on the
volume's worker pool, where every chunk is checked for all-zero (kept as a hole, never
stored) or hashed, deduplicated against the index and, if new, compressed, encrypted
and appended to a pack (objectstore.py and the layers below). Up to `max_inflight`
chunks are in the pool at once; beyond that `write` waits for the oldest job, so a
fast sender is slowed to the speed of the store and memory stays bounded (chunker
batch + in-flight chunks + the pack layer's bounded upload queue). Results are
collected in file order, whatever order the workers finish in. Whole-file digests are updated on
the caller's thread: XXH128 always (about 30 GB/s, free), MD5 only when the store asks
for it (0.8 GB/s, i.e. 1.2 s of CPU per GiB).

`write_zeros(n)` ends the current run of data (the chunker is flushed, so chunk
boundaries restart after the hole) and appends a hole record; adjacent holes merge.
`finish()` returns a `WrittenFile`: the file's `Content` (block list, out of line when
long) and the ids of every object it references, which the transaction re-checks before
committing.

Reading (`FileReader`): random access by offset through `BlockMap`, with a small cache
of recently fetched blocks (delta transfers read a basis file in overlapping pieces).
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections import OrderedDict, deque
from collections.abc import Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import numpy as np
import xxhash

from blockstore.volume.blockid import HOLE_ID, is_zero
from blockstore.volume.blocklist import BlockMap, build_content
from blockstore.volume.chunker import ChunkParams, StreamChunker
from blockstore.volume.objects import BLOCK_RECORD, Content
from blockstore.volume.objectstore import ObjectStore

_MAX_RECORD_LENGTH = (1 << 32) - 1  # a block record's length field is u32
_RECORD = struct.Struct("<32sI")  # BLOCK_RECORD
_ZERO_PIECE = bytes(1 << 20)
INLINE_RUN = 256 << 10  # runs of chunks below this many bytes skip the pool


@dataclass(frozen=True, slots=True)
class WrittenFile:
    """A finished file: its content and the objects it references (kind byte + id)."""

    content: Content
    referenced: bytes


class FileBuilder:
    """Streams one new file into the store (see the module docstring); one thread at a time."""

    def __init__(
        self,
        objects: ObjectStore,
        params: ChunkParams,
        pool: Executor | None,
        *,
        md5: bool = False,
        max_inflight: int = 64,
    ) -> None:
        self._objects = objects
        self._pool = pool
        self._chunker = StreamChunker(params)
        self._xxh = xxhash.xxh3_128()
        self._md5 = hashlib.md5() if md5 else None
        # in file order: (a pool job storing a run of chunks, or its result, or None for
        # a hole; the lengths of its chunks)
        self._pending: deque[tuple[Future[list[bytes | None]] | list[bytes | None] | None,
                                   list[int]]] = deque()
        self._inflight_chunks = 0
        self._max_inflight = max_inflight
        self._records = bytearray()  # BLOCK_RECORDs: 36 bytes per block, however long the file
        self._size = 0
        self._done = False

    @property
    def size(self) -> int:
        """Bytes written so far (data and zeros)."""
        return self._size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append `data` to the file (may wait for the store to catch up)."""
        self._xxh.update(data)
        if self._md5 is not None:
            self._md5.update(data)
        self._size += len(data)
        self._submit(self._chunker.feed(data))

    def write_zeros(self, length: int) -> None:
        """Append `length` zero bytes as a hole (nothing is stored for them)."""
        self._submit(self._chunker.finish())
        for start in range(0, length, len(_ZERO_PIECE)):
            piece = memoryview(_ZERO_PIECE)[: min(len(_ZERO_PIECE), length - start)]
            self._xxh.update(piece)
            if self._md5 is not None:
                self._md5.update(piece)
        self._size += length
        if length:
            self._pending.append((None, [length]))

    def finish(self) -> WrittenFile:
        """Wait for every block to be stored; return the file's content."""
        self._submit(self._chunker.finish())
        while self._pending:
            self._collect_oldest()
        self._done = True
        records = bytes(self._records)
        content, list_ids = build_content(
            self._objects, records, self._size,
            xxh128=self._xxh.digest(),
            md5=self._md5.digest() if self._md5 is not None else None,
        )  # fmt: skip
        table = np.frombuffer(records, dtype=BLOCK_RECORD)
        stored = table[table["id"] != np.array(HOLE_ID, dtype="V32")]
        tagged = np.empty(len(stored), dtype=[("tag", "S1"), ("id", "V32")])
        tagged["tag"] = b"b"
        tagged["id"] = stored["id"]
        return WrittenFile(content, tagged.tobytes() + _tagged(b"t", list_ids))

    def abort(self) -> None:
        """Stop: wait for in-flight chunks (their blocks stay as garbage for gc)."""
        for item, _lengths in self._pending:
            if isinstance(item, Future):
                item.cancel()
        for item, _lengths in self._pending:
            if isinstance(item, Future) and not item.cancelled():
                item.exception()
        self._pending.clear()
        self._done = True

    def _submit(self, chunks: list[bytes]) -> None:
        """Hand a run of chunks to the pool as one job (one hop per run, not per chunk)."""
        if not chunks:
            return
        lengths = [len(chunk) for chunk in chunks]
        # a small run (a small file, a file's tail) is stored on the calling thread: the
        # hop to the pool and back would cost more than hashing and compressing it
        if self._pool is None or sum(lengths) < INLINE_RUN:
            self._pending.append((self._store(chunks), lengths))
        else:
            self._pending.append((self._pool.submit(self._store, chunks), lengths))
            self._inflight_chunks += len(chunks)
        while self._inflight_chunks > self._max_inflight:
            self._collect_oldest()

    def _store(self, chunks: list[bytes]) -> list[bytes | None]:
        """Store each chunk; None for an all-zero one (a hole)."""
        return [None if is_zero(chunk) else self._objects.put_block(chunk) for chunk in chunks]

    def _collect_oldest(self) -> None:
        item, lengths = self._pending.popleft()
        if isinstance(item, Future):
            self._inflight_chunks -= len(lengths)
            item = item.result()
        for ident, length in zip(item or [None], lengths, strict=True):
            if ident is None:
                self._add_hole(length)
            else:
                self._records += _RECORD.pack(ident, length)

    def _add_hole(self, length: int) -> None:
        records = self._records
        if records and records[-_RECORD.size : -4] == HOLE_ID:  # extend the last hole
            merged = _RECORD.unpack_from(records, len(records) - _RECORD.size)[1] + length
            length = max(0, merged - _MAX_RECORD_LENGTH)
            last = len(records) - _RECORD.size
            _RECORD.pack_into(records, last, HOLE_ID, min(merged, _MAX_RECORD_LENGTH))
        while length > 0:
            records += _RECORD.pack(HOLE_ID, min(length, _MAX_RECORD_LENGTH))
            length -= _MAX_RECORD_LENGTH


def _tagged(tag: bytes, ids: list[bytes]) -> bytes:
    """Kind byte + id for each id: what a transaction re-checks before it commits."""
    return b"".join(tag + ident for ident in ids)


class FileReader:
    """Reads one file's content by offset; thread-safe.

    The last `cache_blocks` blocks fetched are kept (with their file offsets when the
    caller gave them), so the many small reads a delta transfer makes inside one block
    cost one fetch, and `read_cached` can answer them without leaving the caller's
    thread (the event loop).
    """

    def __init__(self, objects: ObjectStore, content: Content, *, cache_blocks: int = 8) -> None:
        self._objects = objects
        self.content = content
        self.size = content.size
        self._map = BlockMap(objects, content)
        self._cache: OrderedDict[bytes, tuple[int | None, bytes]] = OrderedDict()
        self._cache_blocks = cache_blocks
        self._lock = threading.Lock()

    def blocks(self, offset: int = 0) -> Iterator[tuple[bytes | None, int, int]]:
        """(block id or None for a hole, file offset, length) from `offset` on."""
        return self._map.blocks(offset)

    def fetch(self, block_id: bytes | None, length: int, begin: int | None = None) -> bytes:
        """The content of one block (zeros for a hole); `begin` is its file offset."""
        if block_id is None:
            return bytes(length)
        with self._lock:
            found = self._cache.get(block_id)
            if found is not None:
                self._cache.move_to_end(block_id)
                if begin is not None and found[0] != begin:
                    self._cache[block_id] = (begin, found[1])
                return found[1]
        data = self._objects.get_block(block_id, length)
        with self._lock:
            self._cache[block_id] = (begin, data)
            while len(self._cache) > self._cache_blocks:
                self._cache.popitem(last=False)
        return data

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes at `offset` (fewer at the end, b"" past it)."""
        end = min(offset + length, self.size)
        if offset >= end:
            return b""
        parts = []
        for block_id, begin, block_length in self.blocks(offset):
            if begin >= end:
                break
            data = self.fetch(block_id, block_length, begin)
            parts.append(data[max(offset - begin, 0) : end - begin])
        return b"".join(parts)

    def read_cached(self, offset: int, length: int) -> bytes | None:
        """Like `read` if one cached block holds the whole range, else None (no I/O)."""
        end = min(offset + length, self.size)
        if offset >= end:
            return b""
        with self._lock:
            for begin, data in reversed(self._cache.values()):
                if begin is not None and begin <= offset and end <= begin + len(data):
                    return data[offset - begin : end - begin]
        return None
