"""Which attributes of an entry we keep, how they compare, and setting them.

Mirrors rsync.c set_file_attrs, rsync.c dest_mode and the attribute half of
generator.c itemize. Owners are compared and kept as `ids.py` decides, ACLs and xattrs
as `acl_xattr.py` does; everything else here is mode bits and times. A FileSystem takes
a whole `Stat`, so attributes rsync was not asked to keep are carried over from what is
already there (or get a new entry's defaults: the umask-filtered mode, the current
time, the server's own ids).
"""

from __future__ import annotations

import stat as stat_mod
from dataclasses import replace

from rsyncd_py.fs.base import FsError, Stat
from rsyncd_py.protocol.constants import (
    ITEM_LOCAL_CHANGE,
    ITEM_MATCHED,
    ITEM_REPORT_GROUP,
    ITEM_REPORT_OWNER,
    ITEM_REPORT_PERMS,
    ITEM_REPORT_SIZE,
    ITEM_REPORT_TIME,
    ITEM_TRANSFER,
    ITEM_XNAME_FOLLOWS,
)
from rsyncd_py.protocol.flist import FileEntry
from rsyncd_py.roles import ids
from rsyncd_py.roles.transfer import CHMOD_BITS, Transfer, now_ns
from rsyncd_py.wire import Log


def dest_mode(t: Transfer, flist_mode: int, stat_mode: int, exists: bool) -> int:
    """rsync.c dest_mode: the mode to give an entry when --perms is off."""
    if exists:
        new_mode = (flist_mode & ~CHMOD_BITS) | (stat_mode & CHMOD_BITS)
        if t.opts.preserve_executability and stat_mod.S_ISREG(flist_mode):
            if not flist_mode & 0o111:
                new_mode &= ~0o111
            elif not stat_mode & 0o111:
                new_mode |= (new_mode & 0o444) >> 2
        return new_mode
    return flist_mode & (~CHMOD_BITS | t.dflt_perms)


def entry_mtime_ns(entry: FileEntry) -> int:
    return entry.mtime * 1_000_000_000 + entry.mtime_nsec


def mtime_differs(t: Transfer, st: Stat, entry: FileEntry) -> bool:
    """generator.c mtime_differs."""
    sec, nsec = divmod(st.mtime_ns, 1_000_000_000)
    return not t.same_time(sec, nsec, entry.mtime, entry.mtime_nsec)


def perms_differ(t: Transfer, st: Stat, entry: FileEntry) -> bool:
    """generator.c perms_differ (never for symlinks: Linux cannot chmod them)."""
    if stat_mod.S_ISLNK(entry.mode):
        return False
    if t.opts.preserve_perms:
        return (st.mode & CHMOD_BITS) != (entry.mode & CHMOD_BITS)
    if t.opts.preserve_executability:
        return bool(st.mode & 0o111) != bool(entry.mode & 0o111)
    return False


def report_flags(t: Transfer, entry: FileEntry, st: Stat, iflags: int, xname: bytes | None) -> int:
    """The ITEM_REPORT_* bits itemize adds for an entry that already exists as `st`."""
    if stat_mod.S_ISREG(entry.mode) and entry.size != st.size:
        iflags |= ITEM_REPORT_SIZE
    if t.keeps_time(entry):
        if mtime_differs(t, st, entry):
            iflags |= ITEM_REPORT_TIME
    elif (
        iflags & (ITEM_TRANSFER | ITEM_LOCAL_CHANGE)
        and not iflags & ITEM_MATCHED
        and (not iflags & ITEM_XNAME_FOLLOWS or xname)
    ):
        iflags |= ITEM_REPORT_TIME
    if perms_differ(t, st, entry):
        iflags |= ITEM_REPORT_PERMS
    if ids.owner_differs(t, entry, st):
        iflags |= ITEM_REPORT_OWNER
    if ids.group_differs(t, entry, st):
        iflags |= ITEM_REPORT_GROUP
    return iflags


def wanted_stat(
    t: Transfer,
    entry: FileEntry,
    current: Stat | None,
    *,
    size: int = 0,
    new_content: bool = False,
) -> Stat:
    """The Stat `entry` should end up with, given what is there now (`current`).

    `new_content` is a freshly written file: without --times it gets the current time,
    as rsync's new temp file does.
    """
    mode = entry.mode
    if stat_mod.S_ISLNK(mode):
        mode = stat_mod.S_IFLNK | 0o777  # Linux symlinks have no permissions of their own
    if t.keeps_time(entry):
        mtime_ns = entry_mtime_ns(entry)
    elif current is not None and not new_content:
        mtime_ns = current.mtime_ns
    else:
        mtime_ns = now_ns()
    uid, user = ids.wanted_owner(t, entry, current)
    gid, group = ids.wanted_group(t, entry, current)
    xattrs, acl = t.attrs.wanted(entry, mode, current)
    return Stat(
        mode=mode,
        size=size if stat_mod.S_ISREG(mode) else 0,
        mtime_ns=mtime_ns,
        uid=uid,
        gid=gid,
        user=user,
        group=group,
        rdev=makedev(entry.rdev_major, entry.rdev_minor),
        link_target=entry.link_target if stat_mod.S_ISLNK(mode) else None,
        atime_ns=current.atime_ns if current is not None else None,
        xattrs=xattrs,
        acl=acl,
    )


