"""Small files' blocks read ahead of a pull's requests, many files per executor job.

Theory of operation. A pull of many small files asks for them one at a time, in
file-list order, and each one's content is a block or two. Fetching those on the
executor cost a round trip per file (~30 us of CPU in thread wake-ups and future
chaining, more than the read itself). The sender names the files it expects to be
asked for next (`StoreFileSystem.read_ahead` -> `ReadAhead.add`); the blocks of those
whose block lists are inline and that are at most `MAX_FILE` bytes are fetched in one
job, up to `MAX_BATCH` bytes -- files written together are neighbours in one pack, so
that is mostly one range read -- and a reader whose run of blocks is all here takes it
on the event loop (`take`), waiting for the job if it is still running.

Bounded: the blocks of the last `KEEP_BATCHES` jobs are kept, no more. A wrong guess
costs a block read, never a wrong answer: blocks are found by id, and ids name content.
A job that fails is not an error here: the readers it would have served fetch their
own blocks as if nothing had been read ahead, and report their own errors.

State: `_where` (block id -> the job fetching it), `_batches` (jobs, oldest first).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from blockstore.volume import Content
from blockstore.volume.blocklist import inline_blocks
from blockstore.volume.objectstore import ObjectStore

MAX_FILE = 64 << 10  # larger files are read on their own, in runs (store_io.READ_RUN)
MAX_BATCH = 1 << 20  # block bytes per job
KEEP_BATCHES = 4

_Batch = asyncio.Future[dict[bytes, bytes]]
Submit = Callable[..., "asyncio.Future[Any]"]


class ReadAhead:
    """The blocks fetched ahead for one session (see the module docstring)."""

    def __init__(self, objects: ObjectStore, submit: Submit) -> None:
        self._objects = objects
        self._submit = submit
        self._where: dict[bytes, _Batch] = {}
        self._batches: deque[tuple[list[bytes], _Batch]] = deque()

    def add(self, contents: Iterable[Content]) -> None:
        """Start one job fetching the blocks of `contents` not here or coming already."""
        wanted: dict[bytes, int] = {}
        total = 0
        for content in contents:
            blocks = inline_blocks(content) if content.size <= MAX_FILE else None
            if blocks is None:
                continue
            for block_id, length in blocks:
                if block_id is not None and block_id not in self._where:
                    total += length if block_id not in wanted else 0
                    wanted[block_id] = length
            if total >= MAX_BATCH:
                break
        if not wanted:
            return
        batch: _Batch = self._submit(self._fetch, list(wanted.items()))
        batch.add_done_callback(_observe)
        ids = list(wanted)
        for block_id in ids:
            self._where[block_id] = batch
        self._batches.append((ids, batch))
        while len(self._batches) > KEEP_BATCHES:
            old_ids, old = self._batches.popleft()
            for block_id in old_ids:
                if self._where.get(block_id) is old:
                    del self._where[block_id]

    def _fetch(self, blocks: Sequence[tuple[bytes, int]]) -> dict[bytes, bytes]:
        """On the executor: the blocks of one job, by id."""
        found = self._objects.get_blocks(blocks)
        return {block_id: data for (block_id, _length), data in zip(blocks, found, strict=True)}

    async def take(self, run: Sequence[tuple[bytes | None, int, int]]) -> bytes | None:
        """The content of a run of (block id or None, offset, length), or None.

        None when a block of it was not read ahead, or its job failed: the caller
        fetches the run itself.
        """
        batches: list[_Batch] = []
        for block_id, _begin, _length in run:
            if block_id is not None:
                batch = self._where.get(block_id)
                if batch is None:
                    return None
                batches.append(batch)
        parts: list[bytes] = []
        pending = iter(batches)
        for block_id, _begin, length in run:
            if block_id is None:
                parts.append(bytes(length))
                continue
            batch = next(pending)
            if not batch.done():
                await asyncio.wait((batch,))  # shared by later readers: never cancel it
            if batch.cancelled() or batch.exception() is not None:
                return None
            parts.append(batch.result()[block_id])
        return b"".join(parts)

    def close(self) -> None:
        """Forget everything; jobs still running finish unobserved."""
        self._where.clear()
        self._batches.clear()


def _observe(batch: _Batch) -> None:
    """Retrieve a job's outcome, so asyncio never logs a failed one nobody took from."""
    if not batch.cancelled():
        batch.exception()
