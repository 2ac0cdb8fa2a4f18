"""Transactions: a writable overlay on the newest snapshot, committed as a new snapshot.

Theory of operation. A `Transaction` owns a `Namespace` started from its base snapshot.
Every operation changes that namespace at once, so the session's later lookups see it;
nothing reaches a snapshot until `commit()` (or `checkpoint()`, which commits and goes
on). Only whole operations ever enter the namespace: a file appears when its writer
finishes (`put_file`), never half-written, so a checkpoint taken between operations is
a consistent state.

Commit protocol (the order is what makes a crash harmless):
1. take the volume's commit lock (sessions of one process commit one at a time) and
   check the store lease is still ours;
2. find the newest snapshot; if it is not our base, rebase our changes onto it
   (rebase.py);
3. write the dirty trees (bottom-up), then `flush()` the backend: every block, list and
   tree object is now uploaded and indexed;
4. check that every block and list object this transaction referenced is present (an
   upload another session was waiting on may have failed: better to refuse the commit
   than to write a snapshot with a hole in it);
5. write the snapshot object: the commit point. Before it, the previous snapshot is
   still the newest and at worst some unreferenced objects exist (gc removes them).

States: open -> (commit | checkpoint -> open) ... -> closed (after commit or abort).
A failed commit leaves the transaction open with its changes, so the caller may retry.
Changes and commits exclude each other (`_mutex`): a change arriving from another task
of the session while a checkpoint runs waits for it. After each commit the transaction
continues on a fresh namespace of the new snapshot, so memory is bounded by what one
checkpoint interval touches, not by the whole session.
"""

from __future__ import annotations

import errno
import functools
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from blockstore.backend import StoreError
from blockstore.volume.blockid import ID_SIZE, block_key, tree_key
from blockstore.volume.objects import TreeEntry
from blockstore.volume.rebase import rebase
from blockstore.volume.snapshots import Snapshot, empty_root, new_snapshot_id
from blockstore.volume.tree import NEEDS_IO, NamespaceError, split_path

if TYPE_CHECKING:
    from blockstore.volume.files import WrittenFile
    from blockstore.volume.volume import Volume

RESERVED_ROOT_NAME = b".snapshots"  # the read-only snapshot view lives here


_F = TypeVar("_F", bound=Callable[..., Any])


def _exclusive(method: _F) -> _F:
    """Run a transaction method under its mutex (changes and commits exclude each other)."""

    @functools.wraps(method)
    def wrapper(self: Transaction, *args: Any, **kwargs: Any) -> Any:
        with self._mutex:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class _NotLoaded(Exception):
    """A cached lookup needed a tree fetch (check_new_file_cached answers NEEDS_IO)."""


class MissingObjectsError(StoreError):
    """A commit found objects it references missing after the flush (a failed upload)."""


