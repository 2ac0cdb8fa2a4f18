"""Reading one open file of the mount: block fetches with a bounded read-ahead window.

Theory of operation. An `OpenFile` wraps the volume's `FileReader` for one file
content. A read of [offset, end) asks the reader's block map which blocks cover the
range (this may load list objects, so it runs on a worker thread), then fetches each
block on a worker thread, all at once, and slices the answer together. Holes are
zeros made here, never fetched; a 4 GiB hole record costs only the bytes asked for.

Read-ahead. When a read starts near where the previous one ended (the kernel's own
read-ahead issues several requests at once, slightly out of order, hence the slack),
the blocks of the next `READ_AHEAD_BYTES` are fetched in the background as well, so
a sequential reader finds them ready: with a store that answers in tens of
milliseconds (S3), fetching one block at a time would cap a stream at a few MB/s.
Fetches are `_Fetch` records in a window keyed by block offset; a later read that
needs a block already in flight waits for that fetch instead of starting another.

Memory: the window drops blocks that a read has moved past and then the oldest ones
beyond `WINDOW_BYTES`, so one open file holds at most about WINDOW_BYTES plus one
read's blocks, whatever the file size; the kernel's page cache (kept across opens:
snapshot content never changes) serves re-reads.

Integrity. Blocks are named by the hash of their plaintext. In an encrypted store
AES-GCM (with the object key as associated data) already refuses a damaged or
swapped block; in an unencrypted store the volume re-hashes each block it fetches
(`ObjectStore.get_block`) and a mismatch is an `IntegrityError` (EIO): a bad block never
reaches a reader as wrong data or zeros. A failed background fetch fails only a read
that needs that block.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from blockstore.backend import IntegrityError
from blockstore.volume import FileReader

READ_AHEAD_BYTES = 2 << 20
WINDOW_BYTES = 4 << 20
SEQUENTIAL_SLACK = 512 << 10

Spawner = Callable[[Callable[[], Awaitable[None]]], None]
Span = tuple[bytes | None, int, int]  # (block id or None for a hole, file offset, length)


@dataclass(eq=False, slots=True)
class _Fetch:
    """One block being fetched (or fetched): waiters wait on `done`."""

    begin: int
    length: int
    done: trio.Event = field(default_factory=trio.Event)
    data: bytes | None = None
    error: BaseException | None = None


class OpenFile:
    """One open regular file (see the module docstring); used from the trio thread."""

    def __init__(
        self,
        reader: FileReader,
        *,
        run_sync: Callable[..., Awaitable[object]],
        spawn: Spawner,
    ) -> None:
        self._reader = reader
        self.size = reader.size
        self._run_sync = run_sync  # runs a blocking function on a worker thread
        self._spawn = spawn  # starts a task that may outlive the request (read-ahead)
        self._window: OrderedDict[int, _Fetch] = OrderedDict()
        self._window_bytes = 0
        self._last_end = 0

    async def read(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes at `offset` (fewer only at the end of the file)."""
        end = min(offset + size, self.size)
        if offset >= end:
            return b""
        sequential = abs(offset - self._last_end) <= SEQUENTIAL_SLACK
        self._last_end = end
        ahead = min(end + READ_AHEAD_BYTES, self.size) if sequential else end
        spans = await self._spans(offset, ahead)
        needed = [span for span in spans if span[1] < end]
        fetches = {begin: self._start(block_id, begin, length)
                   for block_id, begin, length in needed if block_id is not None}
        for block_id, begin, length in spans[len(needed) :]:
            if block_id is not None:
                self._start(block_id, begin, length)
        parts = []
        for block_id, begin, length in needed:
            lo, hi = max(offset, begin) - begin, min(end, begin + length) - begin
            if block_id is None:
                parts.append(bytes(hi - lo))
                continue
            data = await self._result(fetches[begin])
            parts.append(data[lo:hi])
        self._trim(offset)
        return b"".join(parts)

    def close(self) -> None:
        """Drop the window (fetches still in flight finish and are discarded)."""
        self._window.clear()
        self._window_bytes = 0

    # -- internals -----------------------------------------------------------------------

    async def _spans(self, offset: int, end: int) -> list[Span]:
        def collect() -> list[Span]:
            spans = []
            for span in self._reader.blocks(offset):
                if span[1] >= end:
                    break
                spans.append(span)
            return spans

        return await self._run_sync(collect)  # type: ignore[return-value]

    def _start(self, block_id: bytes, begin: int, length: int) -> _Fetch:
        """The fetch of the block at `begin`: the one in the window, or a new one."""
        fetch = self._window.get(begin)
        if fetch is not None and fetch.length == length:
            return fetch
        fetch = _Fetch(begin, length)
        self._window[begin] = fetch
        self._window_bytes += length
        self._spawn(lambda: self._run_fetch(fetch, block_id))
        return fetch

    async def _run_fetch(self, fetch: _Fetch, block_id: bytes) -> None:
        try:
            fetch.data = await self._run_sync(self._load, block_id, fetch.length)  # type: ignore[assignment]
        except Exception as exc:
            fetch.error = exc
        finally:
            fetch.done.set()

    async def _result(self, fetch: _Fetch) -> bytes:
        await fetch.done.wait()
        if fetch.data is None:
            error = fetch.error or IntegrityError("block fetch was cancelled")
            self._discard(fetch)  # a failure is not cached: the next read tries again
            raise error
        return fetch.data

    def _load(self, block_id: bytes, length: int) -> bytes:
        return self._reader.fetch(block_id, length)  # the volume verifies content

    def _trim(self, offset: int) -> None:
        """Forget blocks a read has moved past, then the oldest beyond WINDOW_BYTES."""
        for begin, fetch in list(self._window.items()):
            if begin + fetch.length <= offset or self._window_bytes > WINDOW_BYTES:
                self._discard(fetch)

    def _discard(self, fetch: _Fetch) -> None:
        if self._window.get(fetch.begin) is fetch:
            del self._window[fetch.begin]
            self._window_bytes -= fetch.length

