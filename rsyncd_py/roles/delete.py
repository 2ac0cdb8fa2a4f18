"""--delete on the receiving side (generator.c delete_in_dir / do_delete_pass, delete.c).

What is deleted: in every "content" directory of the transfer (one the sender recursed
into), each local entry whose name is not in the file list, unless the filter rules the
client sent protect it. Directories go with their contents, deepest first. Each deletion
is reported to the client as MSG_DELETED (a directory's name carries a trailing NUL) and
counted for NDX_DEL_STATS; in a dry run nothing is removed but everything is reported.

Safety rules kept from rsync: nothing is deleted once the sender reported an I/O error
(unless --ignore-errors); --max-delete stops deleting and makes the exit code 25; a
removal that fails is an ERROR_XFER (exit 23), never fatal.

Which names a directory should keep: with one complete file list, its entries below
that directory (`_wanted`, built from the list on first use); with incremental
recursion, the names of the directory's own list, which the generator passes in. With
--delete-delay and incremental recursion, what `delete_in_dir` finds is only remembered
and removed after the transfer (`delete_delayed`, generator.c do_delayed_deletions).
"""

from __future__ import annotations

import errno
import stat as stat_mod

from rsyncd_py.fs.base import FsError, Stat
from rsyncd_py.protocol.constants import IOERR_GENERAL, MSG_DELETED
from rsyncd_py.protocol.flist import FLAG_CONTENT_DIR, FileEntry
from rsyncd_py.protocol.flist_sort import sort_key
from rsyncd_py.roles.backup import Backups
from rsyncd_py.roles.transfer import Transfer
from rsyncd_py.wire import Log

# delete.c DEL_* flags used here
DEL_RECURSE = 1 << 1
DEL_FOR_FILE = 1 << 3
DEL_FOR_DIR = 1 << 4
DEL_FOR_SYMLINK = 1 << 5
DEL_FOR_DEVICE = 1 << 6
DEL_FOR_SPECIAL = 1 << 7
DEL_MAKE_ROOM = DEL_FOR_FILE | DEL_FOR_DIR | DEL_FOR_SYMLINK | DEL_FOR_DEVICE | DEL_FOR_SPECIAL
DEL_FOR_BACKUP = 1 << 8  # removing an old backup that is in the way

_MAKE_ROOM_DESC = {
    DEL_FOR_FILE: "regular file",
    DEL_FOR_DIR: "directory",
    DEL_FOR_SYMLINK: "symlink",
    DEL_FOR_DEVICE: "device file",
    DEL_FOR_SPECIAL: "special file",
}


