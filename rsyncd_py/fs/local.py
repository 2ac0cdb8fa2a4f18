"""`FileSystem` over a local directory: the baseline the store is measured against.

Theory of operation:

- **Confinement.** The root is opened once as a directory fd. Every path is resolved one
  component at a time from it with ``openat(O_DIRECTORY | O_NOFOLLOW)``, so a symlink in
  an intermediate component is never followed (it resolves as "not a directory") and
  nothing outside the root is reachable, whatever the tree holds or a client sends. The
  final component is then handled with the ``*at()`` calls (``dir_fd=...``,
  ``follow_symlinks=False``); operations that have no no-follow form (chmod, xattrs of a
  symlink) go through ``/proc/self/fd`` of an ``O_PATH | O_NOFOLLOW`` descriptor.
- **Atomic files.** `create` writes into an anonymous ``O_TMPFILE`` inode in the target
  directory (or a hidden ``.name.XXXXXX`` file where the file system lacks O_TMPFILE).
  `commit` sets owner, mode, xattrs and times on the descriptor, links it under a hidden
  name and renames that over the target, so nobody ever sees a partial file and a crash
  leaves nothing behind. `abort`, and `close` for writers still open, discard the data.
- **Threads.** Metadata system calls are fast and run inline on the event loop; directory
  listings, large reads and buffered writes (1 MiB at a time, one in flight while the
  next fills) run in the default executor so network and disk overlap.

Errors are `FsError` carrying the OS errno and strerror, plus the path.
"""

from __future__ import annotations

import asyncio
import errno
import grp
import os
import pwd
import secrets
import stat as st_mod
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import cache

from rsyncd_py.fs.base import FsError, Stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_IO_CHUNK = 1 << 20  # reads and write batches: big enough to amortise a thread hop
_INLINE_READ = 1 << 16  # random reads up to this size stay on the event loop
_NAME_MAX = 255
# xattr namespaces the kernel reserves for ACLs and capabilities; rsync -X leaves them
# alone and ACLs travel separately.
_UNMANAGED_XATTR_PREFIX = b"system."


def _split(path: bytes) -> list[bytes]:
    """Return the components of a root-relative path, refusing anything that could escape."""
    if not path:
        return []
    parts = path.split(b"/")
    for part in parts:
        if part in (b"", b".", b"..") or b"\0" in part:
            raise FsError(errno.EINVAL, "Invalid argument (unsafe path)", path)
    return parts


def _temp_name(name: bytes) -> bytes:
    """Return a hidden sibling name for `name` (rsync's ``.name.XXXXXX``), within NAME_MAX."""
    return b"." + name[: _NAME_MAX - 8] + b"." + secrets.token_hex(3).encode()


@cache
def _user_name(uid: int) -> bytes | None:
    try:
        return os.fsencode(pwd.getpwuid(uid).pw_name)
    except KeyError:
        return None


@cache
def _group_name(gid: int) -> bytes | None:
    try:
        return os.fsencode(grp.getgrgid(gid).gr_name)
    except KeyError:
        return None


def _proc_path(fd: int, name: bytes = b"") -> bytes:
    """Return a /proc path that reaches `name` inside directory `fd` (or `fd` itself)."""
    return b"/proc/self/fd/%d" % fd + (b"/" + name if name else b"")


def _read_xattrs(target: bytes | int) -> tuple[tuple[bytes, bytes], ...]:
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


def _write_xattrs(target: bytes | int, wanted: Sequence[tuple[bytes, bytes]]) -> None:
    """Make the managed xattrs of `target` exactly `wanted`."""
    follow = isinstance(target, int)
    current = dict(_read_xattrs(target))
    wanted_map = dict(wanted)
    for name in current.keys() - wanted_map.keys():
        os.removexattr(target, name, follow_symlinks=follow)
    for name, value in wanted_map.items():
        if current.get(name) != value:
            os.setxattr(target, name, value, follow_symlinks=follow)