class Transaction:
    """A writable session on a volume (see the module docstring); thread-safe."""

    def __init__(self, volume: Volume, base: Snapshot | None) -> None:
        self.volume = volume
        self.base = base
        self._base_root = base.root if base is not None else empty_root()
        self.ns = volume.namespace(base)
        self._referenced = bytearray()  # kind byte + id of each object new content uses
        self._files = 0
        self._bytes = 0
        self._lock = threading.Lock()  # guards the counters below
        # held by every change and across a whole commit: a change made while a commit
        # runs waits for it rather than landing in a namespace about to be replaced
        self._mutex = threading.RLock()
        self._requests_at_start = volume.request_stats()
        # hard-link groups whose metadata this transaction set (link group -> change)
        self._group_changes: dict[int, Callable[[TreeEntry], TreeEntry]] = {}
        self.closed = False

    # -- reading -----------------------------------------------------------------------

    def lookup(self, path: bytes) -> TreeEntry | None:
        return self.ns.lookup(path)

    def lookup_cached(self, path: bytes) -> TreeEntry | object | None:
        return self.ns.lookup_cached(path)

    def listdir(self, path: bytes) -> list[TreeEntry]:
        return self.ns.listdir(path)

    # -- changing ----------------------------------------------------------------------

    def check_new_file(self, path: bytes) -> None:
        """Fail early if a file could not be committed at `path` (before writing it)."""
        self._check_new_file(path, self.ns.lookup)

    def check_new_file_cached(self, path: bytes) -> object | None:
        """`check_new_file` from loaded directories only: NEEDS_IO if it must fetch.

        What a push of many small files asks once per file, answered without a thread
        hop when the parent directory is already loaded (nearly always).
        """
        try:
            self._check_new_file(path, self._lookup_loaded)
        except _NotLoaded:
            return NEEDS_IO
        return None

    def _lookup_loaded(self, path: bytes) -> TreeEntry | None:
        found = self.ns.lookup_cached(path)
        if found is NEEDS_IO:
            raise _NotLoaded
        return found  # type: ignore[return-value]

    def _check_new_file(self, path: bytes, lookup: Callable[[bytes], TreeEntry | None]) -> None:
        self._check_parent(path, lookup)
        existing = lookup(path)
        if existing is not None and existing.is_dir():
            raise NamespaceError(errno.EISDIR, "Is a directory", path)

    @_exclusive
    def put_file(self, path: bytes, entry: TreeEntry, written: WrittenFile) -> None:
        """Commit a finished file at `path` (replacing a non-directory entry)."""
        self.check_new_file(path)
        self._put_file(path, entry, written)

    def put_file_cached(self, path: bytes, entry: TreeEntry, written: WrittenFile) -> object | None:
        """`put_file` if it can be done at once; else NEEDS_IO, and nothing done.

        It cannot when a tree would have to be fetched or the mutex is held (a change or
        a commit on another thread). What an event loop that stored a small file in
        place asks, so that placing it costs no thread hop either.
        """
        if not self._mutex.acquire(blocking=False):
            return NEEDS_IO
        try:
            self._check_new_file(path, self._lookup_loaded)
            self._put_file(path, entry, written)
        except _NotLoaded:
            return NEEDS_IO
        finally:
            self._mutex.release()
        return None

    def _put_file(self, path: bytes, entry: TreeEntry, written: WrittenFile) -> None:
        self.ns.put(path, replace(entry, content=written.content))
        with self._lock:
            self._referenced += written.referenced
            self._files += 1
            self._bytes += written.content.size

    @_exclusive
    def mkdir(self, path: bytes, entry: TreeEntry) -> None:
        self._check_parent(path)
        if self.ns.lookup(path) is not None:
            raise NamespaceError(errno.EEXIST, "File exists", path)
        self.ns.put(path, replace(entry, subtree=None, content=None))

    @_exclusive
    def put_special(self, path: bytes, entry: TreeEntry) -> None:
        """Create a symlink, device, fifo or socket, replacing a non-directory entry."""
        self._check_parent(path)
        existing = self.ns.lookup(path)
        if existing is not None and existing.is_dir():
            raise NamespaceError(errno.EEXIST, "File exists", path)
        self.ns.put(path, replace(entry, subtree=None, content=None))

    @_exclusive
    def link(self, path: bytes, existing_path: bytes) -> None:
        """Make `path` a hard link to the non-directory at `existing_path`.

        Like Linux, anything but a directory can be linked: files, symlinks, devices,
        fifos and sockets.
        """
        existing = self.ns.lookup(existing_path)
        if existing is None:
            raise NamespaceError(errno.ENOENT, "No such file or directory", existing_path)
        if existing.is_dir():
            raise NamespaceError(errno.EPERM, "Operation not permitted", existing_path)
        self._check_parent(path)
        current = self.ns.lookup(path)
        if current is not None and current.is_dir():
            raise NamespaceError(errno.EEXIST, "File exists", path)
        if existing.link_group is None:
            existing = replace(existing, link_group=int.from_bytes(os.urandom(8)) >> 1)
            self.ns.put(existing_path, existing)
        self.ns.put(path, existing)

    @_exclusive
    def put_copy(self, path: bytes, entry: TreeEntry) -> None:
        """Put `entry`, a non-directory of this volume, at `path` as a new, unlinked entry.

        A file's content must already be stored (committed, as in any snapshot, or
        written by this transaction): it is shared, not written again. Replaces a
        non-directory entry, as put_special does.
        """
        if entry.is_dir():
            raise NamespaceError(errno.EISDIR, "Is a directory", path)
        self._check_parent(path)
        existing = self.ns.lookup(path)
        if existing is not None and existing.is_dir():
            raise NamespaceError(errno.EEXIST, "File exists", path)
        self.ns.put(path, replace(entry, link_group=None, subtree=None))

    @_exclusive
    def set_meta(self, path: bytes, entry: TreeEntry) -> None:
        """Set permissions, ownership, times, xattrs and ACL from `entry`.

        The entry's type, content, symlink target and device number stay as they are.
        A hard link's metadata is its inode's: every member of its group gets it (those
        in directories this transaction reads later too).
        """
        current = self._existing(path)
        change = functools.partial(_with_meta, entry)
        if current.link_group is None:
            self.ns.put(path, change(current))
            return
        self._group_changes[current.link_group] = change
        self.ns.update_group(current.link_group, change)

    @_exclusive
    def rename(self, old: bytes, new: bytes) -> None:
        """Move the entry at `old` to `new`, with POSIX rename rules."""
        source = self._existing(old)
        if old == new:
            return
        if new.startswith(old + b"/") or not new:
            raise NamespaceError(errno.EINVAL, "Invalid argument", new)
        self._check_parent(new)
        target = self.ns.lookup(new)
        if target is not None:
            if source.is_dir() and not target.is_dir():
                raise NamespaceError(errno.ENOTDIR, "Not a directory", new)
            if target.is_dir() and not source.is_dir():
                raise NamespaceError(errno.EISDIR, "Is a directory", new)
            if target.is_dir() and self.ns.listdir(new):
                raise NamespaceError(errno.ENOTEMPTY, "Directory not empty", new)
        self.ns.move(old, new)

    @_exclusive
    def remove(self, path: bytes) -> None:
        """Remove a non-directory entry or an empty directory."""
        current = self._existing(path)
        if not path:
            raise NamespaceError(errno.EBUSY, "Device or resource busy", path)
        if current.is_dir() and self.ns.listdir(path):
            raise NamespaceError(errno.ENOTEMPTY, "Directory not empty", path)
        self.ns.remove(path)

    # -- committing --------------------------------------------------------------------

    def commit(self, stats: Mapping[str, int] | None = None) -> Snapshot | None:
        """Write a snapshot of everything done so far and close the transaction.

        Returns the new snapshot, or None when nothing changed.
        """
        snap = self.checkpoint(stats)
        self.closed = True
        return snap

    @_exclusive
    def checkpoint(self, stats: Mapping[str, int] | None = None) -> Snapshot | None:
        """Commit what is complete so far and keep the transaction open."""
        self._check_open()
        volume = self.volume
        with volume.commit_lock:
            volume.check_writable()
            newest = volume.snapshots.latest()
            newest_id = newest.id if newest is not None else None
            base_id = self.base.id if self.base is not None else None
            if not self.ns.root.dirty and self.ns.root_entry == self._base_root:
                self._adopt(newest)
                return None
            target = self.ns
            if newest_id != base_id:
                target = volume.namespace(newest)
                rebase(self.ns, self._base_root, target)
            to_write = self.ns.dirty_nodes()
            try:
                root = target.write()
                volume.backend.flush()
                self._verify(root)
                now = time.time_ns()
                if newest is not None:
                    now = max(now, newest.time_ns + 1000)
                snap = Snapshot(
                    new_snapshot_id(now), root, now, volume.host, newest_id,
                    self._stats(stats),
                )  # fmt: skip
                volume.snapshots.put(snap)
            except BaseException:
                self.ns.mark_dirty_again(to_write)  # so a retry writes them again
                raise
            self._adopt(snap)
            return snap

    @_exclusive
    def abort(self) -> None:
        """Drop every change not yet committed."""
        self.closed = True

    # -- internals ---------------------------------------------------------------------

    def _adopt(self, snap: Snapshot | None) -> None:
        """Continue from `snap` (just written, or newer than our unchanged base).

        A fresh namespace replaces the old one, dropping every loaded directory: a long
        session's memory is bounded by what it touches between two checkpoints.
        """
        if snap is not None and (self.base is None or snap.id != self.base.id):
            self.ns = self.volume.namespace(snap)
            for group, change in self._group_changes.items():
                self.ns.update_group(group, change)  # members not yet loaded get it too
        self.base = snap
        self._base_root = snap.root if snap is not None else empty_root()
        with self._lock:
            self._referenced = bytearray()
            self._files = self._bytes = 0

    def _verify(self, root: TreeEntry) -> None:
        with self._lock:
            referenced = bytes(self._referenced)
        step = ID_SIZE + 1
        keys = [
            (block_key if referenced[pos] == ord("b") else tree_key)(
                referenced[pos + 1 : pos + step]
            )
            for pos in range(0, len(referenced), step)
        ]
        if root.subtree is not None:
            keys.append(tree_key(root.subtree))
        # one index lookup under one lock for them all (16,000 per GiB committed)
        present = self.volume.objects.has_many(keys)
        missing = [key for key, found in zip(keys, present, strict=True) if not found]
        if missing:
            raise MissingObjectsError(
                f"commit refused: {len(missing)} object(s) missing after upload, "
                f"e.g. {missing[0]} (a failed upload; retry the transfer)", key=missing[0]
            )

    def _stats(self, extra: Mapping[str, int] | None) -> dict[str, int]:
        """The figures recorded in the snapshot.

        Files and bytes committed, and the backend requests made since the last commit
        (by every session of this process in that window: concurrent sessions each
        count the other's too).
        """
        now = self.volume.request_stats()
        with self._lock:
            stats = {"files": self._files, "bytes": self._bytes}
            stats.update(
                (f"req_{name}", value - self._requests_at_start.get(name, 0))
                for name, value in now.items()
            )
            self._requests_at_start = now
        if extra:
            stats.update(extra)
        return stats

    def _check_open(self) -> None:
        if self.closed:
            raise NamespaceError(errno.EBADF, "transaction already closed", b"")

    def _check_parent(
        self, path: bytes, lookup: Callable[[bytes], TreeEntry | None] | None = None
    ) -> None:
        self._check_open()
        parts = split_path(path)
        if not parts:
            raise NamespaceError(errno.EEXIST, "File exists", path)
        if len(parts) == 1 and parts[0] == RESERVED_ROOT_NAME:
            raise NamespaceError(
                errno.EROFS, "'.snapshots' is reserved for the read-only snapshot view", path
            )
        parent = (lookup or self.ns.lookup)(b"/".join(parts[:-1]))
        if parent is None:
            raise NamespaceError(errno.ENOENT, "No such file or directory", path)
        if not parent.is_dir():
            raise NamespaceError(errno.ENOTDIR, "Not a directory", path)

    def _existing(self, path: bytes) -> TreeEntry:
        self._check_open()
        entry = self.ns.lookup(path)
        if entry is None:
            raise NamespaceError(errno.ENOENT, "No such file or directory", path)
        return entry


def _with_meta(meta: TreeEntry, current: TreeEntry) -> TreeEntry:
    """`current` with the permissions, owner, times, xattrs and ACL of `meta`."""
    return replace(
        current, mode=(current.mode & ~0o7777) | (meta.mode & 0o7777), mtime_ns=meta.mtime_ns,
        uid=meta.uid, gid=meta.gid, user=meta.user, group=meta.group, atime_ns=meta.atime_ns,
        crtime_ns=meta.crtime_ns, xattrs=meta.xattrs, acl=meta.acl,
    )  # fmt: skip


__all__ = ["NEEDS_IO", "RESERVED_ROOT_NAME", "MissingObjectsError", "Transaction"]
