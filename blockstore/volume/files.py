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

Copies (a delta transfer rebuilds a file mostly from its old version): `write` may be
told that ranges of its data are copies of another stored file (`Copy`: a
`FileReader` and the offset the bytes were read at). A chunk the chunker cuts that
lies inside such a range and coincides with one whole stored block of the source has
that block's content, so it takes the block's id without hashing, looking up or
storing anything; content-defined cuts resynchronise a chunk or two after each change,
so a file 1% changed hashes only the chunks around its changes. Better still, where
the chunker stands at a cut point inside a copy and the source has a block starting
there that its own chunking cut by content (not its last block, nor one before a
hole), the chunker skips that block without scanning it (chunker.py, splicing): the
cut would fall at its end anyway. The whole-file digests still see every byte.

`finish()` returns a `WrittenFile`: the file's `Content` (block list, out of line when
long) and the ids of every object it references, which the transaction re-checks before
committing.

Reading (`FileReader`): random access by offset through `BlockMap`, with a small cache
of recently fetched blocks (delta transfers read a basis file in overlapping pieces).
"""

from __future__ import annotations

import hashlib
import itertools
import struct
import threading
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import numpy as np
import xxhash

from blockstore.volume.blockid import HOLE_ID, is_zero
from blockstore.volume.blocklist import BlockMap, build_content
from blockstore.volume.chunker import ChunkParams, Piece, StreamChunker
from blockstore.volume.objects import BLOCK_RECORD, Content
from blockstore.volume.objectstore import ObjectStore

_MAX_RECORD_LENGTH = (1 << 32) - 1  # a block record's length field is u32
_RECORD = struct.Struct("<32sI")  # BLOCK_RECORD
_ZERO_PIECE = bytes(1 << 20)
INLINE_RUN = 256 << 10  # runs of chunks below this many bytes skip the pool


@dataclass(frozen=True, slots=True)
class Copy:
    """`length` bytes at `start` of a `write`'s data are `source`'s bytes at `offset`."""

    start: int
    length: int
    source: FileReader
    offset: int


@dataclass(slots=True)
class _Span:
    """A range of the new file (`begin`, `end`) copied from `source` at `offset`."""

    begin: int
    end: int
    source: _BlockCursor
    offset: int


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
        # a hole; the lengths of all its chunks; the ids of the chunks that were copies
        # of stored blocks, None for the others, which the job stored)
        self._pending: deque[tuple[Future[list[bytes | None]] | list[bytes | None] | None,
                                   list[int], list[bytes | None] | None]] = deque()
        self._inflight_chunks = 0
        self._max_inflight = max_inflight
        self._records = bytearray()  # BLOCK_RECORDs: 36 bytes per block, however long the file
        self._size = 0
        self._chunked = 0  # file offset where the chunker's pending bytes start
        self._spans: deque[_Span] = deque()  # copied ranges not yet chunked, in order
        self._cursor: _BlockCursor | None = None
        self._spliced: deque[bytes] = deque()  # ids of blocks the chunker skipped
        self._done = False

    @property
    def size(self) -> int:
        """Bytes written so far (data and zeros)."""
        return self._size

    def write(self, data: bytes | bytearray | memoryview, copies: Sequence[Copy] = ()) -> None:
        """Append `data` to the file (may wait for the store to catch up).

        `copies` names the ranges of `data` that are copies of stored files' bytes.
        """
        self._xxh.update(data)
        if self._md5 is not None:
            self._md5.update(data)
        for copy in copies:
            if copy.source._objects is self._objects:  # ids name content in this store only
                self._add_span(self._size + copy.start, copy)
        self._size += len(data)
        if self._spans:
            self._submit_pieces(self._chunker.feed_spliced(data, self._splice))
        else:
            self._submit(self._chunker.feed(data))

    def _add_span(self, begin: int, copy: Copy) -> None:
        if self._cursor is None or self._cursor.reader is not copy.source:
            self._cursor = _BlockCursor(copy.source)
        last = self._spans[-1] if self._spans else None
        if (
            last is not None
            and last.end == begin
            and last.source is self._cursor
            and last.offset + (last.end - last.begin) == copy.offset
        ):
            last.end += copy.length  # contiguous in both files: one span
        else:
            self._spans.append(_Span(begin, begin + copy.length, self._cursor, copy.offset))

    def write_zeros(self, length: int) -> None:
        """Append `length` zero bytes as a hole (nothing is stored for them)."""
        self._flush_chunker()
        self._chunked += length
        for start in range(0, length, len(_ZERO_PIECE)):
            piece = memoryview(_ZERO_PIECE)[: min(len(_ZERO_PIECE), length - start)]
            self._xxh.update(piece)
            if self._md5 is not None:
                self._md5.update(piece)
        self._size += length
        if length:
            self._pending.append((None, [length], None))

    def _flush_chunker(self) -> None:
        """Cut what the chunker holds (at a hole or the end of the file)."""
        if self._spans:
            self._submit_pieces(self._chunker.finish_spliced(self._splice))
        else:
            self._submit(self._chunker.finish())

    def finish(self) -> WrittenFile:
        """Wait for every block to be stored; return the file's content."""
        self._flush_chunker()
        while self._pending:
            self._collect_oldest()
        self._done = True
        records = bytes(self._records)
        content, list_ids = build_content(
            self._objects, records, self._size,
            xxh128=self._xxh.digest(),
            md5=self._md5.digest() if self._md5 is not None else None,
        )  # fmt: skip
        return WrittenFile(content, _tagged_blocks(records) + _tagged(b"t", list_ids))

    def abort(self) -> None:
        """Stop: wait for in-flight chunks (their blocks stay as garbage for gc)."""
        for item, _lengths, _known in self._pending:
            if isinstance(item, Future):
                item.cancel()
        for item, _lengths, _known in self._pending:
            if isinstance(item, Future) and not item.cancelled():
                item.exception()
        self._pending.clear()
        self._done = True

    def _submit(self, chunks: list[bytes]) -> None:
        """Hand a run of chunks to the pool as one job (one hop per run, not per chunk)."""
        if not chunks:
            return
        lengths = [len(chunk) for chunk in chunks]
        begin = self._chunked
        self._chunked += sum(lengths)
        known = self._copied_ids(begin, lengths) if self._spans else None
        if known is not None:
            chunks = [chunk for chunk, ident in zip(chunks, known, strict=True) if ident is None]
            self._objects.count_reused(len(lengths) - len(chunks),
                                       sum(lengths) - sum(map(len, chunks)))
        # a small run (a small file, a file's tail) is stored on the calling thread: the
        # hop to the pool and back would cost more than hashing and compressing it
        if self._pool is None or sum(map(len, chunks)) < INLINE_RUN:
            result: Future[list[bytes | None]] | list[bytes | None] = self._store(chunks)
        else:
            result = self._pool.submit(self._store, chunks)
            self._inflight_chunks += len(chunks)
        self._pending.append((result, lengths, known))
        while self._inflight_chunks > self._max_inflight:
            self._collect_oldest()

    def _splice(self, position: int, available: int) -> int:
        """The chunker's question at a cut point (see `StreamChunker.feed_spliced`)."""
        begin = self._chunked + position
        spans = self._spans
        while spans and spans[0].end <= begin:
            spans.popleft()
        if not spans or spans[0].begin > begin:
            return 0
        span = spans[0]
        found = span.source.content_cut_block(span.offset + begin - span.begin)
        if found is None or found[1] > min(available, span.end - begin):
            return 0
        self._spliced.append(found[0])
        return found[1]

    def _submit_pieces(self, pieces: list[Piece]) -> None:
        """`_submit` runs of chunks; spliced blocks go straight to the block list."""
        run: list[bytes] = []
        for piece in pieces:
            if isinstance(piece, bytes):
                run.append(piece)
                continue
            self._submit(run)
            run = []
            self._pending.append(([self._spliced.popleft()], [piece], None))
            self._chunked += piece
            self._objects.count_reused(1, piece)
        self._submit(run)

    def _copied_ids(self, begin: int, lengths: list[int]) -> list[bytes | None] | None:
        """The source block id of each chunk that is a copy of one whole stored block.

        The chunks of `lengths` are consecutive from file offset `begin`; None stands
        for each other chunk, and is returned instead of the list if no chunk is one.
        """
        spans = self._spans
        known: list[bytes | None] = []
        for length in lengths:
            end = begin + length
            while spans and spans[0].end <= begin:
                spans.popleft()
            span = spans[0] if spans else None
            ident = None
            if span is not None and span.begin <= begin and end <= span.end:
                ident = span.source.stored_id(span.offset + begin - span.begin, length)
            known.append(ident)
            begin = end
        return known if any(ident is not None for ident in known) else None

    def _store(self, chunks: list[bytes]) -> list[bytes | None]:
        """Store a run of chunks (one batch down the stack); None for an all-zero one."""
        zero = [is_zero(chunk) for chunk in chunks]
        if not any(zero):
            return list(self._objects.put_blocks(chunks))
        data = [chunk for chunk, hole in zip(chunks, zero, strict=True) if not hole]
        stored = iter(self._objects.put_blocks(data))
        return [None if hole else next(stored) for hole in zero]

    def _collect_oldest(self) -> None:
        item, lengths, known = self._pending.popleft()
        if isinstance(item, Future):
            item = item.result()
            self._inflight_chunks -= len(item)
        idents = [None] if item is None else item
        if known is not None:  # the stored chunks' ids go where the copies left gaps
            stored = iter(idents)
            idents = [ident if ident is not None else next(stored) for ident in known]
        for ident, length in zip(idents, lengths, strict=True):
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