def time_differs(t: Transfer, entry: FileEntry, st: Stat, *, accurate: bool = False) -> bool:
    """Whether set_file_attrs would set `entry`'s mtime on `st` (not rsync.c same_mtime).

    Times compare to the second (or --modify-window) unless `accurate`
    (ATTRS_ACCURATE_TIME, used after -c found the content equal).
    """
    if not t.keeps_time(entry):
        return False
    if accurate:
        return st.mtime_ns != entry_mtime_ns(entry)
    return mtime_differs(t, st, entry)


def attrs_differ(t: Transfer, entry: FileEntry, st: Stat, *, accurate: bool = False) -> bool:
    """Whether setting `entry`'s attributes would change `st` (set_file_attrs' test)."""
    if time_differs(t, entry, st, accurate=accurate):
        return True
    if not stat_mod.S_ISLNK(entry.mode) and (st.mode & CHMOD_BITS) != (entry.mode & CHMOD_BITS):
        return True
    if ids.owner_differs(t, entry, st) or ids.group_differs(t, entry, st):
        return True
    return t.attrs.differ(entry, st)


def updated_stat(t: Transfer, entry: FileEntry, st: Stat, *, accurate: bool = False) -> Stat:
    """What set_file_attrs makes of `st`: only the attributes that differ change.

    In particular an mtime equal to the second is left alone, ns and all, as rsync
    leaves it.
    """
    wanted = wanted_stat(t, entry, st, size=st.size)
    if not time_differs(t, entry, st, accurate=accurate):
        wanted = replace(wanted, mtime_ns=st.mtime_ns)
    return wanted


async def set_file_attrs(
    t: Transfer,
    path: bytes,
    entry: FileEntry,
    current: Stat | None,
    *,
    report: bool = False,
    accurate: bool = False,
) -> bool:
    """rsync.c set_file_attrs: give the existing entry at `path` `entry`'s attributes.

    `current` is its Stat if the caller has it. Returns whether anything changed (a dry
    run changes nothing, and a fresh entry counts as changed). Failures are reported as
    rsync reports them and leave the entry as it was. With `report` (ATTRS_REPORT) and
    -vv the client is told "NAME is uptodate" or "NAME".
    """
    if current is None:
        if t.dry_run:
            return True
        try:
            current = await t.fs.lstat(path)
        except FsError as exc:
            report_fs_error(t, exc, f"stat {quote(path)} failed")
            return False
        if current is None:
            t.wire.rprintf(
                Log.ERROR_XFER,
                f"rsync: [generator] stat {quote(path)} failed: No such file or directory (2)\n",
            )
            return False
    updated = attrs_differ(t, entry, current, accurate=accurate)
    if updated and not t.dry_run:
        wanted = updated_stat(t, entry, current, accurate=accurate)
        try:
            await t.fs.set_stat(path, wanted)
        except FsError as exc:
            report_fs_error(t, exc, f"failed to set times/permissions on {quote(path)}")
            return False
    if report and t.name_level >= 2:
        name = t.display_name(entry).decode("utf-8", "surrogateescape")
        t.wire.rprintf(Log.INFO, f"{name}\n" if updated else f"{name} is uptodate\n")
    return updated


def makedev(major: int, minor: int) -> int:
    """Glibc makedev: the dev_t for a (major, minor) pair, as os.makedev computes it."""
    return (
        ((major & 0xFFFFF000) << 32)
        | ((major & 0xFFF) << 8)
        | ((minor & 0xFFFFFF00) << 12)
        | (minor & 0xFF)
    )


def quote(path: bytes) -> str:
    """Rsync's full_fname: the path in double quotes (we have no module or cwd prefix)."""
    return '"' + path.decode("utf-8", "surrogateescape") + '"'


def report_fs_error(t: Transfer, exc: FsError, what: str) -> None:
    """rsyserr(FERROR_XFER, errno, ...): "rsync: [generator] what: strerror (errno)"."""
    reason = exc.strerror or str(exc)
    t.wire.rprintf(Log.ERROR_XFER, f"rsync: [generator] {what}: {reason} ({exc.errno})\n")
