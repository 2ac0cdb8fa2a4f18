"""File content in and out of the store `FileSystem`: readers, writers, conversions.

Theory of operation. A `StoreFileWriter` batches the receiver's small writes to
`WRITE_BATCH` bytes on the event loop and hands one batch at a time to the file's
`FileBuilder` on the session's executor while the next batch fills, so network and
store overlap and at most one batch per file is waiting (the builder's pool and the
pack layer's bounded uploads bound the rest). Data the receiver copied from a basis
file of this store (`copy_from`) travels with where it came from (`Copy`), so the
builder reuses the ids of the basis's whole blocks instead of hashing and storing
them again. Its `commit` waits for the builder, puts
the finished file into the session's transaction, and lets the session checkpoint.
A `StoreFileReader` fetches blocks on the executor; `stream` fetches them in runs of
about `READ_RUN` bytes (one executor job per run, not per block: each hop costs GIL
hand-offs; a run's blocks are one batch down the store, mostly one range read of a
pack) and keeps `READ_AHEAD` runs in flight ahead of the consumer so GETs overlap with
sending. Runs are planned `READ_AHEAD` at a time, in one job (on the event loop when the
block list is inline, so needs no I/O), and each is yielded as it is, without
re-cutting it into other pieces. A run whose blocks the session read ahead
(`store_ahead.py`: a pull's small files, many per job) is taken without a job of its own.

`fs_errors` turns store and namespace errors into `FsError` naming the path.
"""

from __future__ import annotations

import asyncio
import errno
import functools
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, ParamSpec, Protocol, TypeVar

from blockstore.backend import StoreError
from blockstore.volume import (
    NEEDS_IO,
    Copy,
    FileBuilder,
    FileReader,
    Transaction,
    TreeEntry,
    Volume,
    WrittenFile,
)
from rsyncd_py.fs.base import FileReader as FsFileReader
from rsyncd_py.fs.base import FsError, Stat
from rsyncd_py.fs.store_ahead import ReadAhead

WRITE_BATCH = 1 << 20
READ_RUN = 1 << 20
READ_AHEAD = 8
INLINE_COMMIT = 64 << 10  # a file this small, all in its last batch, commits on the loop

_P = ParamSpec("_P")
_T = TypeVar("_T")
_Block = tuple[bytes | None, int, int]  # (block id or None for a hole, offset, length)


_AsyncFn = Callable[_P, Coroutine[Any, Any, _T]]


def fs_errors(path_arg: int = 1) -> Callable[[_AsyncFn[_P, _T]], _AsyncFn[_P, _T]]:
    """Decorate an async method so OSError/StoreError leave as FsError naming the path."""

    def wrap(fn: _AsyncFn[_P, _T]) -> _AsyncFn[_P, _T]:
        @functools.wraps(fn)
        async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
            try:
                return await fn(*args, **kwargs)
            except FsError:
                raise
            except StoreError as exc:
                raise FsError(exc.errno, str(exc), _path_of(args, path_arg)) from exc
            except OSError as exc:
                path = getattr(exc, "path", None) or _path_of(args, path_arg)
                raise FsError(exc.errno or errno.EIO, exc.strerror or str(exc), path) from exc

        return wrapper

    return wrap


def _path_of(args: tuple[Any, ...], index: int) -> bytes:
    """The path argument of a decorated call (or the writer's own path)."""
    if len(args) > index and isinstance(args[index], bytes):
        return args[index]
    return getattr(args[0], "_path", b"") if args else b""


def to_stat(entry: TreeEntry) -> Stat:
    """The rsync-facing `Stat` of a tree entry."""
    link_key = ("store", entry.link_group) if entry.link_group is not None else None
    return Stat(entry.mode, entry.size, link_key=link_key, **entry.attrs())


def to_entry(path: bytes, st: Stat) -> TreeEntry:
    """The tree entry (without content) for `st`, named after `path`'s last component."""
    name = path.rpartition(b"/")[2]
    attrs = st.attrs()
    attrs["xattrs"] = tuple(st.xattrs)  # a role may hand a list; entries compare as tuples
    return TreeEntry(name, st.mode, **attrs)


def check_path(path: bytes) -> list[bytes]:
    """The components of a root-relative path; FsError(EINVAL) for '', '.', '..' or NUL."""
    parts = path.split(b"/") if path else []
    for part in parts:
        if part in (b"", b".", b"..") or b"\0" in part:
            raise FsError(errno.EINVAL, "Invalid argument (unsafe path)", path)
    return parts