def _apply_owner_and_mode(dirfd: int, name: bytes, st: Stat, extra_bits: int = 0) -> int:
    """Set owner (if it differs) then permissions of an existing entry; return its atime.

    chown comes first because it clears set-id bits. Like rsync, a non-root server
    silently keeps an owner it is not allowed to set. Symlinks have no permissions.
    """
    fd = os.open(name, _PATH_FLAGS, dir_fd=dirfd)
    try:
        current = os.fstat(fd)
        if (current.st_uid, current.st_gid) != (st.uid, st.gid):
            try:
                os.chown(name, st.uid, st.gid, dir_fd=dirfd, follow_symlinks=False)
            except PermissionError:
                if os.geteuid() == 0:
                    raise
            current = os.fstat(fd)
        mode = st_mod.S_IMODE(st.mode) | extra_bits
        if not st_mod.S_ISLNK(current.st_mode) and st_mod.S_IMODE(current.st_mode) != mode:
            os.chmod(_proc_path(fd), mode)  # chmod has no no-follow form: go through O_PATH
        return current.st_atime_ns
    finally:
        os.close(fd)


def _make_stat(dirfd: int, name: bytes, st: os.stat_result) -> Stat:
    """Build a `Stat` for the entry `name` in `dirfd` whose lstat result is `st`."""
    mode = st.st_mode
    is_reg = st_mod.S_ISREG(mode)
    is_lnk = st_mod.S_ISLNK(mode)
    is_dev = st_mod.S_ISCHR(mode) or st_mod.S_ISBLK(mode)
    return Stat(
        mode=mode,
        size=st.st_size if is_reg else 0,
        mtime_ns=st.st_mtime_ns,
        uid=st.st_uid,
        gid=st.st_gid,
        user=_user_name(st.st_uid),
        group=_group_name(st.st_gid),
        rdev=st.st_rdev if is_dev else 0,
        link_target=os.readlink(name, dir_fd=dirfd) if is_lnk else None,
        atime_ns=st.st_atime_ns,
        link_key=(st.st_dev, st.st_ino) if is_reg and st.st_nlink > 1 else None,
        xattrs=_read_xattrs(_proc_path(dirfd, name)),
    )


