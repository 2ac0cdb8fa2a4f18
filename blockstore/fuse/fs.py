"""The pyfuse3 operations of the read-only view: a volume's snapshots as a file system.

Theory of operation. Layout: the root directory is one snapshot's tree (the newest at
mount time, or the one asked for), pinned for the life of the mount; `.snapshots/<id>/`
is every snapshot's tree. `.snapshots` is not listed in the root (as in a pull of `/`,
a recursive copy of the mount must not copy history) but is always reachable by
name, and is re-listed every time it is opened, so new snapshots appear without a
remount. A path means the same thing here and in an rsync pull (`rsyncd_py.fs.store`).

Requests arrive on the trio thread. Answers already in memory (an inode's cached
attributes, a recently used directory) are given there; anything that may wait on
the store runs on a worker thread through one `CapacityLimiter`, so a slow backend
never stalls other requests and never grows the thread count without bound. The inode
table (inodes.py) is touched only on the trio thread.

Extended attributes: each entry's stored xattrs, and its ACLs as the kernel's
`system.posix_acl_access`/`_default` values (xattrs.py). The mount enables POSIX ACLs,
so with `default_permissions` the kernel enforces them as it did on the source.

Kernel caching: everything under a snapshot is immutable, so entries, attributes and
negative lookups there are cached for a day and open files keep their page cache
across opens. Only `.snapshots` itself changes: its attributes and its entries time
out after a second and a missing id is not cached (a new snapshot may appear).

Errors: the only exception a handler may raise is `FUSEError`. A `StoreError` becomes
its errno, except that a missing object is EIO (something the tree references is gone:
corruption, not an absent file) and a transient failure the retry layer gave up on is
EIO too (EAGAIN would make readers spin). Anything else is logged with its traceback
and answered with EIO. Every writing operation answers EROFS (the kernel also refuses
them first: the mount is `ro`).
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat as stat_mod
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, NoReturn, ParamSpec, TypeVar

import pyfuse3
import trio

from blockstore.backend import NotFoundError, StoreError, TransientError
from blockstore.fuse.catalog import SNAPSHOTS_DIR_MODE, Catalog, Entries, View
from blockstore.fuse.inodes import ROOT_INODE, SNAPSHOTS_INODE, InodeTable, Node
from blockstore.fuse.reader import OpenFile
from blockstore.fuse.xattrs import shown_xattrs
from blockstore.volume import RESERVED_ROOT_NAME, Content, Snapshot, TreeEntry, Volume

log = logging.getLogger(__name__)

IMMUTABLE_TIMEOUT = 86400.0  # seconds the kernel may cache what a snapshot shows
LISTING_TIMEOUT = 1.0  # ... and `.snapshots`, whose content changes
IO_SIZE = 128 << 10  # st_blksize: the largest read FUSE sends
IO_THREADS = 16
_STATFS_FRSIZE = 4096
_REPORTED_ERRORS = 256

_P = ParamSpec("_P")
_T = TypeVar("_T")


def fuse_errno(exc: BaseException) -> int:
    """The errno a failed request answers with (see the module docstring)."""
    if isinstance(exc, pyfuse3.FUSEError):
        return exc.errno
    if isinstance(exc, NotFoundError | TransientError):
        return errno.EIO
    if isinstance(exc, StoreError | OSError):
        return exc.errno or errno.EIO
    return errno.EIO


def _handler(fn: Callable[_P, Coroutine[Any, Any, _T]]) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """Make a request handler raise nothing but FUSEError (see the module docstring)."""

    @functools.wraps(fn)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except Exception as exc:
            ops = args[0]
            assert isinstance(ops, StoreOperations)
            ops.report(fn.__name__, exc)
            raise pyfuse3.FUSEError(fuse_errno(exc)) from None

    return wrapper


async def _refuse_write(*_args: object, **_kwargs: object) -> NoReturn:
    """Every writing operation: the view is read-only."""
    raise pyfuse3.FUSEError(errno.EROFS)


class _DirHandle:
    """An open directory: its entries as they were when it was opened, sorted by name.

    A tree directory keeps the decoded tree's own tuple (no copy, however long); the
    `.snapshots` directory keeps one view per snapshot.
    """

    __slots__ = ("entries", "node", "views")

    def __init__(self, node: Node, entries: Entries, views: Sequence[View] = ()) -> None:
        self.node = node
        self.entries = entries
        self.views = views

    def __len__(self) -> int:
        return len(self.entries)

    def item(self, index: int) -> tuple[View, bytes, TreeEntry]:
        """(view, path in the view, entry) of the `index`th name."""
        entry = self.entries[index]
        if self.views:
            return self.views[index], b"", entry
        node = self.node
        assert node.view is not None
        return node.view, node.path + b"/" + entry.name if node.path else entry.name, entry


class StoreOperations(pyfuse3.Operations):
    """The read-only file system over one volume (see the module docstring)."""

    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = True  # the kernel asks getxattr for ACLs and enforces them (see top)

    def __init__(self, volume: Volume, root_snapshot: Snapshot | None) -> None:
        super().__init__()
        self.volume = volume
        self.catalog = Catalog(volume)
        self.root_view = View(root_snapshot, at_root=True)
        self.inodes = InodeTable()
        self.inodes.pin(ROOT_INODE, self.root_view, b"", self.root_view.root)
        self._snapshots_node = self.inodes.pin(
            SNAPSHOTS_INODE, None, b"", TreeEntry(RESERVED_ROOT_NAME, SNAPSHOTS_DIR_MODE)
        )
        self.nursery: trio.Nursery | None = None  # set by the mount before requests arrive
        self._limiter = trio.CapacityLimiter(IO_THREADS)
        self._files: dict[int, OpenFile] = {}
        self._dirs: dict[int, _DirHandle] = {}
        self._next_handle = 1
        self._reported: OrderedDict[str, None] = OrderedDict()

    # -- plumbing ------------------------------------------------------------------------

    async def _io(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run a blocking volume call on a worker thread."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    def _spawn(self, task: Callable[[], Awaitable[None]]) -> None:
        if self.nursery is None:
            raise RuntimeError("StoreOperations used outside its mount (no nursery)")
        self.nursery.start_soon(task)

    def _handle(self) -> int:
        self._next_handle += 1
        return self._next_handle

    def _node(self, ino: int) -> Node:
        node = self.inodes.get(ino)
        if node is None:
            raise pyfuse3.FUSEError(errno.ESTALE)
        return node

    def report(self, operation: str, exc: BaseException) -> None:
        """Log a failed request once per distinct message (a bad block is read often)."""
        if not isinstance(exc, StoreError | OSError):
            log.exception("%s failed", operation, exc_info=exc)
            return
        message = f"{operation}: {exc}"
        if message in self._reported:
            return
        self._reported[message] = None
        while len(self._reported) > _REPORTED_ERRORS:
            self._reported.popitem(last=False)
        log.error("%s", message)

    # -- attributes ----------------------------------------------------------------------

    async def _attributes(self, node: Node) -> pyfuse3.EntryAttributes:
        """The kernel attributes of `node`, built once (the `.snapshots` dir each time)."""
        if node.attrs is not None:
            return node.attrs  # type: ignore[return-value]
        if node.view is None:
            if not self.catalog.listed:
                await self._io(self.catalog.snapshot_list)
            entry = TreeEntry(RESERVED_ROOT_NAME, SNAPSHOTS_DIR_MODE,
                              mtime_ns=self.catalog.newest_time_ns())
            return self._build(node, entry, nlink=1, stored=0)
        entry = node.entry
        nlink = 1
        if entry.link_group is not None and not entry.is_dir():
            found = self.catalog.link_count_cached(node.view, entry.link_group)
            nlink = found if found is not None else await self._io(
                self.catalog.link_count, node.view, entry.link_group)
        stored = 0
        if entry.content is not None:
            cached = self.catalog.stored_bytes_cached(entry.content)
            stored = cached if cached is not None else await self._io(
                self.catalog.stored_bytes, entry.content)
        node.attrs = self._build(node, entry, nlink=nlink, stored=stored)
        return node.attrs  # type: ignore[return-value]

    def _build(self, node: Node, entry: TreeEntry, *, nlink: int, stored: int
               ) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = node.ino
        attrs.generation = 0
        attrs.st_mode = entry.mode
        attrs.st_nlink = nlink
        attrs.st_uid = entry.uid
        attrs.st_gid = entry.gid
        attrs.st_rdev = entry.rdev
        if stat_mod.S_ISLNK(entry.mode):
            attrs.st_size = len(entry.link_target or b"")
        else:
            attrs.st_size = entry.size
        attrs.st_blksize = IO_SIZE
        attrs.st_blocks = -(-stored // 512)
        attrs.st_mtime_ns = entry.mtime_ns
        attrs.st_ctime_ns = entry.mtime_ns  # the tree keeps no ctime; mtime is the honest bound
        attrs.st_atime_ns = entry.atime_ns if entry.atime_ns is not None else entry.mtime_ns
        if entry.crtime_ns is not None:
            attrs.st_birthtime_ns = entry.crtime_ns
        changing = node.view is None
        snapshot_root = node.view is not None and not node.view.at_root and not node.path
        attrs.attr_timeout = LISTING_TIMEOUT if changing else IMMUTABLE_TIMEOUT
        attrs.entry_timeout = (
            LISTING_TIMEOUT if changing or snapshot_root else IMMUTABLE_TIMEOUT
        )
        return attrs

    async def _counted(self, node: Node) -> pyfuse3.EntryAttributes:
        """`node`'s attributes, with one more kernel reference to it (lookup's contract)."""
        try:
            attrs = await self._attributes(node)
        except BaseException:
            self.inodes.release_unused(node)
            raise
        self.inodes.count(node)
        return attrs

    # -- directories ---------------------------------------------------------------------

    async def _entries(self, node: Node) -> Entries:
        if not node.entry.is_dir():
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        entries = self.catalog.entries_cached(node.entry)
        if entries is None:
            entries = await self._io(self.catalog.entries, node.entry)
        assert node.view is not None
        return Catalog.visible(entries, node.view, node.path)

    def _snapshot_node(self, snapshot: Snapshot) -> Node:
        view = View(snapshot, at_root=False)
        return self.inodes.node(view, b"", view.root)

    async def _parent(self, node: Node) -> Node:
        """The node of `node`'s directory (for `..`)."""
        view = node.view
        if view is None or node.ino == ROOT_INODE:
            return self._node(ROOT_INODE)
        if not node.path:
            return self._snapshots_node
        parent_path = node.path.rpartition(b"/")[0]
        if not parent_path:
            return self._node(ROOT_INODE) if view.at_root else self.inodes.node(
                view, b"", view.root)
        entry = await self._io(self.catalog.resolve, view, parent_path)
        return self.inodes.node(view, parent_path, entry)

    @_handler
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
                     ) -> pyfuse3.EntryAttributes:
        parent = self._node(parent_inode)
        if name == b".":
            return await self._counted(parent)
        if name == b"..":
            return await self._counted(await self._parent(parent))
        if parent.ino == ROOT_INODE and name == RESERVED_ROOT_NAME:
            return await self._counted(self._snapshots_node)
        if parent.view is None:
            text = name.decode(errors="replace")
            snapshot = self.catalog.snapshot_cached(text) or await self._io(
                self.catalog.snapshot, text)
            if snapshot is None:
                raise pyfuse3.FUSEError(errno.ENOENT)  # not cached: it may appear later
            return await self._counted(self._snapshot_node(snapshot))
        entry = Catalog.find(await self._entries(parent), name)
        if entry is None:
            missing = pyfuse3.EntryAttributes()  # st_ino 0: a cached negative entry
            missing.entry_timeout = IMMUTABLE_TIMEOUT
            return missing
        path = parent.path + b"/" + name if parent.path else name
        return await self._counted(self.inodes.node(parent.view, path, entry))

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for ino, nlookup in inode_list:  # may not raise, not even FUSEError
            self.inodes.forget(ino, nlookup)

    @_handler
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext | None = None
                      ) -> pyfuse3.EntryAttributes:
        return await self._attributes(self._node(inode))

    @_handler
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        target = self._node(inode).entry.link_target
        if target is None:
            raise pyfuse3.FUSEError(errno.EINVAL)
        return target

    @_handler
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        node = self._node(inode)
        if node.view is None:
            snapshots = await self._io(lambda: self.catalog.snapshot_list(refresh=True))
            views = [View(snapshot, at_root=False) for snapshot in snapshots]
            opened = _DirHandle(node, tuple(view.root for view in views), views)
        else:
            opened = _DirHandle(node, await self._entries(node))
        handle = self._handle()
        self._dirs[handle] = opened
        return handle

    @_handler
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        opened = self._dirs[fh]
        for index in range(start_id, len(opened)):
            view, path, entry = opened.item(index)
            node = self.inodes.node(view, path, entry)
            try:
                attrs = await self._attributes(node)
            except Exception:
                self.inodes.release_unused(node)
                if index > start_id:
                    return  # hand over what is ready; the next call reports the error
                raise
            if not pyfuse3.readdir_reply(token, entry.name, attrs, index + 1):
                self.inodes.release_unused(node)
                return
            self.inodes.count(node)

    @_handler
    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    # -- files ---------------------------------------------------------------------------

    @_handler
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        if flags & os.O_ACCMODE != os.O_RDONLY:
            raise pyfuse3.FUSEError(errno.EROFS)
        entry = self._node(inode).entry
        if entry.is_dir():
            raise pyfuse3.FUSEError(errno.EISDIR)
        if not entry.is_file():
            raise pyfuse3.FUSEError(errno.EACCES)
        content = entry.content if entry.content is not None else Content(0)
        reader = self.volume.reader(content, cache_blocks=1)
        handle = self._handle()
        self._files[handle] = OpenFile(reader, run_sync=self._io, spawn=self._spawn)
        return pyfuse3.FileInfo(fh=handle, keep_cache=True)

    @_handler
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return await self._files[fh].read(off, size)

    @_handler
    async def release(self, fh: int) -> None:
        opened = self._files.pop(fh, None)
        if opened is not None:
            opened.close()

    # -- extended attributes and figures -------------------------------------------------

    @_handler
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        for key, value in shown_xattrs(self._node(inode).entry):
            if key == name:
                return value
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)

    @_handler
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> Sequence[bytes]:
        return [key for key, _value in shown_xattrs(self._node(inode).entry)]

    @_handler
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        stored = await self._io(self.volume.packed_bytes)
        figures = pyfuse3.StatvfsData()
        figures.f_bsize = IO_SIZE
        figures.f_frsize = _STATFS_FRSIZE
        figures.f_blocks = -(-stored // _STATFS_FRSIZE)
        figures.f_bfree = figures.f_bavail = 0
        figures.f_files = len(self.inodes)
        figures.f_ffree = figures.f_favail = 0
        figures.f_namemax = 255
        return figures

    # -- everything that would write -----------------------------------------------------

    setattr = mknod = mkdir = unlink = rmdir = symlink = rename = link = _refuse_write
    write = create = setxattr = removexattr = _refuse_write
