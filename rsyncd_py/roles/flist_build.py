"""Build a pull's file list from a FileSystem (flist.c send_file_list and its helpers).

Theory of operation. The client names what it wants with source arguments, and since
3.2.5 it checks every name we send against them ("rejecting unrequested file-list
name"), so the names must be exactly the ones real rsync's sender would produce:

- (how an argument splits into directory and name: `source_args.py`)
- ``host:dir/`` (a "dot-dir" argument) sends ``.`` (a top directory) and, with ``-r``
  or ``-d``, the directory's contents as ``name``, ``sub/name``...;
- ``host:dir`` sends ``dir`` itself as a top entry, its contents as ``dir/...``;
- with ``-R`` the whole argument (after an optional ``/./`` marker) is the name, and
  its parent directories go first as "implied" directories (flagged, unfiltered,
  shared between consecutive arguments);
- inside a directory every entry is sent before any subdirectory is entered (rsync's
  send_directory order); the client's filter rules drop excluded names (top-level
  dot-dirs excepted), with per-directory merge files read from our tree.

With incremental recursion the subclass in `flist_extra.py` diverts directories
(`divert_dirs`): each is listed later in a list of its own, and -R names wait in their
first directory (`_send_parents` and `_send_contents` are the two hooks it overrides).

Each entry is handed to `emit` as soon as it is made, so the list streams to the client
while the walk goes on. The builder keeps one `SendEntry` per name (the wire entry plus
where it lives in the file system) and accumulates rsync's io_error bits; problems are
reported with rsync's texts through the Wire.

State: `io_error` (IOERR_* bits so far), `entries` (transmission order), `_last_implied`
(the implied-directory path of the previous -R argument), `total_size` (regular files
and symlinks, as rsync's stats count it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat as stat_mod
from collections.abc import Callable
from dataclasses import dataclass

from rsyncd_py.fs.base import FileSystem, FsError, Stat
from rsyncd_py.protocol import checksums
from rsyncd_py.protocol.constants import IOERR_GENERAL, IOERR_VANISHED
from rsyncd_py.protocol.errors import ExitCode, SessionError
from rsyncd_py.protocol.filters import FilterSet
from rsyncd_py.protocol.flist import (
    FLAG_CONTENT_DIR,
    FLAG_IMPLIED_DIR,
    FLAG_TOP_DIR,
    FileEntry,
    FlistOptions,
    is_device,
)
from rsyncd_py.roles.source_args import NameType, resolve_root_relative, split_arg
from rsyncd_py.wire import Log, Wire

# A directory's st_size shows in listings (`rsync host:dir/`). Stores keep no directory
# sizes, so those report what one block of ext4 (the common Linux server) shows.
DEFAULT_DIR_SIZE = 4096
_CHECKSUM_CHUNK = 1 << 20
_MAX_SYMLINK_HOPS = 20


@dataclass(slots=True)
class SendEntry:
    """One file-list entry as the sender keeps it: the wire entry and its source."""

    entry: FileEntry
    path: bytes  # root-relative path in the FileSystem
    st: Stat
    hlink_key: object | None = None  # -H: entries with the same key are one inode
    # incremental -R: names below this implied directory still to send in its list
    relnames: list[tuple[bytes, NameType, bool]] | None = None  # (name, type, missing)


# flist.c's "missing" entry for --delete-missing-args: mode 0 tells the generator to delete
MISSING = Stat(mode=0)

Emit = Callable[[SendEntry], None]
DigestLookup = Callable[[object, str], bytes | None]


class FileListBuilder:
    """flist.c send_file_list for one session (see the module docstring)."""

    def __init__(
        self,
        wire: Wire,
        fs: FileSystem,
        options: FlistOptions,
        *,
        recurse: bool,
        xfer_dirs: bool,
        implied_dirs: bool,
        filters: FilterSet | None,
        emit: Emit,
        recorded_digest: DigestLookup,
        file_checksum: str,
        missing_args: int = 0,
    ) -> None:
        self.wire = wire
        self.fs = fs
        self.options = options
        self.recurse = recurse
        self.xfer_dirs = xfer_dirs
        self.relative = options.relative_paths
        self.implied_dirs = implied_dirs or (self.relative and options.protocol >= 30)
        self.filters = filters
        self.emit = emit
        self.recorded_digest = recorded_digest
        self.file_checksum = file_checksum
        self.missing_args = missing_args  # 1: --ignore-missing-args, 2: --delete-missing-args
        self.io_error = 0
        self.entries: list[SendEntry] = []
        self.total_size = 0
        self._last_implied: list[bytes] = []
        self._base = b""
        self._inodes: dict[object, int] = {}  # -H below protocol 30: link_key -> inode number
        # FLAG_DIVERT_DIRS: subdirectories are listed later, each in a list of its own
        self.divert_dirs = False

    # --- flist.c send_file_list -------------------------------------------------------

    async def build(self, base: bytes, args: list[bytes]) -> None:
        """Rsync flist.c:send_file_list over `args`, relative to root-relative `base`."""
        flags = FLAG_CONTENT_DIR if self.recurse else 0
        implied_dot_dir = 0
        for arg in args:
            source = split_arg(arg, relative=self.relative, first_dot=implied_dot_dir == 0)
            if source.wants_dot_dir and implied_dot_dir == 0:
                implied_dot_dir = -1
            changed = await self._change_dir(base, source.directory)
            if changed is None:
                implied_dot_dir = max(implied_dot_dir, 0)
                continue
            self._base = changed
            if implied_dot_dir < 0:
                implied_dot_dir = 1
                await self._send_implied_dot()
            await self._send_arg(source.name, source.name_type, flags)

    async def _change_dir(self, base: bytes, directory: bytes | None) -> bytes | None:
        """flist.c change_pathname: the root-relative directory the names are under."""
        if directory is None:
            return base
        path = resolve_root_relative(base, directory)
        if path is None:
            self._report_errno(errno.EACCES, f'change_dir "{_text(directory)}" failed')
            return None
        try:
            return await self._follow_dirs(path)
        except FsError as exc:
            self.io_error |= IOERR_GENERAL
            self._report_errno(exc.errno or errno.EIO, f"change_dir {self._full(path)} failed")
            return None

    async def _follow_dirs(self, path: bytes) -> bytes:
        """Chdir's view of `path`: symlinked directories followed (inside the root)."""
        resolved: list[bytes] = []
        pending = [p for p in path.split(b"/") if p]
        hops = 0
        while pending:
            part = pending.pop(0)
            here = b"/".join([*resolved, part])
            st = await self.fs.lstat(here)
            if st is None:
                raise FsError(errno.ENOENT, "No such file or directory", here)
            if st.is_symlink() and hops < _MAX_SYMLINK_HOPS:
                hops += 1
                target = st.link_target or b""
                base = b"" if target.startswith(b"/") else b"/".join(resolved)
                followed = resolve_root_relative(base, target)
                if followed is None:
                    raise FsError(errno.EACCES, "Permission denied", here)
                resolved = []
                pending = [p for p in followed.split(b"/") if p] + pending
                continue
            if not st.is_dir():
                raise FsError(errno.ENOTDIR, "Not a directory", here)
            resolved.append(part)
        return b"/".join(resolved)

    async def _send_arg(self, name: bytes, name_type: NameType, flags: int) -> None:
        """The body of send_file_list's loop for one cleaned argument."""
        path = self._fs_path(name)
        if name_type is not NameType.NORMAL:
            # link_stat follows "link/" and "link/." only to a directory: a dangling link
            # or one to a file is sent as the link itself (flist.c link_stat)
            with contextlib.suppress(FsError):
                path = await self._follow_dirs(path)
        st = await self._link_stat(path, missing_ok=self.missing_args > 0)
        if st is None:
            if self.missing_args != 2:
                return
            st = MISSING  # the client's generator deletes what we could not find
        is_dir = st.is_dir()
        if name_type is not NameType.DOTDIR and st.mode and self._excluded(name, is_dir):
            return
        if is_dir and not self.xfer_dirs:
            self.wire.rprintf(Log.INFO, f"skipping directory {_text(name)}\n")
            return
        if self.relative and await self._send_parents(name, name_type, st):
            return
        if self.recurse or (self.xfer_dirs and name_type is not NameType.NORMAL):
            sent = await self._send_file_name(
                name, path, st, FLAG_TOP_DIR | FLAG_CONTENT_DIR | flags, filtered=False
            )
            if sent is not None and is_dir:
                await self._send_contents(name, path, name_type, flags)
        else:
            await self._send_file_name(name, path, st, flags, filtered=False)

    async def _send_parents(self, name: bytes, name_type: NameType, st: Stat) -> bool:
        """-R: `name`'s parent directories go first; True if `name` itself waits.

        The incremental builder (flist_extra.py) sends only the first and leaves the
        rest of the name for that directory's own list.
        """
        parent = name.rpartition(b"/")[0]
        if self.implied_dirs and parent and parent != b"/":
            await self._send_implied_dirs(parent)
        return False

    async def _send_contents(
        self, name: bytes, path: bytes, name_type: NameType, flags: int
    ) -> None:
        """What follows a top directory argument: all of it, recursively."""
        await self._send_if_directory(name, path, flags)

    async def _link_stat(self, path: bytes, *, missing_ok: bool = False) -> Stat | None:
        """link_stat of a top-level argument; a failure is reported and skipped.

        With `missing_ok` (--ignore/--delete-missing-args) a missing one is not an error.
        """
        try:
            st = await self.fs.lstat(path)
            err = errno.ENOENT if st is None else 0
        except FsError as exc:
            st, err = None, exc.errno or errno.EIO
        if st is None and not (missing_ok and err == errno.ENOENT):
            if err != errno.ENOENT:
                self.io_error |= IOERR_GENERAL
            self._report_errno(err, f"link_stat {self._full(path)} failed")
        return st

    async def _send_implied_dot(self) -> None:
        """-R with a leading "./": the destination's "." travels as an implied dir."""
        st = await self._link_stat(self._base)
        if st is not None:
            flags = FLAG_IMPLIED_DIR
            await self._send_file_name(b".", self._base, st, flags, filtered=False)

    async def _send_implied_dirs(self, parent: bytes) -> None:
        """flist.c send_implied_dirs (non-incremental): the parents of a -R name."""
        parts = parent.split(b"/")
        common = 0
        while (
            common < len(parts)
            and common < len(self._last_implied)
            and parts[common] == self._last_implied[common]
        ):
            common += 1
        if common == len(parts):
            return
        self._last_implied = parts
        flags = FLAG_IMPLIED_DIR
        for depth in range(max(common, 1), len(parts) + 1):
            name = b"/".join(parts[:depth])
            if not name:
                continue
            path = self._fs_path(name)
            try:
                st = await self.fs.lstat(path)
            except FsError:
                st = None
            if st is None:
                continue
            await self._send_file_name(name, path, st, flags, filtered=False)

    # --- flist.c send_directory / send_if_directory / send_file_name --------------------

    async def _send_if_directory(self, name: bytes, path: bytes, flags: int) -> None:
        """Rsync flist.c:send_if_directory: list `name`'s contents under its merge rules."""
        entered = await self._enter_dir(name, path)
        try:
            await self._send_directory(name, path, flags)
        finally:
            if entered and self.filters is not None:
                self.filters.leave_dir(name)

    async def _send_directory(self, name: bytes, path: bytes, flags: int) -> None:
        """Rsync flist.c:send_directory: every entry of the directory, then its subdirs."""
        try:
            listing = await self.fs.listdir(path)
        except FsError as exc:
            if exc.errno == errno.ENOENT:
                self.io_error |= IOERR_VANISHED
                self.wire.rprintf(Log.WARNING, f"directory has vanished: {self._full(path)}\n")
            else:
                self._report_errno(exc.errno or errno.EIO, f"opendir {self._full(path)} failed")
                self.io_error |= IOERR_GENERAL
            return
        subdirs: list[tuple[bytes, bytes]] = []
        for child, st in listing:
            child_name = child if name == b"." else name + b"/" + child
            child_path = path + b"/" + child if path else child
            sent = await self._send_file_name(child_name, child_path, st, flags, filtered=True)
            if sent is not None and st.is_dir() and self.recurse and not self.divert_dirs:
                subdirs.append((child_name, child_path))
        for child_name, child_path in subdirs:
            await self._send_if_directory(child_name, child_path, flags)

    async def _send_file_name(
        self, name: bytes, path: bytes, st: Stat, flags: int, *, filtered: bool
    ) -> SendEntry | None:
        """Rsync flist.c:send_file_name (with make_file): filter, describe, emit."""
        is_dir = st.is_dir()
        if filtered:
            if is_dir and not self.xfer_dirs:
                self.wire.rprintf(Log.INFO, f"skipping directory {_text(name)}\n")
                return None
            if self._excluded(name, is_dir):
                return None
        if not is_dir:
            flags &= ~FLAG_CONTENT_DIR
        if st.is_symlink() and self.options.preserve_links and not st.link_target:
            self.io_error |= IOERR_GENERAL
            self.wire.rprintf(
                Log.ERROR_XFER, f"skipping symlink with 0-length value: {self._full(path)}\n"
            )
            return None
        entry = self._make_entry(name, st, flags)
        if self.options.checksum_len and st.is_file():
            entry.checksum = await self._file_checksum(path)
        sent = SendEntry(entry, path, st, self._hlink_key(entry, st))
        self.entries.append(sent)
        if st.is_file() or st.is_symlink():
            self.total_size += entry.size
        self.emit(sent)
        return sent

    def _make_entry(self, name: bytes, st: Stat, flags: int) -> FileEntry:
        """The wire description of one entry (make_file's file_struct)."""
        opts = self.options
        mode = st.mode
        if stat_mod.S_ISREG(mode):
            size = st.size
        elif stat_mod.S_ISLNK(mode):
            size = len(st.link_target or b"")
        elif stat_mod.S_ISDIR(mode):
            size = st.size or DEFAULT_DIR_SIZE
        else:
            size = 0
        seconds, nsec = divmod(st.mtime_ns, 1_000_000_000)
        names = not opts.numeric_ids
        major = minor = 0
        if is_device(mode):
            major, minor = os.major(st.rdev), os.minor(st.rdev)
        return FileEntry(
            name=name,
            mode=mode,
            size=size,
            mtime=seconds,
            mtime_nsec=nsec if opts.protocol >= 31 else 0,
            uid=st.uid if opts.preserve_uid else None,
            gid=st.gid if opts.preserve_gid else None,
            user=st.user if names and opts.preserve_uid else None,
            group=st.group if names and opts.preserve_gid else None,
            rdev_major=major,
            rdev_minor=minor,
            link_target=st.link_target if stat_mod.S_ISLNK(mode) else None,
            flags=flags,
        )

    def _hlink_key(self, entry: FileEntry, st: Stat) -> object | None:
        """make_file's tmp_dev/tmp_ino: what -H groups `entry` by, or None.

        From protocol 28 every non-directory with several names (a `link_key`); below,
        every regular file. Below protocol 30 the key travels as a dev/inode pair: a
        number per key stands for the inode (the client only compares them).
        """
        opts = self.options
        if not opts.preserve_hard_links:
            return None
        if opts.protocol >= 28:
            if st.is_dir() or st.link_key is None:
                return None
            key = st.link_key
        elif not st.is_file():
            return None
        else:
            key = st.link_key if st.link_key is not None else ("alone", entry.name)
        if opts.protocol < 30:
            entry.dev_ino = (1, self._inodes.setdefault(key, len(self._inodes) + 1))
        return key

    async def _file_checksum(self, path: bytes) -> bytes:
        """checksum.c file_checksum: the -c digest (the recorded one when there is one)."""
        width = self.options.checksum_len
        try:
            reader = await self.fs.open_read(path)
        except FsError:
            return bytes(width)  # rsync: an unreadable file gets an all-zero sum
        try:
            known = self.recorded_digest(reader, self.file_checksum)
            if known is not None:
                return known[:width]
            hasher = checksums.new_plain_hasher(self.file_checksum)
            async for chunk in reader.stream(_CHECKSUM_CHUNK):
                hasher.update(chunk)
            return hasher.digest()[:width]
        except FsError:
            return bytes(width)
        finally:
            await reader.close()

    # --- filters (exclude.c is_excluded, push_local_filters) ---------------------------

    def _excluded(self, name: bytes, is_dir: bool) -> bool:
        return self.filters is not None and self.filters.excluded(name.lstrip(b"/"), is_dir)

    async def _enter_dir(self, name: bytes, path: bytes) -> bool:
        """push_local_filters: load the directory's per-directory merge files."""
        filters = self.filters
        if filters is None:
            return False
        dirpath = name.lstrip(b"/") or b"."
        loaded: dict[bytes, bytes | None] = {}
        while True:
            missing: list[bytes] = []

            def read(
                rel: bytes,
                loaded: dict[bytes, bytes | None] = loaded,
                missing: list[bytes] = missing,
            ) -> bytes | None:
                if rel in loaded:
                    return loaded[rel]
                missing.append(rel)
                return None

            filters.enter_dir(dirpath, read)
            if not missing:
                return True
            filters.leave_dir(dirpath)  # read what it asked for, then enter again
            for rel in missing:
                loaded[rel] = await self._read_merge_file(path, rel.rpartition(b"/")[2])

    async def _read_merge_file(self, dir_path: bytes, file_name: bytes) -> bytes | None:
        merge_path = dir_path + b"/" + file_name if dir_path else file_name
        try:
            st = await self.fs.lstat(merge_path)
            if st is None or not st.is_file():
                return None
            reader = await self.fs.open_read(merge_path)
        except FsError:
            return None
        try:
            return b"".join([chunk async for chunk in reader.stream()])
        finally:
            await reader.close()

    # --- helpers -----------------------------------------------------------------------

    def _fs_path(self, name: bytes) -> bytes:
        """Where a list name lives: below the argument's directory (or the root for /...)."""
        resolved = (
            resolve_root_relative(b"", name)
            if name.startswith(b"/")
            else resolve_root_relative(self._base, name)
        )
        if resolved is None:
            raise SessionError(
                f"rsync: [sender] path escapes the served tree: {_text(name)}",
                ExitCode.RERR_FILESELECT,
            )
        return resolved

    def _full(self, path: bytes) -> str:
        """log.c full_fname: the quoted path as the client should read it."""
        return f'"/{_text(path)}"'

    def _report_errno(self, err: int, what: str) -> None:
        """rsyserr(FERROR_XFER, ...): a transfer error that makes the exit code 23."""
        self.wire.rprintf(Log.ERROR_XFER, f"rsync: [sender] {what}: {os.strerror(err)} ({err})\n")


def _text(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")
