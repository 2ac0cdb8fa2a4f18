"""--delete on the receiving side (generator.c delete_in_dir / do_delete_pass, delete.c).

What is deleted: in every "content" directory of the transfer (one the sender recursed
into), each local entry whose name is not in the file list, unless the filter rules the
client sent protect it. Directories go with their contents, deepest first. Each deletion
is reported to the client as MSG_DELETED (a directory's name carries a trailing NUL) and
counted for NDX_DEL_STATS; in a dry run nothing is removed but everything is reported.

Safety rules kept from rsync: nothing is deleted once the sender reported an I/O error
(unless --ignore-errors); --max-delete stops deleting and makes the exit code 25; a
removal that fails is an ERROR_XFER (exit 23), never fatal.
"""

from __future__ import annotations

import errno
import stat as stat_mod

from rsyncd_py.fs.base import FsError, Stat
from rsyncd_py.protocol.constants import IOERR_GENERAL, MSG_DELETED
from rsyncd_py.protocol.flist import FLAG_CONTENT_DIR, FileEntry
from rsyncd_py.protocol.flist_sort import sort_key
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
        self._warned_io_error = False
        # names each directory of the file list should contain (rsync's flist_find)
        self._wanted: dict[bytes, set[bytes]] = {}
        for entry in t.entries:
            if entry.active and entry.name != b".":
                parent, _, base = entry.name.rpartition(b"/")
                self._wanted.setdefault(parent or b".", set()).add(base)

    def del_opts(self) -> int:
        """DEL_RECURSE when --delete or --force lets us remove a directory in the way."""
        return DEL_RECURSE if self.t.opts.delete_mode or self.t.opts.force_delete else 0

    async def delete_pass(self) -> None:
        """generator.c do_delete_pass: --delete-before / --delete-after."""
        t = self.t
        if t.dry_run > 1:
            return
        for entry in t.entries:
            if not entry.active or not entry.flags & FLAG_CONTENT_DIR:
                continue
            try:
                st = await t.fs.lstat(t.path_of(entry))
            except FsError:
                continue
            if st is not None and st.is_dir():
                await self.delete_in_dir(entry)

    async def delete_in_dir(self, entry: FileEntry) -> None:
        """generator.c delete_in_dir: remove what directory `entry` should not contain."""
        t = self.t
        if t.io_error & IOERR_GENERAL and not t.opts.ignore_errors:
            if not self._warned_io_error:
                t.wire.rprintf(Log.INFO, "IO error encountered -- skipping file deletion\n")
                self._warned_io_error = True
            return
        wanted = self._wanted.get(entry.name, set())
        for name, st in reversed(await self._dirlist(t.path_of(entry), entry.name)):
            if name in wanted:
                continue
            rel = name if entry.name == b"." else entry.name + b"/" + name
            await self.delete_item(t.join(rel), rel, st, DEL_RECURSE)

    async def _dirlist(self, path: bytes, rel_dir: bytes) -> list[tuple[bytes, Stat]]:
        """flist.c get_dirlist: the directory's entries the filters do not hide, sorted."""
        try:
            listing = await self.t.fs.listdir(path)
        except FsError:
            return []
        kept = [
            (name, st)
            for name, st in listing
            if not self._protected(name if rel_dir == b"." else rel_dir + b"/" + name, st.is_dir())
        ]
        proto = self.t.protocol
        kept.sort(key=lambda item: sort_key(item[0], item[1].is_dir(), proto))
        return kept

    def _protected(self, rel: bytes, is_dir: bool) -> bool:
        filters = self.t.filters
        if filters is None:
            return False
        return bool(filters.protected(rel, is_dir))  # type: ignore[attr-defined]

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
                if not t.dry_run:
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
                if not flags & DEL_MAKE_ROOM:
                    self._log_delete(rel, st)
        if not ok and flags & DEL_MAKE_ROOM:
            desc = _MAKE_ROOM_DESC[flags & DEL_MAKE_ROOM]
            t.wire.rprintf(Log.ERROR_XFER, f"could not make way for new {desc}: {_s(rel)}\n")
        return ok

    async def _delete_dir_contents(self, rel: bytes, path: bytes, flags: int) -> bool:
        """delete.c delete_dir_contents: empty a directory before removing it."""
        t = self.t
        listing = await self._dirlist(path, rel)
        if not listing:
            return True
        if not flags & DEL_RECURSE:
            t.wire.rprintf(Log.INFO, f"cannot delete non-empty directory: {_s(rel)}\n")
            return False
        ok = True
        for name, st in reversed(listing):
            child_flags = DEL_RECURSE if st.is_dir() else 0
            if not await self.delete_item(path + b"/" + name, rel + b"/" + name, st, child_flags):
                ok = False
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


def _s(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")