class Deleter:
    """Deletion state of one session (rsync keeps it in statics)."""

    def __init__(self, t: Transfer) -> None:
        self.t = t
        self.backups = Backups(t)
        self._warned_io_error = False
        self._filter_dirs: list[bytes] = []  # directories entered in the FilterSet
        # names each directory of the (one) file list should contain (rsync's flist_find)
        self._wanted: dict[bytes, set[bytes]] | None = None
        self._delayed: list[tuple[bytes, bytes, Stat]] = []  # --delete-delay: (path, rel, st)

    def del_opts(self) -> int:
        """DEL_RECURSE when --delete or --force lets us remove a directory in the way."""
        return DEL_RECURSE if self.t.opts.delete_mode or self.t.opts.force_delete else 0

    async def delete_pass(self) -> None:
        """generator.c do_delete_pass: --delete-before / --delete-after."""
        t = self.t
        if t.dry_run > 1:
            return
        for entry in t.lists.first.entries:
            if not entry.active or not entry.flags & FLAG_CONTENT_DIR:
                continue
            try:
                st = await t.fs.lstat(t.path_of(entry))
            except FsError:
                continue
            if st is not None and st.is_dir():
                await self.delete_in_dir(entry)

    async def delete_in_dir(
        self, entry: FileEntry, wanted: set[bytes] | None = None, *, delay: bool = False
    ) -> None:
        """generator.c delete_in_dir: remove what directory `entry` should not contain.

        `wanted` are the names it keeps (default: its entries in the one file list);
        with `delay` the removals wait for `delete_delayed`.
        """
        t = self.t
        if t.io_error & IOERR_GENERAL and not t.opts.ignore_errors:
            if not self._warned_io_error:
                t.wire.rprintf(Log.INFO, "IO error encountered -- skipping file deletion\n")
                self._warned_io_error = True
            return
        await self._enter_filter_dir(entry.name)
        if wanted is None:
            wanted = self._wanted_in(entry.name)
        listing, _ = await self._dirlist(t.path_of(entry), entry.name)
        for name, st in reversed(listing):
            if name in wanted:
                continue
            rel = name if entry.name == b"." else entry.name + b"/" + name
            if delay:
                self._delayed.append((t.join(rel), rel, st))
            else:
                await self.delete_item(t.join(rel), rel, st, DEL_RECURSE)

    async def delete_delayed(self) -> None:
        """generator.c do_delayed_deletions: what --delete-delay found, removed now."""
        delayed, self._delayed = self._delayed, []
        for path, rel, st in delayed:
            await self.delete_item(path, rel, st, DEL_RECURSE)

    def leave_filter_dirs(self) -> None:
        """change_local_filter_dir(NULL): leave every directory entered for deletion."""
        filters = self.t.filters
        while self._filter_dirs:
            directory = self._filter_dirs.pop()
            if filters is not None:
                filters.leave_dir(directory)

    def _wanted_in(self, rel_dir: bytes) -> set[bytes]:
        """The names the one file list has directly in `rel_dir`."""
        if self._wanted is None:
            self._wanted = {}
            for entry in self.t.lists.first.entries:
                if entry.active and entry.name != b".":
                    parent, _, base = entry.name.rpartition(b"/")
                    self._wanted.setdefault(parent or b".", set()).add(base)
        return self._wanted.get(rel_dir, set())

    async def _enter_filter_dir(self, rel_dir: bytes) -> None:
        """exclude.c change_local_filter_dir: per-directory merge files for `rel_dir`.

        Directories arrive parents first; a directory that is not below the last one
        entered closes those it is not inside of. FilterSet reads merge files through a
        synchronous callback, so the files it asks for are fetched and it is asked again.
        """
        filters = self.t.filters
        if filters is None:
            return
        while self._filter_dirs and not _is_inside(rel_dir, self._filter_dirs[-1]):
            filters.leave_dir(self._filter_dirs.pop())
        await self._push_filters(rel_dir)
        self._filter_dirs.append(rel_dir)

    async def _push_filters(self, rel_dir: bytes) -> None:
        """exclude.c push_local_filters: load `rel_dir`'s merge files (if any rules)."""
        filters = self.t.filters
        if filters is None:
            return
        contents: dict[bytes, bytes | None] = {}
        while True:
            wanted: list[bytes] = []

            def read(path: bytes, wanted: list[bytes] = wanted) -> bytes | None:
                if path in contents:
                    return contents[path]
                wanted.append(path)
                return None

            filters.enter_dir(rel_dir, read)
            if not wanted:
                break
            filters.leave_dir(rel_dir)
            for path in wanted:
                contents[path] = await self._read_small_file(self.t.join(path))

    async def _read_small_file(self, path: bytes) -> bytes | None:
        try:
            st = await self.t.fs.lstat(path)
            if st is None or not st.is_file():
                return None
            reader = await self.t.fs.open_read(path)
        except FsError:
            return None
        try:
            return await reader.read(0, st.size)
        finally:
            await reader.close()

    async def _dirlist(
        self, path: bytes, rel_dir: bytes, *, ignore_perishable: bool = False
    ) -> tuple[list[tuple[bytes, Stat]], int]:
        """flist.c get_dirlist: the entries the filters do not protect, sorted.

        Also returns how many they do protect (rsync's non_perishable_cnt): a directory
        holding any of those cannot be deleted.
        """
        try:
            listing = await self.t.fs.listdir(path)
        except FsError:
            return [], 0
        kept = []
        for name, st in listing:
            rel = name if rel_dir == b"." else rel_dir + b"/" + name
            if not self._protected(rel, st.is_dir(), ignore_perishable):
                kept.append((name, st))
        proto = self.t.protocol
        kept.sort(key=lambda item: sort_key(item[0], item[1].is_dir(), proto))
        return kept, len(listing) - len(kept)

    def _protected(self, rel: bytes, is_dir: bool, ignore_perishable: bool) -> bool:
        filters = self.t.filters
        if filters is None:
            return False
        return filters.protected(rel, is_dir, ignore_perishable=ignore_perishable)

    async def delete_item(self, path: bytes, rel: bytes, st: Stat, flags: int) -> bool:
        """delete.c delete_item: remove `path` (`rel` is its name as the client sees it).

        Returns True once it is gone.
        """
        t = self.t
        ok = True
        if st.is_dir():
            ok = await self._delete_dir_contents(rel, path, flags)
        if ok:
            limit = t.opts.max_delete
            if not flags & DEL_MAKE_ROOM and limit >= 0 and t.deleted.files >= limit:
                t.skipped_deletes += 1
                return False
            try:
                if self._backs_up(rel, st, flags):
                    ok = await self.backups.make(path, rel, st, self, keep=False)
                elif not t.dry_run:
                    await t.fs.remove(path)
            except FsError as exc:
                if exc.errno == errno.ENOTEMPTY and st.is_dir():
                    t.wire.rprintf(Log.INFO, f"cannot delete non-empty directory: {_s(rel)}\n")
                    ok = False
                elif exc.errno != errno.ENOENT:
                    what = "rmdir" if st.is_dir() else "unlink"
                    t.wire.rprintf(
                        Log.ERROR_XFER,
                        f"rsync: [generator] delete_file: {what}({_s(rel)}) failed: "
                        f"{exc.strerror} ({exc.errno})\n",
                    )
                    ok = False
            else:
                if ok and not flags & DEL_MAKE_ROOM:
                    self._log_delete(rel, st)
        if not ok and flags & DEL_MAKE_ROOM:
            desc = _MAKE_ROOM_DESC[flags & DEL_MAKE_ROOM]
            t.wire.rprintf(Log.ERROR_XFER, f"could not make way for new {desc}: {_s(rel)}\n")
        return ok

    async def _delete_dir_contents(self, rel: bytes, path: bytes, flags: int) -> bool:
        """delete.c delete_dir_contents: empty a directory before removing it."""
        t = self.t
        await self._push_filters(rel)
        try:
            listing, protected = await self._dirlist(path, rel, ignore_perishable=True)
            ok = not protected
            if not listing:
                if not ok:
                    t.wire.rprintf(Log.INFO, f"cannot delete non-empty directory: {_s(rel)}\n")
                return ok
            if not flags & DEL_RECURSE:
                t.wire.rprintf(Log.INFO, f"cannot delete non-empty directory: {_s(rel)}\n")
                return False
            for name, st in reversed(listing):
                child = rel + b"/" + name
                child_flags = DEL_RECURSE if st.is_dir() else 0
                if not await self.delete_item(path + b"/" + name, child, st, child_flags):
                    ok = False
        finally:
            if t.filters is not None:
                t.filters.leave_dir(rel)
        if not ok:
            t.wire.rprintf(Log.INFO, f"cannot delete non-empty directory: {_s(rel)}\n")
        return ok

    def _log_delete(self, rel: bytes, st: Stat) -> None:
        """log.c log_delete: MSG_DELETED to the client (protocol 29+), and count it."""
        t = self.t
        if t.protocol >= 29:
            t.wire.send_msg(MSG_DELETED, rel + b"\0" if st.is_dir() else rel)
        counts = t.deleted
        counts.files += 1
        if st.is_dir():
            counts.dirs += 1
        elif st.is_symlink():
            counts.symlinks += 1
        elif stat_mod.S_ISCHR(st.mode) or stat_mod.S_ISBLK(st.mode):
            counts.devices += 1
        elif not st.is_file():
            counts.specials += 1

    def _backs_up(self, rel: bytes, st: Stat, flags: int) -> bool:
        """delete.c delete_item: --backup keeps what is deleted, except old backups."""
        backups = self.backups
        return (
            backups.enabled
            and not st.is_dir()
            and not flags & DEL_FOR_BACKUP
            and not backups.is_backup_name(rel)
        )

    async def remove_backup(self, path: bytes, st: Stat) -> bool:
        """backup.c make_backup: clear an old backup out of the way of a new one."""
        flags = del_for_flag(st.mode) | DEL_FOR_BACKUP | DEL_RECURSE
        return await self.delete_item(path, path, st, flags)

    async def make_room(self, entry: FileEntry, st: Stat, for_flag: int) -> bool:
        """Remove whatever is in the way of `entry` (DEL_FOR_*); True if it is gone."""
        t = self.t
        return await self.delete_item(
            t.path_of(entry), t.display_name(entry), st, self.del_opts() | for_flag
        )


def del_for_flag(mode: int) -> int:
    """delete.c get_del_for_flag: the DEL_FOR_* flag for an entry of `mode`."""
    if stat_mod.S_ISREG(mode):
        return DEL_FOR_FILE
    if stat_mod.S_ISDIR(mode):
        return DEL_FOR_DIR
    if stat_mod.S_ISLNK(mode):
        return DEL_FOR_SYMLINK
    if stat_mod.S_ISCHR(mode) or stat_mod.S_ISBLK(mode):
        return DEL_FOR_DEVICE
    return DEL_FOR_SPECIAL


def _is_inside(rel_dir: bytes, parent: bytes) -> bool:
    return parent == b"." or rel_dir.startswith(parent + b"/")


def _s(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")
