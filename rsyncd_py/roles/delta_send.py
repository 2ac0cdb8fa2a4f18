"""One file's delta on the wire: rsync's match.c match_sums, streamed.

Theory of operation. The file is read sequentially with `FileReader.stream` (the store
fetches blocks ahead while we work, so GETs overlap with sending). Each chunk goes
through a `_FileJob` -- the block search (`protocol/match.py`, numpy), the token encoder
and the whole-file hash -- on a worker thread, while the event loop keeps writing what
the previous chunk produced; `Wire.drain` is the backpressure. Memory per file is the
stream's read-ahead plus the matcher's one window, whatever the file's size.

The token encoder belongs to the session, not the file: zstd keeps one context for the
whole transfer (token.c), the others reset per file in `start_file`.

The whole-file checksum (sent after the tokens) is the file system's recorded digest
when it has one for the negotiated, unseeded algorithm; otherwise it is computed while
sending. If reading fails part-way, the rest of the file is sent as zeros and the
checksum is deliberately wrong, as rsync's map_ptr does, so the client discards the
file, asks again in the redo phase, and finally reports it as failed.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from typing import Final, TypeVar

from rsyncd_py.fs.base import FileReader, FsError
from rsyncd_py.protocol import checksums
from rsyncd_py.protocol.checksums import Hasher
from rsyncd_py.protocol.handshake import Negotiated
from rsyncd_py.protocol.match import BlockSums, Matcher
from rsyncd_py.protocol.tokens import Literal, Match, TokenEncoder
from rsyncd_py.wire import Wire

T = TypeVar("T")

STREAM_CHUNK: Final = 1 << 20  # bytes read and matched per step
_INLINE_LIMIT: Final = 128 << 10  # smaller steps run on the event loop (no thread hop)


class _FileJob:
    """The synchronous part of match_sums for one file: search, encode, hash.

    Runs on a worker thread one call at a time; it never touches the event loop.
    """

    def __init__(
        self,
        sums: BlockSums,
        neg: Negotiated,
        encoder: TokenEncoder,
        hasher: Hasher | None,
        *,
        keep_blocks: bool,
    ) -> None:
        self.sums = sums
        self.encoder = encoder
        self.hasher = hasher
        self.matcher = (
            Matcher(sums, neg.checksum, neg.protocol, neg.seed, neg.seed_fix)
            if sums.count
            else None
        )
        # zlib puts matched blocks into its history, so it needs their bytes: keep the
        # undecided tail of the file (it is what the matcher holds, no more)
        self.keep_blocks = keep_blocks and self.matcher is not None
        self._window = bytearray()
        self._window_start = 0
        self.offset = 0  # bytes of the file described by tokens so far
        self.literal = 0
        self.matched = 0

    def feed(self, chunk: bytes) -> bytes:
        """Search the next chunk; return the wire bytes of the tokens now decided."""
        if self.hasher is not None:
            self.hasher.update(chunk)
        if self.matcher is None:
            return self._encode([Literal(chunk)])
        if self.keep_blocks:
            self._window += chunk
        return self._encode(self.matcher.feed(chunk))

    def finish(self) -> bytes:
        """The remaining tokens and the end marker."""
        items = self.matcher.finish() if self.matcher is not None else []
        return self._encode(items) + self.encoder.end()

    def _encode(self, items: list[Literal | Match]) -> bytes:
        encoder = self.encoder
        out: list[bytes] = []
        for item in items:
            if isinstance(item, Literal):
                out.append(encoder.literal(item.data))
                self.literal += len(item.data)
                self.offset += len(item.data)
                continue
            length = self.sums.block_len(item.index)
            block: bytes | memoryview = b""
            if self.keep_blocks:
                start = self.offset - self._window_start
                block = memoryview(self._window)[start : start + length]
            out.append(encoder.match(item.index, block))
            if isinstance(block, memoryview):
                block.release()
            self.matched += length
            self.offset += length
        if self.keep_blocks and self.offset > self._window_start:
            del self._window[: self.offset - self._window_start]
            self._window_start = self.offset
        return b"".join(out)


class DeltaSender:
    """match.c's per-session state: the token encoder and the data counters."""

    def __init__(self, wire: Wire, neg: Negotiated, encoder: TokenEncoder) -> None:
        self.wire = wire
        self.neg = neg
        self.encoder = encoder
        self.xfer_sum_len = checksums.digest_len(neg.checksum)
        self.literal_data = 0
        self.matched_data = 0

    def file_hasher(self) -> Hasher:
        return checksums.new_file_hasher(
            self.neg.checksum, protocol=self.neg.protocol, seed=self.neg.seed
        )

    async def match_sums(
        self,
        reader: FileReader,
        sums: BlockSums,
        recorded: bytes | None,
        *,
        skip: int = 0,
        hash_skipped: bool = False,
    ) -> FsError | None:
        """Rsync match.c:match_sums: send the file's tokens and whole-file checksum.

        `recorded` is the whole-file checksum in wire order when the file system knows
        it. --append: the first `skip` bytes are the client's already and are not sent;
        they count in the checksum only with `hash_skipped` (--append-verify). Returns
        the read error that spoilt the file (already sent as a bad checksum), or None.
        """
        self.encoder.start_file()
        hasher = None if recorded is not None else self.file_hasher()
        job = _FileJob(
            sums,
            self.neg,
            self.encoder,
            hasher,
            keep_blocks=self.neg.compression == "zlib",
        )
        sent = 0
        failure: FsError | None = None
        try:
            async for chunk in reader.stream(STREAM_CHUNK):
                take = chunk[: max(reader.size - sent, 0)]
                if sent < skip and take:
                    prefix = take[: skip - sent]
                    if hasher is not None and hash_skipped:
                        await _run(hasher.update, prefix)
                    sent += len(prefix)
                    take = take[len(prefix) :]
                if take:
                    await self._write(await _run(job.feed, take))
                    sent += len(take)
        except FsError as exc:
            failure = exc
        if sent < reader.size:  # map_ptr's zeros for what could not be read
            if failure is None:
                failure = FsError(errno.EIO, "Input/output error (file shrank while sending)")
            zeros = bytes(min(STREAM_CHUNK, reader.size - sent))
            while sent < reader.size:
                piece = zeros[: reader.size - sent]
                await self._write(await _run(job.feed, piece))
                sent += len(piece)
        tail = await _run(job.finish)
        digest = (hasher.digest() if hasher is not None else recorded or b"")[: self.xfer_sum_len]
        if failure is not None:
            digest = bytes(b ^ 0xFF for b in digest)  # make sure the client rejects it
        await self._write(tail + digest)
        self.literal_data += job.literal
        self.matched_data += job.matched
        return failure

    async def _write(self, data: bytes) -> None:
        if data:
            self.wire.write(data)
            await self.wire.drain()


async def _run(fn: Callable[..., T], *args: object) -> T:
    """Run a CPU step on a worker thread, or inline when it is small."""
    size = sum(len(a) for a in args if isinstance(a, bytes | bytearray | memoryview))
    if size < _INLINE_LIMIT:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)