def content_digests(entry: TreeEntry) -> dict[str, bytes]:
    """Whole-file digests recorded when the file was written.

    "xxh128" (canonical, unseeded XXH3-128) always; "md5" when the store records it
    (`init --md5`).
    """
    content = entry.content
    if content is None:
        return {}
    found = {"xxh128": content.xxh128, "md5": content.md5}
    return {name: value for name, value in found.items() if value is not None}


class Session(Protocol):
    """What readers and writers need from their `StoreFileSystem`."""

    writers: set[StoreFileWriter]
    volume: Volume
    ahead: ReadAhead
    tx: Transaction | None

    def submit(self, fn: Callable[..., _T], *args: Any) -> asyncio.Future[_T]: ...

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T: ...

    def tx_put_file(self, path: bytes, entry: TreeEntry, written: WrittenFile) -> None: ...

    async def after_operation(self) -> None: ...


class StoreFileReader:
    """A file of the store opened for reading (a `FileReader`).

    `digests` holds the whole-file checksums recorded at write time (see
    `content_digests`), so a sender can answer `--checksum` without reading the file.
    """

    def __init__(self, fs: Session, reader: FileReader, digests: dict[str, bytes]) -> None:
        self._fs = fs
        self._reader = reader
        self.size = reader.size
        self.digests = digests

    @fs_errors()
    async def read(self, offset: int, length: int) -> bytes:
        cached = self._reader.read_cached(offset, length)  # most delta reads: no thread hop
        if cached is not None:
            return cached
        return await self._fs.run(self._reader.read, offset, length)

    async def stream(self, chunk_size: int = READ_RUN) -> AsyncIterator[bytes]:
        """Yield the content in order, a run of blocks (about `chunk_size`) at a time.

        Runs are planned READ_AHEAD at a time (`_plan`) and fetched one job each, up to
        READ_AHEAD ahead; a run whose blocks the session read ahead comes from there.
        """
        planner = _RunPlanner(self._reader.blocks(0), chunk_size)
        planned: deque[list[_Block]] = deque()
        inflight: deque[asyncio.Future[bytes]] = deque()
        exhausted = False
        try:
            while True:
                while not exhausted and len(inflight) < READ_AHEAD:
                    if not planned:
                        planned.extend(await self._plan(planner))
                        exhausted = not planned
                        continue
                    run = planned.popleft()
                    if not inflight and (ready := await self._fs.ahead.take(run)) is not None:
                        yield ready
                        continue
                    inflight.append(self._fs.submit(self._fetch_run, run))
                if not inflight:
                    break
                yield await inflight.popleft()
        except StoreError as exc:  # a damaged or missing block: EIO, as a disk would say
            raise FsError(exc.errno, str(exc), b"") from exc
        finally:
            for future in inflight:
                future.cancel()

    async def _plan(self, planner: _RunPlanner) -> list[list[_Block]]:
        """The next READ_AHEAD runs; on the event loop when the walk needs no I/O.

        Most files' block lists are inside their tree entries (up to INLINE_RECORDS
        blocks): planning those on the executor cost a round trip per file (~50 us of
        CPU in wake-ups and future chaining), a third of a small-file pull's sender.
        """
        if self._reader.inline_blocks:
            return planner.next_runs(READ_AHEAD)
        return await self._fs.run(planner.next_runs, READ_AHEAD)

    def _fetch_run(self, run: list[_Block]) -> bytes:
        """On the executor: the content of a run of consecutive blocks."""
        return b"".join(self._reader.fetch_many(run))

    async def close(self) -> None:
        """Nothing to release (blocks are fetched per read)."""


class _RunPlanner:
    """Cuts a file's blocks into runs of about `run_size` bytes (a long hole into pieces)."""

    def __init__(self, blocks: Iterator[_Block], run_size: int) -> None:
        self._blocks = blocks
        self._run_size = run_size
        self._hole: _Block | None = None  # the rest of a hole cut at a run's end

    def next_runs(self, count: int) -> list[list[_Block]]:
        """Up to `count` more runs (fewer, or none, at the end of the file)."""
        runs = []
        while len(runs) < count and (run := self._next_run()):
            runs.append(run)
        return runs

    def _next_run(self) -> list[_Block]:
        run: list[_Block] = []
        size = 0
        while size < self._run_size:
            block = self._hole or next(self._blocks, None)
            self._hole = None
            if block is None:
                break
            block_id, begin, length = block
            room = self._run_size - size
            if block_id is None and length > room:  # never materialise more than a run
                self._hole = (None, begin + room, length - room)
                block = (None, begin, room)
            run.append(block)
            size += block[2]
        return run