def _tagged_blocks(records: bytes) -> bytes:
    """b"b" + id of each stored block of `records` (holes left out).

    numpy for long lists; a few records (every small file) are quicker in Python,
    where numpy's fixed cost was 9 us a file against 2.
    """
    if len(records) <= 8 * _RECORD.size:
        return _tagged(b"b", [
            ident for ident, _length in _RECORD.iter_unpack(records) if ident != HOLE_ID
        ])  # fmt: skip
    table = np.frombuffer(records, dtype=BLOCK_RECORD)
    stored = table[table["id"] != np.array(HOLE_ID, dtype="V32")]
    tagged = np.empty(len(stored), dtype=[("tag", "S1"), ("id", "V32")])
    tagged["tag"] = b"b"
    tagged["id"] = stored["id"]
    return tagged.tobytes()


def _tagged(tag: bytes, ids: list[bytes]) -> bytes:
    """Kind byte + id for each id: what a transaction re-checks before it commits."""
    return b"".join(tag + ident for ident in ids)


class _BlockCursor:
    """Finds a source file's stored blocks by offset, walking forward (copies mostly do).

    Used by one builder (one thread at a time); a jump back, or far ahead, restarts
    the walk with a search of the block list.
    """

    __slots__ = ("_blocks", "_current", "_next", "reader")

    def __init__(self, reader: FileReader) -> None:
        self.reader = reader
        self._blocks: Iterator[_BlockAt] = iter(())
        self._current: _BlockAt | None = None
        self._next: _BlockAt | None = None  # the block after the current one

    def _seek(self, offset: int) -> _BlockAt | None:
        """The block containing `offset` (None past the end)."""
        current = self._current
        if current is None or current[1] > offset or offset - current[1] > _FAR:
            self._blocks = self.reader.blocks(offset)
            current = next(self._blocks, None)
            self._next = next(self._blocks, None)
        while current is not None and current[1] + current[2] <= offset:
            current, self._next = self._next, next(self._blocks, None)
        self._current = current
        return current

    def stored_id(self, offset: int, length: int) -> bytes | None:
        """The id of the stored block exactly at [offset, offset + length), or None."""
        block = self._seek(offset)
        if block is not None and block[1] == offset and block[2] == length:
            return block[0]
        return None

    def content_cut_block(self, offset: int) -> tuple[bytes, int] | None:
        """(id, length) of the stored block starting at `offset`, if cut by content.

        Not the source's last block, nor one before a hole: their ends were forced.
        """
        block = self._seek(offset)
        following = self._next
        if block is None or block[1] != offset or block[0] is None:
            return None
        if following is None or following[0] is None:
            return None
        return block[0], block[2]


