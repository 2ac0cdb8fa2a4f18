"""`FileSystem` over the block store's volume: what rsync sessions push into and pull from.

Theory of operation. The volume core (`blockstore.volume`) is synchronous and
thread-safe; this module is its thin async facade.

- **One volume per process.** `StoreProvider.open` opens the store once (with the pack
  layer). A writable session gets its own `Transaction` on the newest snapshot; a
  read-only session gets a namespace of the newest snapshot. The store lease is taken
  when the first writable session starts and released when the last one ends, so
  maintenance commands (gc, forget) can run while the server is idle.
- **Threads.** Blocking work (tree fetches, block I/O, commits) runs on a bounded
  executor. Lookups whose directories are already loaded are answered on the event
  loop (`lookup_cached`), which is what makes a file-list walk cheap.
- **File content** goes through `store_io.py`: writes batched on the event loop and
  handed to the file's builder one batch at a time (network and store overlap, memory
  stays bounded), reads with block fetches in flight ahead of the consumer.
- **Checkpoints.** After any completed operation, if `CHECKPOINT_SECONDS` have passed
  since the last commit, or `CHECKPOINT_OPERATIONS` operations were done, the session
  commits what it has so far (whole operations only: an open file writer is not part of
  the namespace until its commit). Every change stays in memory until it is committed
  (about 1 KB an entry), so the count is what bounds a session's memory when a tree of
  many small files arrives faster than the clock would checkpoint it.
- **`/.snapshots`.** The path `.snapshots` at the root is a virtual read-only directory:
  one subdirectory per snapshot id (mtime = snapshot time) showing that snapshot's
  tree. It is not listed in the root (a recursive pull of `/` must not copy history)
  and cannot be created; anything that would write under it fails with EROFS.

Every error leaves as `FsError` with the errno and a message naming the path.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from blockstore.backend import StoreError
from blockstore.layers.fault import FaultSpec
from blockstore.volume import (
    NEEDS_IO,
    RESERVED_ROOT_NAME,
    Namespace,
    Transaction,
    TreeEntry,
    Volume,
    WrittenFile,
    open_volume,
)
from blockstore.volume.snapshots import snapshot_time_ns
from rsyncd_py.fs.base import FsError, Stat
from rsyncd_py.fs.factory import StoreOptions
from rsyncd_py.fs.store_ahead import ReadAhead
from rsyncd_py.fs.store_io import (
    StoreFileReader,
    StoreFileWriter,
    check_path,
    content_digests,
    fs_errors,
    to_entry,
    to_stat,
)

FAULTS_ENV = "RSYNCD_PY_FAULTS"  # a testing aid: see `injected_faults`
CHECKPOINT_SECONDS = 60.0
CHECKPOINT_OPERATIONS = 25_000
_SNAPSHOT_DIR_MODE = 0o040555
_M_ARENA_MAX = -8  # glibc malloc.h
_T = TypeVar("_T")

log = logging.getLogger(__name__)


class StoreFileSystem:
    """One session's view of the volume (see the module docstring)."""

    def __init__(
        self,
        provider: StoreProvider,
        *,
        tx: Transaction | None = None,
        view: Namespace | None = None,
    ) -> None:
        self._provider = provider
        self.volume = provider.volume
        self.tx = tx
        self.read_only = tx is None
        self._ns: Namespace = tx.ns if tx is not None else view  # type: ignore[assignment]
        self._snapshot_ids_cache: list[str] | None = None
        self._snapshot_views: dict[str, Namespace] = {}
        self.ahead = ReadAhead(self.volume.objects, self.submit)
        self.writers: set[StoreFileWriter] = set()
        self._last_checkpoint = time.monotonic()
        self._operations = 0  # since the last checkpoint
        self._closed = False

    # -- plumbing ------------------------------------------------------------------------

    def submit(self, fn: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:
        """Start `fn(*args)` on the provider's executor."""
        return asyncio.get_running_loop().run_in_executor(self._provider.executor, fn, *args)

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run `fn(*args)` on the provider's executor and wait for its result."""
        return await self.submit(fn, *args)

    def tx_put_file(self, path: bytes, entry: TreeEntry, written: WrittenFile) -> None:
        """Put a finished file into the session's transaction (on the executor)."""
        assert self.tx is not None
        self.tx.put_file(path, entry, written)

    async def after_operation(self) -> None:
        """Commit a checkpoint if one is due (called between whole operations)."""
        if self.tx is None:
            return
        self._operations += 1
        if (
            self._operations < CHECKPOINT_OPERATIONS
            and time.monotonic() - self._last_checkpoint < CHECKPOINT_SECONDS
        ):
            return
        self._last_checkpoint = time.monotonic()
        self._operations = 0
        await self.run(self.tx.checkpoint)
        self._ns = self.tx.ns

    def check_writable(self, path: bytes) -> None:
        """Raise FsError(EROFS) unless this session may write at `path`.

        Not part of the FileSystem contract: a push checks its destination with it
        before anything else, so a push into /.snapshots fails once with the reason.
        """
        self._writable(path)

    def _writable(self, path: bytes) -> Transaction:
        parts = check_path(path)
        if parts and parts[0] == RESERVED_ROOT_NAME:
            raise FsError(
                errno.EROFS, "Read-only file system (/.snapshots holds read-only snapshots)", path
            )
        if self.tx is None:
            raise FsError.read_only(path)
        return self.tx

    async def _lookup(self, path: bytes) -> TreeEntry | None:
        """The entry at `path` in this session's tree or the snapshot view."""
        parts = check_path(path)
        if parts and parts[0] == RESERVED_ROOT_NAME:
            return await self._snapshot_lookup(parts)
        ns = self.tx.ns if self.tx is not None else self._ns
        found = ns.lookup_cached(path)
        if found is NEEDS_IO:
            return await self.run(ns.lookup, path)
        return found  # type: ignore[return-value]

    # -- /.snapshots ---------------------------------------------------------------------

    async def _snapshot_ids(self, *, refresh: bool = False) -> list[str]:
        """Snapshot ids, oldest first (one LIST, cached for the session until refreshed)."""
        if self._snapshot_ids_cache is None or refresh:
            self._snapshot_ids_cache = await self.run(self.volume.snapshot_ids)
        return self._snapshot_ids_cache

    async def _snapshot_view(self, snapshot_id: bytes) -> Namespace | None:
        """A namespace of snapshot `snapshot_id` (loaded once per session), or None."""
        text = snapshot_id.decode(errors="replace")
        view = self._snapshot_views.get(text)
        if view is None:
            known = text in await self._snapshot_ids()
            if not known and text not in await self._snapshot_ids(refresh=True):
                return None
            snap = await self.run(self.volume.load_snapshot, text)
            view = self._snapshot_views[text] = self.volume.namespace(snap)
        return view

    async def _snapshot_lookup(self, parts: list[bytes]) -> TreeEntry | None:
        if len(parts) == 1:
            ids = await self._snapshot_ids()
            newest = snapshot_time_ns(ids[-1]) if ids else 0
            return TreeEntry(RESERVED_ROOT_NAME, _SNAPSHOT_DIR_MODE, mtime_ns=newest)
        view = await self._snapshot_view(parts[1])
        if view is None:
            return None
        if len(parts) == 2:
            return _snapshot_dir(parts[1].decode())
        return await self.run(view.lookup, b"/".join(parts[2:]))

    async def _snapshot_listdir(self, parts: list[bytes], path: bytes) -> list[TreeEntry]:
        if len(parts) == 1:
            return [_snapshot_dir(i) for i in await self._snapshot_ids(refresh=True)]
        view = await self._snapshot_view(parts[1])
        if view is None:
            raise FsError.not_found(path)
        return await self.run(view.listdir, b"/".join(parts[2:]))

    # -- reading -------------------------------------------------------------------------

    @fs_errors()
    async def lstat(self, path: bytes) -> Stat | None:
        entry = await self._lookup(path)
        return to_stat(entry) if entry is not None else None

    @fs_errors()
    async def listdir(self, path: bytes) -> Sequence[tuple[bytes, Stat]]:
        parts = check_path(path)
        if parts and parts[0] == RESERVED_ROOT_NAME:
            entries = await self._snapshot_listdir(parts, path)
        else:
            entry = await self._lookup(path)
            if entry is None:
                raise FsError.not_found(path)
            if not entry.is_dir():
                raise FsError(errno.ENOTDIR, "Not a directory", path)
            ns = self.tx.ns if self.tx is not None else self._ns
            entries = await self.run(ns.listdir, path)
        return [(entry.name, to_stat(entry)) for entry in entries]

    @fs_errors()
    async def open_read(self, path: bytes) -> StoreFileReader:
        entry = await self._lookup(path)
        if entry is None:
            raise FsError.not_found(path)
        if not entry.is_file() or entry.content is None:
            err = errno.EISDIR if entry.is_dir() else errno.EINVAL
            raise FsError(err, "Is a directory" if entry.is_dir() else "Not a regular file", path)
        return StoreFileReader(self, self.volume.reader(entry.content), content_digests(entry))

    def read_ahead(self, paths: Sequence[bytes]) -> None:
        """A hint: the regular files at `paths` will probably be read soon, in order.

        Store-only (not part of the FileSystem contract): a pull's sender names the
        files it expects to be asked for next, and the small ones among those already
        looked up (no I/O here) are fetched together (`store_ahead.py`).
        """
        ns = self.tx.ns if self.tx is not None else self._ns
        contents = []
        for path in paths:
            try:
                entry = ns.lookup_cached(path)
            except OSError:  # not a path of this tree (any more): nothing to read ahead
                continue
            if isinstance(entry, TreeEntry) and entry.content is not None:
                contents.append(entry.content)
        self.ahead.add(contents)

    @fs_errors()
    async def file_digests(self, path: bytes) -> dict[str, bytes]:
        """Whole-file digests of the regular file at `path` ({} if none recorded).

        Store-only (not part of the FileSystem contract): the roles may use it for
        `--checksum` and the end-of-file checksum without reading the content.
        """
        entry = await self._lookup(path)
        return content_digests(entry) if entry is not None else {}

    # -- writing -------------------------------------------------------------------------

    @fs_errors()
    async def create(self, path: bytes) -> StoreFileWriter:
        tx = self._writable(path)
        if tx.check_new_file_cached(path) is NEEDS_IO:  # no thread hop when loaded
            await self.run(tx.check_new_file, path)
        writer = StoreFileWriter(self, path, self.volume.new_file())
        self.writers.add(writer)
        return writer

    async def _change(self, change: Callable[..., None], path: bytes, *args: Any) -> None:
        """Run the transaction method `change(tx, path, *args)`; checkpoint if one is due."""
        tx = self._writable(path)
        await self.run(change, tx, path, *args)
        await self.after_operation()

    @fs_errors()
    async def mkdir(self, path: bytes, st: Stat) -> None:
        await self._change(Transaction.mkdir, path, to_entry(path, st))

    @fs_errors()
    async def symlink(self, path: bytes, st: Stat) -> None:
        if st.link_target is None:
            raise FsError(errno.EINVAL, "symlink without a target", path)
        await self._change(Transaction.put_special, path, to_entry(path, st))

    @fs_errors()
    async def mknod(self, path: bytes, st: Stat) -> None:
        await self._change(Transaction.put_special, path, to_entry(path, st))

    @fs_errors()
    async def link(self, path: bytes, existing: bytes) -> None:
        if check_path(existing)[:1] == [RESERVED_ROOT_NAME]:
            # a snapshot's entry cannot join a group: a copy shares its content anyway
            await self._change(Transaction.put_copy, path, await self._existing(existing))
            return
        self._writable(existing)
        await self._change(Transaction.link, path, existing)

    @fs_errors()
    async def copy(self, path: bytes, existing: bytes, st: Stat) -> None:
        """Make `path` a regular file with `existing`'s content (shared) and `st`'s metadata."""
        source = await self._existing(existing)
        if not source.is_file() or source.content is None:
            raise FsError(errno.EINVAL, "Not a regular file", existing)
        entry = replace(to_entry(path, st), content=source.content)
        await self._change(Transaction.put_copy, path, entry)

    async def _existing(self, path: bytes) -> TreeEntry:
        entry = await self._lookup(path)
        if entry is None:
            raise FsError.not_found(path)
        return entry

    @fs_errors()
    async def set_stat(self, path: bytes, st: Stat) -> None:
        await self._change(Transaction.set_meta, path, to_entry(path, st))

    @fs_errors()
    async def rename(self, old: bytes, new: bytes) -> None:
        self._writable(new)
        await self._change(Transaction.rename, old, new)

    @fs_errors()
    async def remove(self, path: bytes) -> None:
        await self._change(Transaction.remove, path)

    @fs_errors()
    async def close(self, success: bool) -> None:
        """Commit the session (success) or drop its uncommitted changes."""
        if self._closed:
            return
        self._closed = True
        self.ahead.close()
        try:
            for writer in list(self.writers):
                await writer.abort()
            if self.tx is not None:
                if success:
                    await self.run(self.tx.commit)
                else:
                    self.tx.abort()
        finally:
            if self.tx is not None:
                await self._provider.release_writer()


def _snapshot_dir(snapshot_id: str) -> TreeEntry:
    """How `/.snapshots/<id>` appears: a read-only directory dated at the commit."""
    return TreeEntry(snapshot_id.encode(), _SNAPSHOT_DIR_MODE,
                     mtime_ns=snapshot_time_ns(snapshot_id))


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas for this process (like MALLOC_ARENA_MAX=2).

    The store moves every pushed byte through several threads (executor, block pool,
    uploaders) in 64 KiB-1 MiB pieces allocated in one thread and freed in another;
    with glibc's default of 8 arenas per core, a 6 GiB push grew RSS by ~10 MiB per GiB
    from fragmentation alone, and stayed flat at ~175 MiB with two arenas (measured with
    bench/volume_push.py). Takes effect for arenas created afterwards, so it runs before
    the store's threads start. A no-op where libc is not glibc.
    """
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_ARENA_MAX, arenas)
    except (OSError, AttributeError):
        pass


def injected_faults() -> FaultSpec | None:
    """The store faults ``$RSYNCD_PY_FAULTS`` asks for, or None when it is unset.

    A testing aid (docs/OPERATIONS.md): the fault layer sits below the retry layer, so
    sessions must survive what it injects. Logged as a warning so a server started with
    it by mistake says so; a spec that does not parse is a ValueError naming the variable.
    """
    text = os.environ.get(FAULTS_ENV)
    if not text:
        return None
    try:
        spec = FaultSpec.parse(text)
    except ValueError as exc:
        raise ValueError(f"{FAULTS_ENV}={text!r}: {exc}") from None
    log.warning("%s is set: injecting store faults (%s); for testing only", FAULTS_ENV, text)
    return spec


class StoreProvider:
    """Sessions over one volume per process (see the module docstring)."""

    def __init__(self, volume: Volume, *, force: bool = False, workers: int = 8) -> None:
        self.volume = volume
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="store-fs")
        self._force = force
        self._writers = 0
        self._lease_lock = asyncio.Lock()

    @classmethod
    def open(cls, options: StoreOptions) -> StoreProvider:
        """Open the store `options` names (raises StoreError with a clear message)."""
        limit_malloc_arenas()
        return cls(open_volume(options.url, key_file=options.key_file, state_dir=options.cache_dir,
                               fault=injected_faults()))

    async def open_session(self, *, writable: bool, user: str | None = None) -> StoreFileSystem:
        """A transaction on the newest snapshot (writable) or a view of it."""
        loop = asyncio.get_running_loop()
        if not writable:
            latest = await loop.run_in_executor(self.executor, self.volume.latest)
            return StoreFileSystem(self, view=self.volume.namespace(latest))
        async with self._lease_lock:
            if self._writers == 0:
                acquire = functools.partial(self.volume.acquire_lease, force=self._force)
                try:
                    await loop.run_in_executor(self.executor, acquire)
                except StoreError as exc:
                    raise FsError(exc.errno, str(exc), b"") from exc
            self._writers += 1
        tx = await loop.run_in_executor(self.executor, self.volume.begin)
        return StoreFileSystem(self, tx=tx)

    async def release_writer(self) -> None:
        """A writable session ended; the last one to end releases the store lease."""
        async with self._lease_lock:
            self._writers -= 1
            if self._writers == 0:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self.executor, self.volume.release_lease)

    async def aclose(self) -> None:
        """Let running jobs finish, then close the volume (flush, drop the lease)."""
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self.executor.shutdown(wait=True)
        self.volume.close()
