"""`FileSystem` over a local directory: the baseline the store is measured against.

Theory of operation:

- **Confinement.** The root is opened once as a directory fd. Every path is resolved one
  component at a time from it with ``openat(O_DIRECTORY | O_NOFOLLOW)``, so a symlink in
  an intermediate component is never followed (it resolves as "not a directory") and
  nothing outside the root is reachable, whatever the tree holds or a client sends. The
  final component is then handled with the ``*at()`` calls (``dir_fd=...``,
  ``follow_symlinks=False``); operations that have no no-follow form (chmod, xattrs of a
  symlink) go through ``/proc/self/fd`` of an ``O_PATH | O_NOFOLLOW`` descriptor.
- **Atomic files.** `create` opens an unnamed inode in the target directory that only
  its writer's `commit` links into place (`rsyncd_py.fs.local_files`); `close` aborts
  the writers a session never committed, so nobody ever sees a partial file.
- **Replacing entries.** symlink, mknod and link create the entry under a hidden temp
  name and rename it over the target, so the old entry stays until the new one is whole.
- **Threads.** Metadata system calls are fast and run inline on the event loop;
  directory listings run in the default executor, as do large reads and writes.

Errors are `FsError` carrying the OS errno and strerror, plus the path.
"""

from __future__ import annotations

import asyncio
import errno
import grp
import os
import pwd
import stat as st_mod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from functools import cache

from rsyncd_py.fs.base import FsError, Stat
from rsyncd_py.fs.local_acl import read_acl, write_acl
from rsyncd_py.fs.local_files import (
    LocalFileReader,
    LocalFileWriter,
    os_errors,
    proc_path,
    read_xattrs,
    temp_name,
    write_xattrs,
)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def _split(path: bytes) -> list[bytes]:
    """Return the components of a root-relative path, refusing anything that could escape."""
    if not path:
        return []
    parts = path.split(b"/")
    for part in parts:
        if part in (b"", b".", b"..") or b"\0" in part:
            raise FsError(errno.EINVAL, "Invalid argument (unsafe path)", path)
    return parts


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
            os.chmod(proc_path(fd), mode)  # chmod has no no-follow form: go through O_PATH
        return current.st_atime_ns
    finally:
        os.close(fd)


def _make_stat(dirfd: int, name: bytes, st: os.stat_result) -> Stat:
    """Build a `Stat` for the entry `name` in `dirfd` whose lstat result is `st`."""
    mode = st.st_mode
    is_reg = st_mod.S_ISREG(mode)
    is_lnk = st_mod.S_ISLNK(mode)
    is_dir = st_mod.S_ISDIR(mode)  # hard links: any other kind can have several names
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
        link_key=(st.st_dev, st.st_ino) if st.st_nlink > 1 and not is_dir else None,
        xattrs=read_xattrs(proc_path(dirfd, name)),
        acl=None if is_lnk else read_acl(proc_path(dirfd, name), is_dir=is_dir),
    )


