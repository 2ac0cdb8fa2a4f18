"""The file-system interface the rsync roles use (gokrazy's FileSource, both directions).

The roles (generator, receiver, sender) never touch `os` or the block store directly:
they see one `FileSystem` per session. Two implementations exist:
- `rsyncd_py.fs.local.LocalFileSystem`: a directory on local disk (baseline, tests);
- `rsyncd_py.fs.store.StoreFileSystem`: the block store's namespace (the product).

Paths are `bytes`, '/'-separated, relative to the file system's root, never absolute and
never containing '.' or '..' components (the session normalises and rejects escapes
before a role sees a path). The root itself is `b""`. Names may hold any byte except
'/' and NUL (rsync clients send non-UTF-8 names).

Errors: operations raise `FsError` with an errno (`ENOENT`, `EEXIST`, `ENOTDIR`,
`EISDIR`, `EROFS`, `ENOSPC`, `EIO`, ...) and a message; the roles turn them into the
same rsync error lines and exit codes a real rsync would give for that errno.

Durability: changes made through a `FileSystem` become visible to later lookups of the
same session at once. A file written with `create()` replaces the old entry only when
its writer commits. For the store, `close(success=True)` commits a snapshot, and the
implementation also commits checkpoints on its own (at least every 60 s) between whole
operations, so an interrupted session loses at most the last minute and never leaves a
half-written file visible.
"""

from __future__ import annotations

import errno as errno_mod
from collections.abc import AsyncIterator, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Protocol

from blockstore.volume.objects import EntryAttrs


class FsError(OSError):
    """A file-system operation failed; `errno` says why (rsync prints strerror)."""

    def __init__(self, err: int, message: str, path: bytes = b"") -> None:
        super().__init__(err, message)
        self.path = path

    @classmethod
    def not_found(cls, path: bytes) -> FsError:
        return cls(errno_mod.ENOENT, "No such file or directory", path)

    @classmethod
    def read_only(cls, path: bytes) -> FsError:
        return cls(errno_mod.EROFS, "Read-only file system", path)


@dataclass(frozen=True, slots=True)
class Stat(EntryAttrs):
    """Everything rsync can transfer about one entry (struct stat plus extras).

    Constructed as ``Stat(mode, size, **attributes)``; the attribute fields (times,
    owner, rdev, symlink target, xattrs, ACL) are the store's tree entries' own
    (`blockstore.volume.objects.EntryAttrs`). `mode` carries the file-type bits
    (S_IFREG, S_IFDIR, ...). `size` is the content length for regular files and 0 for
    everything else. `user`/`group` are the owner names when known (rsync maps ids by
    name unless --numeric-ids). `rdev` is `os.makedev(major, minor)` for devices.
    `link_target` is set for symlinks only. `link_key` identifies the inode for hard
    links: entries of one file system with the same non-None `link_key` are hard
    links to each other. `xattrs` is sorted by name. `acl` is an opaque,
    implementation-neutral encoding of the access and default ACLs
    (rsyncd_py/protocol/acl_blob.py: the Linux system.posix_acl_* xattr values, with
    the permissions the mode carries left to the mode) or None.
    """

    mode: int
    size: int = 0
    _: KW_ONLY
    link_key: object | None = None


class FileReader(Protocol):
    """Read access to one regular file's content as it was when opened.

    `read` is random access (the receiver copies matched basis blocks, the generator
    sums the basis); `stream` reads sequentially with read-ahead and is what full
    sends use. Reading past the end returns fewer bytes (b"" at or after the end).
    """

    size: int

    async def read(self, offset: int, length: int) -> bytes: ...

    def stream(self, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...


class FileWriter(Protocol):
    """A new file's content, written sequentially, invisible until `commit`.

    `write` may block (await) to keep memory bounded: implementations hand data to a
    bounded pipeline (chunking, hashing, compressing, uploading) and wait when it is full.
    `write_zeros(n)` appends n zero bytes without materialising them (sparse files,
    holes); a store keeps them as holes. `copy_from(source, offset, data)` appends `data`
    like `write`, telling the writer that the caller read these bytes from `source` at
    `offset` (a delta transfer's matched blocks): a writer that knows how `source` is
    stored may reuse that (the store reuses the ids of its whole blocks instead of
    hashing and storing them again); others just write. `commit(st)` atomically puts
    the file at its path with metadata `st` (size must equal the bytes written),
    replacing whatever was there. `abort()` discards everything; either may be called
    once.
    """

    async def write(self, data: bytes | memoryview) -> None: ...

    async def copy_from(self, source: FileReader, offset: int, data: bytes) -> None: ...

    async def write_zeros(self, length: int) -> None: ...

    async def commit(self, st: Stat) -> None: ...

    async def abort(self) -> None: ...


class FileSystem(Protocol):
    """The namespace a session reads from or writes into (see the module docstring)."""

    read_only: bool

    async def lstat(self, path: bytes) -> Stat | None:
        """Return the entry at `path` without following a final symlink, or None."""
        ...

    async def listdir(self, path: bytes) -> Sequence[tuple[bytes, Stat]]:
        """Return (name, stat) for each entry of directory `path`, sorted by name bytes.

        Raises FsError(ENOENT) if missing, FsError(ENOTDIR) if not a directory.
        """
        ...

    async def open_read(self, path: bytes) -> FileReader:
        """Open a regular file for reading."""
        ...

    async def create(self, path: bytes) -> FileWriter:
        """Start writing a new regular file at `path` (the parent must exist)."""
        ...

    async def mkdir(self, path: bytes, st: Stat) -> None:
        """Create a directory (parent must exist; EEXIST if anything is there)."""
        ...

    async def symlink(self, path: bytes, st: Stat) -> None:
        """Create a symlink to `st.link_target`, replacing a non-directory entry."""
        ...

    async def mknod(self, path: bytes, st: Stat) -> None:
        """Create a device, fifo or socket, replacing a non-directory entry."""
        ...

    async def link(self, path: bytes, existing: bytes) -> None:
        """Make `path` a hard link to the non-directory at `existing` (any kind, as Linux)."""
        ...

    async def copy(self, path: bytes, existing: bytes, st: Stat) -> None:
        """Make `path` a regular file with `existing`'s content and `st`'s metadata.

        `existing` is a regular file (--copy-dest's basis); a store shares the content.
        """
        ...

    async def set_stat(self, path: bytes, st: Stat) -> None:
        """Set mode, ownership, times, xattrs and ACL of an existing entry to `st`'s."""
        ...

    async def rename(self, old: bytes, new: bytes) -> None:
        """Move an entry (used for --backup and --delay-updates)."""
        ...

    async def remove(self, path: bytes) -> None:
        """Remove a non-directory entry or an empty directory (ENOTEMPTY otherwise)."""
        ...

    async def close(self, success: bool) -> None:
        """End the session: commit everything (success) or keep only committed state."""
        ...


class FsProvider(Protocol):
    """Where sessions get their `FileSystem` (one provider per server process).

    `open_session` is called once per rsync session after option parsing. A store
    provider opens one volume per process and gives each session its own transaction
    on the latest snapshot; a local provider gives every session the same directory.
    """

    async def open_session(self, *, writable: bool, user: str | None = None) -> FileSystem:
        """Return a file system for one session (read-only unless `writable`)."""
        ...

    async def aclose(self) -> None:
        """Release the provider (flush caches, drop the store lease)."""
        ...