@contextmanager
def _os_errors(path: bytes) -> Iterator[None]:
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
        if length <= _INLINE_READ:
            return os.pread(self._fd, length, offset)
        return await self._pread(length, offset)

    def _pread(self, length: int, offset: int) -> asyncio.Future[bytes]:
        loop = asyncio.get_running_loop()
        self._inflight = loop.run_in_executor(None, os.pread, self._fd, length, offset)
        return self._inflight

    async def stream(self, chunk_size: int = _IO_CHUNK) -> AsyncIterator[bytes]:
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
    in flight while the next fills, so memory stays under 2 MiB per writer.
    `write_zeros` only moves the write offset: the skipped range stays a hole.
    """

    def __init__(
        self, fs: LocalFileSystem, path: bytes, dirfd: int, fd: int, temp: bytes | None
    ) -> None:
        self._fs = fs
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
        if len(self._buf) >= _IO_CHUNK:
            await self._flush()

    async def write_zeros(self, length: int) -> None:
        if self._buf:
            await self._flush()
        self._buf_offset += length

    async def _flush(self) -> None:
        """Start writing the buffer (after the previous batch finished)."""
        await self._wait()
        data, offset = bytes(self._buf), self._buf_offset
        self._buf_offset += len(data)
        self._buf.clear()
        loop = asyncio.get_running_loop()
        self._inflight = loop.run_in_executor(None, _pwrite_all, self._fd, data, offset)

    async def _wait(self) -> None:
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            with _os_errors(self._path):
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
            with _os_errors(self._path):
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
            _write_xattrs(fd, st.xattrs)
        atime = st.atime_ns if st.atime_ns is not None else current.st_atime_ns
        os.utime(fd, ns=(atime, st.mtime_ns))
        temp = self._temp
        if temp is None:
            temp = _temp_name(self._name)
            os.link(_proc_path(fd), temp, dst_dir_fd=dirfd)
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
            self._fs._writers.discard(self)


class LocalFileSystem:
    """A directory on local disk as a `FileSystem` (see the module docstring)."""

    def __init__(self, root: bytes, *, read_only: bool) -> None:
        self.read_only = read_only
        with _os_errors(root):
            self._root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._writers: set[LocalFileWriter] = set()

    # -- path resolution -------------------------------------------------------------

    def _open_dir(self, parts: Sequence[bytes], path: bytes) -> int:
        """Return a new fd for the directory `parts` below the root, following no symlink."""
        fd = os.dup(self._root_fd)
        try:
            for part in parts:
                try:
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno == errno.ELOOP:  # a symlink where a directory must be
                        raise FsError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path) from None
                    raise
                os.close(fd)
                fd = next_fd
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextmanager
    def _entry(self, path: bytes) -> Iterator[tuple[int, bytes]]:
        """Yield (parent dir fd, final name) for `path`; the root is (root fd, '.')."""
        with _os_errors(path):
            parts = _split(path)
            dirfd = self._open_dir(parts[:-1], path)
            try:
                yield dirfd, parts[-1] if parts else b"."
            finally:
                os.close(dirfd)

    def _check_writable(self, path: bytes) -> None:
        if self.read_only:
            raise FsError.read_only(path)

    # -- reading ---------------------------------------------------------------------

    async def lstat(self, path: bytes) -> Stat | None:
        try:
            with self._entry(path) as (dirfd, name), _os_errors(path):
                return _make_stat(dirfd, name, os.stat(name, dir_fd=dirfd, follow_symlinks=False))
        except FsError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise

    async def listdir(self, path: bytes) -> Sequence[tuple[bytes, Stat]]:
        return await asyncio.to_thread(self._listdir, path)

    def _listdir(self, path: bytes) -> list[tuple[bytes, Stat]]:
        with _os_errors(path):
            fd = self._open_dir(_split(path), path)
            try:
                entries = []
                for name in sorted(os.fsencode(n) for n in os.listdir(fd)):
                    try:
                        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # vanished while listing
                    entries.append((name, _make_stat(fd, name, st)))
                return entries
            finally:
                os.close(fd)

    async def open_read(self, path: bytes) -> LocalFileReader:
        with self._entry(path) as (dirfd, name), _os_errors(path):
            fd = os.open(
                name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dirfd
            )
            st = os.fstat(fd)
            if not st_mod.S_ISREG(st.st_mode):
                os.close(fd)
                err = errno.EISDIR if st_mod.S_ISDIR(st.st_mode) else errno.EINVAL
                raise FsError(err, os.strerror(err), path)
            return LocalFileReader(fd, st.st_size)

    # -- writing ---------------------------------------------------------------------

    async def create(self, path: bytes) -> LocalFileWriter:
        self._check_writable(path)
        with _os_errors(path):
            parts = _split(path)
            if not parts:
                raise FsError(errno.EISDIR, os.strerror(errno.EISDIR), path)
            dirfd = self._open_dir(parts[:-1], path)
            try:
                fd, temp = self._open_temp(dirfd, parts[-1])
            except BaseException:
                os.close(dirfd)
                raise
        writer = LocalFileWriter(self, path, dirfd, fd, temp)
        self._writers.add(writer)
        return writer

    @staticmethod
    def _open_temp(dirfd: int, name: bytes) -> tuple[int, bytes | None]:
        """Open an unnamed inode in `dirfd`, or a hidden temp file where that is unsupported."""
        try:
            return os.open(
                ".", os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, 0o600, dir_fd=dirfd
            ), None
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
        temp = _temp_name(name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        return os.open(temp, flags, 0o600, dir_fd=dirfd), temp

    async def mkdir(self, path: bytes, st: Stat) -> None:
        """Create the directory with `st`'s owner and permissions plus u+rwx.

        The owner-write bit lets the session fill the directory; the session's final
        `set_stat` (after the contents, as rsync does) sets the exact mode and times.
        """
        self._check_writable(path)
        with self._entry(path) as (dirfd, name), _os_errors(path):
            os.mkdir(name, 0o700, dir_fd=dirfd)
            _apply_owner_and_mode(dirfd, name, st, st_mod.S_IRWXU)

    async def symlink(self, path: bytes, st: Stat) -> None:
        self._check_writable(path)
        if st.link_target is None:
            raise FsError(errno.EINVAL, "symlink without a target", path)
        target = st.link_target
        self._replace(path, lambda dirfd, temp: os.symlink(target, temp, dir_fd=dirfd))

    async def mknod(self, path: bytes, st: Stat) -> None:
        self._check_writable(path)
        self._replace(path, lambda dirfd, temp: os.mknod(temp, st.mode, st.rdev, dir_fd=dirfd))

    async def link(self, path: bytes, existing: bytes) -> None:
        self._check_writable(path)
        with self._entry(existing) as (src_dirfd, src_name), _os_errors(existing):
            src = os.stat(src_name, dir_fd=src_dirfd, follow_symlinks=False)
            if await self._same_inode(path, src):
                return  # already linked; rename() onto the same inode would be a no-op
            self._replace(
                path,
                lambda dirfd, temp: os.link(
                    src_name, temp, src_dir_fd=src_dirfd, dst_dir_fd=dirfd, follow_symlinks=False
                ),
            )

    async def _same_inode(self, path: bytes, other: os.stat_result) -> bool:
        """Return whether `path` exists and is the inode `other` describes."""
        try:
            with self._entry(path) as (dirfd, name), _os_errors(path):
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except FsError:
            return False
        return (st.st_dev, st.st_ino) == (other.st_dev, other.st_ino)

    def _replace(self, path: bytes, make: Callable[[int, bytes], None]) -> None:
        """Create an entry under a temp name with `make(dirfd, temp)`, rename it over `path`."""
        with self._entry(path) as (dirfd, name), _os_errors(path):
            temp = _temp_name(name)
            make(dirfd, temp)
            try:
                os.rename(temp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
            except OSError:
                with suppress(OSError):
                    os.unlink(temp, dir_fd=dirfd)
                raise

    async def set_stat(self, path: bytes, st: Stat) -> None:
        """Apply owner, permissions (not on symlinks), xattrs and times, in that order."""
        self._check_writable(path)
        with self._entry(path) as (dirfd, name), _os_errors(path):
            current_atime = _apply_owner_and_mode(dirfd, name, st)
            _write_xattrs(_proc_path(dirfd, name), st.xattrs)
            atime = st.atime_ns if st.atime_ns is not None else current_atime
            os.utime(name, ns=(atime, st.mtime_ns), dir_fd=dirfd, follow_symlinks=False)

    async def rename(self, old: bytes, new: bytes) -> None:
        self._check_writable(new)
        with (
            self._entry(old) as (old_dirfd, old_name),
            self._entry(new) as (new_dirfd, new_name),
            _os_errors(new),
        ):
            os.rename(old_name, new_name, src_dir_fd=old_dirfd, dst_dir_fd=new_dirfd)

    async def remove(self, path: bytes) -> None:
        self._check_writable(path)
        if not path:
            raise FsError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        with self._entry(path) as (dirfd, name), _os_errors(path):
            if st_mod.S_ISDIR(os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode):
                os.rmdir(name, dir_fd=dirfd)
            else:
                os.unlink(name, dir_fd=dirfd)

    async def close(self, success: bool) -> None:
        """Discard writers never committed and release the root (changes are already on disk)."""
        for writer in list(self._writers):
            await writer.abort()
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1


class LocalProvider:
    """Every session gets the same local directory (`rsyncd-py --root DIR`)."""

    def __init__(self, root: bytes) -> None:
        with _os_errors(root):
            if not st_mod.S_ISDIR(os.stat(root).st_mode):
                raise FsError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), root)
        self.root = root

    async def open_session(self, *, writable: bool, user: str | None = None) -> LocalFileSystem:
        """Return a file system over the root (read-only unless `writable`)."""
        return LocalFileSystem(self.root, read_only=not writable)

    async def aclose(self) -> None:
        """Nothing to release: sessions own their descriptors."""
