"""Reading and writing the content of files in a `LocalFileSystem` (see rsyncd_py.fs.local).

Theory of operation:

- `LocalFileReader` holds an open descriptor of the file as it was when opened. Random
  reads up to 64 KiB run inline (page cache); larger ones and `stream` run `pread` in the
  default executor, `stream` keeping the next 1 MiB read in flight while the caller uses
  the current one, and never reading past the size seen at open.
- `LocalFileWriter` writes a new inode that no name points to yet: an ``O_TMPFILE``
  inode in the target directory, or a hidden ``.name.XXXXXX`` file where the file system
  lacks O_TMPFILE. Data is buffered to 1 MiB and written with `pwrite` in the executor,
  one batch in flight while the next fills (under 2 MiB per writer); `write_zeros` only
  moves the offset, so the range stays a hole. `commit` sets owner, mode, xattrs and
  times on the descriptor, links the inode under a hidden name and renames that over the
  target: nobody ever sees a partial file, and a crash leaves nothing behind. `abort`
  drops the inode.

Also here: the small helpers both modules use (`os_errors`, `proc_path`, xattr access).
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import stat as st_mod
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager, suppress

from rsyncd_py.fs.base import FileReader, FsError, Stat
from rsyncd_py.fs.local_acl import write_acl

IO_CHUNK = 1 << 20  # reads and write batches: big enough to amortise a thread hop
_INLINE_IO = 1 << 16  # reads and writes up to this size stay on the event loop
_NAME_MAX = 255
# xattr namespaces the kernel reserves for ACLs and capabilities; rsync -X leaves them
# alone and ACLs travel separately.
_UNMANAGED_XATTR_PREFIX = b"system."


def temp_name(name: bytes) -> bytes:
    """Return a hidden sibling name for `name` (rsync's ``.name.XXXXXX``), within NAME_MAX."""
    return b"." + name[: _NAME_MAX - 8] + b"." + secrets.token_hex(3).encode()


def proc_path(fd: int, name: bytes = b"") -> bytes:
    """Return a /proc path that reaches `name` inside directory `fd` (or `fd` itself)."""
    return b"/proc/self/fd/%d" % fd + (b"/" + name if name else b"")


def read_xattrs(target: bytes | int) -> tuple[tuple[bytes, bytes], ...]:
    """Return the sorted (name, value) xattrs of `target` (a /proc path or an fd)."""
    follow = isinstance(target, int)
    try:
        names = os.listxattr(target, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return ()
        raise
    pairs = []
    for name in names:
        bname = os.fsencode(name)
        if bname.startswith(_UNMANAGED_XATTR_PREFIX):
            continue
        try:
            pairs.append((bname, os.getxattr(target, name, follow_symlinks=follow)))
        except OSError as exc:
            if exc.errno != errno.ENODATA:  # removed since listing: skip it
                raise
    return tuple(sorted(pairs))


def write_xattrs(target: bytes | int, wanted: Sequence[tuple[bytes, bytes]]) -> None:
    """Make the managed xattrs of `target` exactly `wanted`."""
    follow = isinstance(target, int)
    current = dict(read_xattrs(target))
    wanted_map = dict(wanted)
    for name in current.keys() - wanted_map.keys():
        os.removexattr(target, name, follow_symlinks=follow)
    for name, value in wanted_map.items():
        if current.get(name) != value:
            os.setxattr(target, name, value, follow_symlinks=follow)


@contextmanager
def os_errors(path: bytes) -> Iterator[None]:
    """Turn an OSError raised inside the block into an FsError naming `path`."""
    try:
        yield
    except FsError:
        raise
    except OSError as exc:
        err = exc.errno or errno.EIO
        raise FsError(err, exc.strerror or os.strerror(err), path) from None


class LocalFileReader:
    """A regular file opened for reading; see `rsyncd_py.fs.base.FileReader`."""

    def __init__(self, fd: int, size: int) -> None:
        self.size = size
        self._fd = fd
        self._inflight: asyncio.Future[bytes] | None = None

    async def read(self, offset: int, length: int) -> bytes:
        """Return up to `length` bytes at `offset` (short at the end of the file)."""
        length = max(0, min(length, self.size - offset))
        if length <= _INLINE_IO:
            return os.pread(self._fd, length, offset)
        return await self._pread(length, offset)

    def _pread(self, length: int, offset: int) -> asyncio.Future[bytes]:
        loop = asyncio.get_running_loop()
        self._inflight = loop.run_in_executor(None, os.pread, self._fd, length, offset)
        return self._inflight

    async def stream(self, chunk_size: int = IO_CHUNK) -> AsyncIterator[bytes]:
        """Yield the content from the start, reading the next chunk while this one is used."""
        offset = 0
        pending = self._pread(min(chunk_size, self.size), 0) if self.size else None
        while pending is not None:
            data = await pending
            if not data:
                return
            offset += len(data)
            remaining = self.size - offset
            pending = self._pread(min(chunk_size, remaining), offset) if remaining > 0 else None
            yield data

    async def close(self) -> None:
        """Release the descriptor once no read is in flight on it."""
        if self._fd < 0:
            return
        if self._inflight is not None:
            with suppress(OSError):
                await self._inflight
        os.close(self._fd)
        self._fd = -1


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


class LocalFileWriter:
    """A new file being written; see `rsyncd_py.fs.base.FileWriter`.

    Data is buffered up to 1 MiB and written with `pwrite` in the executor; one batch is
    in flight while the next fills, so memory stays under 2 MiB per writer. Batches of
    64 KiB or less (small files, the tail before a hole) are written inline.
    `write_zeros` only moves the write offset: the skipped range stays a hole.
    """

    def __init__(
        self,
        path: bytes,
        dirfd: int,
        fd: int,
        temp: bytes | None,
        on_done: Callable[[LocalFileWriter], None],
    ) -> None:
        self._on_done = on_done  # told once, when the writer is committed or aborted
        self._path = path
        self._dirfd = dirfd  # owned: the target directory, kept open until commit/abort
        self._name = path.rsplit(b"/", 1)[-1]
        self._fd = fd
        self._temp = temp  # the visible temp name, or None for an O_TMPFILE inode
        self._buf = bytearray()
        self._buf_offset = 0  # file offset of self._buf[0]
        self._inflight: asyncio.Future[None] | None = None
        self._done = False

    @property
    def _end(self) -> int:
        return self._buf_offset + len(self._buf)

    async def write(self, data: bytes | memoryview) -> None:
        self._buf += data
        if len(self._buf) >= IO_CHUNK:
            await self._flush()

    async def copy_from(self, source: FileReader, offset: int, data: bytes) -> None:
        """A plain write: a local file has no stored blocks to reuse."""
        await self.write(data)

    async def write_zeros(self, length: int) -> None:
        if self._buf:
            await self._flush()
        self._buf_offset += length

    async def _flush(self) -> None:
        """Start writing the buffer (after the previous batch finished).

        A small last batch is written inline: a thread hop would cost more than the
        write into the page cache, and small files are the common case.
        """
        await self._wait()
        data, offset = bytes(self._buf), self._buf_offset
        self._buf_offset += len(data)
        self._buf.clear()
        if len(data) <= _INLINE_IO:
            with os_errors(self._path):
                _pwrite_all(self._fd, data, offset)
            return
        loop = asyncio.get_running_loop()
        self._inflight = loop.run_in_executor(None, _pwrite_all, self._fd, data, offset)

    async def _wait(self) -> None:
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            with os_errors(self._path):
                await inflight

    async def commit(self, st: Stat) -> None:
        """Flush, apply `st`'s metadata to the new inode and rename it over the target."""
        try:
            if self._buf:
                await self._flush()
            await self._wait()
            size = self._end
            if st.size != size:
                raise FsError(errno.EINVAL, f"commit of {st.size} bytes after {size}", self._path)
            with os_errors(self._path):
                self._publish(st, size)
        except BaseException:
            await self.abort()
            raise
        self._finish()

    def _publish(self, st: Stat, size: int) -> None:
        fd, dirfd = self._fd, self._dirfd
        os.ftruncate(fd, size)  # materialises a trailing hole
        current = os.fstat(fd)
        if (current.st_uid, current.st_gid) != (st.uid, st.gid):
            try:
                os.fchown(fd, st.uid, st.gid)
            except PermissionError:  # non-root: keep our own owner, as rsync does
                if os.geteuid() == 0:
                    raise
        os.fchmod(fd, st_mod.S_IMODE(st.mode))  # after chown, which clears set-id bits
        if st.xattrs:
            write_xattrs(fd, st.xattrs)
        if st.acl is not None:  # else the inode keeps what it inherited (a default ACL)
            write_acl(fd, st.acl, st.mode, is_dir=False)
        atime = st.atime_ns if st.atime_ns is not None else current.st_atime_ns
        os.utime(fd, ns=(atime, st.mtime_ns))
        temp = self._temp
        if temp is None:
            temp = temp_name(self._name)
            os.link(proc_path(fd), temp, dst_dir_fd=dirfd)
        try:
            os.rename(temp, self._name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
        except OSError:
            with suppress(OSError):
                os.unlink(temp, dir_fd=dirfd)
            self._temp = None
            raise
        self._temp = None

    async def abort(self) -> None:
        """Discard the data; the target keeps whatever it had."""
        if self._done:
            return
        with suppress(OSError):
            await self._wait()
        if self._temp is not None:
            with suppress(OSError):
                os.unlink(self._temp, dir_fd=self._dirfd)
        self._finish()

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            os.close(self._fd)
            os.close(self._dirfd)
            self._on_done(self)