class LocalFileSystem:
    """A directory on local disk as a `FileSystem` (see the module docstring)."""

    def __init__(self, root: bytes, *, read_only: bool) -> None:
        self.read_only = read_only
        with os_errors(root):
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
        with os_errors(path):
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
            with self._entry(path) as (dirfd, name), os_errors(path):
                return _make_stat(dirfd, name, os.stat(name, dir_fd=dirfd, follow_symlinks=False))
        except FsError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise

    async def listdir(self, path: bytes) -> Sequence[tuple[bytes, Stat]]:
        return await asyncio.to_thread(self._listdir, path)

    def _listdir(self, path: bytes) -> list[tuple[bytes, Stat]]:
        with os_errors(path):
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
        with self._entry(path) as (dirfd, name), os_errors(path):
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
        with os_errors(path):
            parts = _split(path)
            if not parts:
                raise FsError(errno.EISDIR, os.strerror(errno.EISDIR), path)
            dirfd = self._open_dir(parts[:-1], path)
            try:
                fd, temp = self._open_temp(dirfd, parts[-1])
            except BaseException:
                os.close(dirfd)
                raise
        writer = LocalFileWriter(path, dirfd, fd, temp, self._writers.discard)
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
        temp = temp_name(name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        return os.open(temp, flags, 0o600, dir_fd=dirfd), temp

    async def mkdir(self, path: bytes, st: Stat) -> None:
        """Create the directory with `st`'s owner and permissions plus u+rwx.

        The owner-write bit lets the session fill the directory; the session's final
        `set_stat` (after the contents, as rsync does) sets the exact mode and times.
        """
        self._check_writable(path)
        with self._entry(path) as (dirfd, name), os_errors(path):
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
        with self._entry(existing) as (src_dirfd, src_name), os_errors(existing):
            src = os.stat(src_name, dir_fd=src_dirfd, follow_symlinks=False)
            if await self._same_inode(path, src):
                return  # already linked; rename() onto the same inode would be a no-op
            self._replace(
                path,
                lambda dirfd, temp: os.link(
                    src_name, temp, src_dir_fd=src_dirfd, dst_dir_fd=dirfd, follow_symlinks=False
                ),
            )

    async def copy(self, path: bytes, existing: bytes, st: Stat) -> None:
        """Make `path` a new regular file with `existing`'s content and `st`'s metadata."""
        reader = await self.open_read(existing)
        try:
            writer = await self.create(path)
            try:
                async for chunk in reader.stream():
                    await writer.write(chunk)
                await writer.commit(replace(st, size=reader.size))
            except BaseException:
                await writer.abort()
                raise
        finally:
            await reader.close()

    async def _same_inode(self, path: bytes, other: os.stat_result) -> bool:
        """Return whether `path` exists and is the inode `other` describes."""
        try:
            with self._entry(path) as (dirfd, name), os_errors(path):
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except FsError:
            return False
        return (st.st_dev, st.st_ino) == (other.st_dev, other.st_ino)

    def _replace(self, path: bytes, make: Callable[[int, bytes], None]) -> None:
        """Create an entry under a temp name with `make(dirfd, temp)`, rename it over `path`."""
        with self._entry(path) as (dirfd, name), os_errors(path):
            temp = temp_name(name)
            make(dirfd, temp)
            try:
                os.rename(temp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
            except OSError:
                with suppress(OSError):
                    os.unlink(temp, dir_fd=dirfd)
                raise

    async def set_stat(self, path: bytes, st: Stat) -> None:
        """Apply owner, permissions and ACLs (not on symlinks), xattrs and times."""
        self._check_writable(path)
        with self._entry(path) as (dirfd, name), os_errors(path):
            current_atime = _apply_owner_and_mode(dirfd, name, st)
            write_xattrs(proc_path(dirfd, name), st.xattrs)
            if not st_mod.S_ISLNK(st.mode):
                is_dir = st_mod.S_ISDIR(st.mode)
                write_acl(proc_path(dirfd, name), st.acl, st.mode, is_dir=is_dir)
            atime = st.atime_ns if st.atime_ns is not None else current_atime
            os.utime(name, ns=(atime, st.mtime_ns), dir_fd=dirfd, follow_symlinks=False)

    async def rename(self, old: bytes, new: bytes) -> None:
        self._check_writable(new)
        with (
            self._entry(old) as (old_dirfd, old_name),
            self._entry(new) as (new_dirfd, new_name),
            os_errors(new),
        ):
            os.rename(old_name, new_name, src_dir_fd=old_dirfd, dst_dir_fd=new_dirfd)

    async def remove(self, path: bytes) -> None:
        self._check_writable(path)
        if not path:
            raise FsError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        with self._entry(path) as (dirfd, name), os_errors(path):
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
        with os_errors(root):
            if not st_mod.S_ISDIR(os.stat(root).st_mode):
                raise FsError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), root)
        self.root = root

    async def open_session(self, *, writable: bool, user: str | None = None) -> LocalFileSystem:
        """Return a file system over the root (read-only unless `writable`)."""
        return LocalFileSystem(self.root, read_only=not writable)

    async def aclose(self) -> None:
        """Nothing to release: sessions own their descriptors."""