class StoreFileWriter:
    """A new file being written into the store (a `FileWriter`)."""

    def __init__(self, fs: Session, path: bytes, builder: FileBuilder) -> None:
        self._fs = fs
        self._path = path
        self._builder = builder
        self._batch = bytearray()
        self._copies: list[Copy] = []  # the ranges of the batch copied from stored files
        self._job: asyncio.Future[None] | None = None
        self._done = False

    async def write(self, data: bytes | memoryview) -> None:
        self._batch += data
        if len(self._batch) >= WRITE_BATCH:
            await self._hand_over()

    async def copy_from(self, source: FsFileReader, offset: int, data: bytes) -> None:
        if isinstance(source, StoreFileReader) and data:
            self._copies.append(Copy(len(self._batch), len(data), source._reader, offset))
        await self.write(data)

    async def write_zeros(self, length: int) -> None:
        await self._hand_over()
        await self._wait()
        await self._fs.run(self._builder.write_zeros, length)

    async def _hand_over(self) -> None:
        """Give the filled batch to the builder; wait only for the previous batch."""
        if not self._batch:
            return
        await self._wait()
        batch, self._batch = self._batch, bytearray()  # handed over, never touched again
        copies, self._copies = self._copies, []
        self._job = self._fs.submit(self._builder.write, batch, copies)

    async def _wait(self) -> None:
        job, self._job = self._job, None
        if job is not None:
            await job

    @fs_errors()
    async def commit(self, st: Stat) -> None:
        if self._done:
            raise FsError(errno.EINVAL, "file writer already finished", self._path)
        try:
            await self._wait()
            batch, self._batch = self._batch, bytearray()
            copies, self._copies = self._copies, []
            # the last batch, finish and the namespace update in one executor job: each
            # hop costs GIL hand-offs, and a push of small files pays them per file
            entry = to_entry(self._path, st)
            if self._finishes_here(batch, copies):
                await self._finish_here(batch, entry, st.size)
            else:
                await self._fs.run(self._finish, batch, copies, entry, st.size)
        except BaseException:
            await self.abort()
            raise
        self._done = True
        self._fs.writers.discard(self)
        await self._fs.after_operation()

    def _finish(self, batch: bytearray, copies: list[Copy], entry: TreeEntry, size: int) -> None:
        """On the executor: store the last batch, finish the file, put it in the tree."""
        self._fs.tx_put_file(self._path, entry, self._written(batch, copies, size))

    def _written(self, batch: bytearray, copies: list[Copy], size: int) -> WrittenFile:
        """Store the last batch and finish the file (which must then hold `size` bytes)."""
        if batch:
            self._builder.write(batch, copies)
        if self._builder.size != size:
            raise FsError(
                errno.EINVAL, f"commit of {size} bytes after {self._builder.size}", self._path
            )
        return self._builder.finish()

    def _finishes_here(self, batch: bytearray, copies: list[Copy]) -> bool:
        """Whether the file can be stored on the event loop without waiting for I/O.

        A push of small files paid an executor round trip per file (~60 us of CPU in
        wake-ups and future chaining) for ~50 us of store work. A file of at most
        INLINE_COMMIT bytes, all in this last batch (no builder job ran, so none is
        pending; no copies, whose sources' block lists may need fetching), is hashed,
        compressed and appended to the open pack right here, which waits for no upload
        while the pack layer has an upload slot free (`PackLayer.may_wait`). Short
        waits remain: the pack layer's lock while an upload thread indexes a slice of a
        finished pack (`INDEX_SLICE` objects, ~5 us each, longer when the index table
        grows), and the GIL.
        """
        if copies or self._builder.size or len(batch) > INLINE_COMMIT or self._fs.tx is None:
            return False
        pack = self._fs.volume.pack_layer
        return pack is not None and not pack.may_wait()

    async def _finish_here(self, batch: bytearray, entry: TreeEntry, size: int) -> None:
        """`_finish` on the event loop; only placing the file may still need the executor."""
        written = self._written(batch, [], size)
        tx = self._fs.tx
        assert tx is not None
        if tx.put_file_cached(self._path, entry, written) is NEEDS_IO:
            await self._fs.run(self._fs.tx_put_file, self._path, entry, written)

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._fs.writers.discard(self)
        job, self._job = self._job, None
        if job is not None:
            await asyncio.gather(job, return_exceptions=True)
        await self._fs.run(self._builder.abort)