_FAR = 8 << 20  # a cursor searches anew rather than walk this far
_BlockAt = tuple[bytes | None, int, int]  # (id or None for a hole, file offset, length)


class FileReader:
    """Reads one file's content by offset; thread-safe.

    The last `cache_blocks` blocks fetched are kept (with their file offsets when the
    caller gave them), so the many small reads a delta transfer makes inside one block
    cost one fetch, and `read_cached` can answer them without leaving the caller's
    thread (the event loop); a forward `read` fills the cache ahead of itself.
    """

    def __init__(self, objects: ObjectStore, content: Content, *, cache_blocks: int = 8) -> None:
        self._objects = objects
        self.content = content
        self.size = content.size
        self._map = BlockMap(objects, content)
        self._cache: OrderedDict[bytes, tuple[int | None, bytes]] = OrderedDict()
        self._cache_blocks = cache_blocks
        self._last_read = 0  # offset of the latest `read`: forward reads read ahead
        self._lock = threading.Lock()

    def blocks(self, offset: int = 0) -> Iterator[tuple[bytes | None, int, int]]:
        """(block id or None for a hole, file offset, length) from `offset` on."""
        return self._map.blocks(offset)

    @property
    def inline_blocks(self) -> bool:
        """Whether `blocks` needs no I/O (the block list is inside the tree entry)."""
        return self._map.inline

    def fetch(self, block_id: bytes | None, length: int, begin: int | None = None) -> bytes:
        """The content of one block (zeros for a hole); `begin` is its file offset."""
        return self.fetch_many([(block_id, begin, length)])[0]

    def fetch_many(self, blocks: Sequence[tuple[bytes | None, int | None, int]]) -> list[bytes]:
        """`fetch` of each (block id or None, file offset or None, length), in one batch.

        Cached blocks and holes cost no I/O; the others are fetched together (a run of
        a file's blocks is mostly one range read of its pack). The last `cache_blocks`
        of them stay cached.
        """
        out: list[bytes] = []
        wanted: list[tuple[int, bytes, int | None, int]] = []  # (place in out, id, begin, length)
        with self._lock:
            for block_id, begin, length in blocks:
                if block_id is None:
                    out.append(bytes(length))
                    continue
                found = self._cache.get(block_id)
                if found is None:
                    wanted.append((len(out), block_id, begin, length))
                    out.append(b"")
                    continue
                self._cache.move_to_end(block_id)
                if begin is not None and found[0] != begin:
                    self._cache[block_id] = (begin, found[1])
                out.append(found[1])
        if not wanted:
            return out
        fetched = self._objects.get_blocks([(block_id, n) for _i, block_id, _b, n in wanted])
        with self._lock:
            for (i, *_block), data in zip(wanted, fetched, strict=True):
                out[i] = data
            for i, block_id, begin, _length in wanted[-self._cache_blocks :]:
                self._cache[block_id] = (begin, out[i])
            while len(self._cache) > self._cache_blocks:
                self._cache.popitem(last=False)
        return out

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes at `offset` (fewer at the end, b"" past it).

        A read at or after the previous one that has to fetch also fetches the blocks
        after its range, up to the cache's size, in the same batch: a delta transfer
        reading its basis block after block then costs one fetch per cacheful instead of
        one per block.
        """
        end = min(offset + length, self.size)
        if offset >= end:
            return b""
        blocks = self.blocks(offset)
        wanted: list[tuple[bytes | None, int, int]] = []
        for block in blocks:
            if block[1] >= end:
                blocks = itertools.chain([block], blocks)
                break
            wanted.append(block)
        needed = len(wanted)
        with self._lock:
            forward, self._last_read = offset >= self._last_read, offset
            missing = any(b[0] is not None and b[0] not in self._cache for b in wanted)
        if forward and missing:
            for block in blocks:
                if block[0] is None or len(wanted) >= self._cache_blocks:
                    break  # a hole is never read ahead
                wanted.append(block)
        stored = [block if block[0] is not None else (None, block[1], 0) for block in wanted]
        found = self.fetch_many(stored)
        parts = []
        for (block_id, begin, block_length), data in zip(
            wanted[:needed], found[:needed], strict=True
        ):
            first, last = max(offset - begin, 0), min(end - begin, block_length)
            parts.append(data[first:last] if block_id is not None else bytes(last - first))
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
