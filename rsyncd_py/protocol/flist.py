"""File-list entries on the wire (flist.c send_file_entry / recv_file_entry).

Theory of operation: the file list is a run of entries, each starting with its XMIT_*
flags, and ends with a zero flags value (plus, depending on the protocol, an io_error).
Most fields of an entry may be elided as "same as the previous entry", so both ends keep
the previous entry's values: `FlistDecoder` and `FlistEncoder` each hold that state for
one direction. The decoder is a Cursor decoder (see ints.py): it reads one whole entry or
nothing, and updates its "previous" state only when the entry is complete, so it can be
fed a byte at a time.

What the fields are and when they are present depends on `FlistOptions` (the negotiated
protocol and the preserve options both sides agreed on); the branches for protocols
27-29 (byte/short flags, int times and ids, 8-bit minors, dev/ino hard links) sit beside
the 30+ ones.

Entries are kept in receive order (the "unsorted" list, which hard-link references use);
`flist_sort.py` sorts them into the order both sides index them by.
"""

from __future__ import annotations

import stat as stat_mod
from dataclasses import dataclass, replace

from rsyncd_py.protocol.constants import (
    MAXPATHLEN,
    XMIT_CRTIME_EQ_MTIME,
    XMIT_EXTENDED_FLAGS,
    XMIT_GROUP_NAME_FOLLOWS,
    XMIT_HLINK_FIRST,
    XMIT_HLINKED,
    XMIT_IO_ERROR_ENDLIST,
    XMIT_LONG_NAME,
    XMIT_MOD_NSEC,
    XMIT_NO_CONTENT_DIR,
    XMIT_SAME_ATIME,
    XMIT_SAME_GID,
    XMIT_SAME_MODE,
    XMIT_SAME_NAME,
    XMIT_SAME_RDEV_MAJOR,
    XMIT_SAME_TIME,
    XMIT_SAME_UID,
    XMIT_TOP_DIR,
    XMIT_USER_NAME_FOLLOWS,
    XMIT_RDEV_MINOR_8_pre30,
    XMIT_SAME_DEV_pre30,
    XMIT_SAME_RDEV_pre28,
)
from rsyncd_py.protocol.errors import ExitCode, RemoteProtocolError
from rsyncd_py.protocol.ints import (
    Cursor,
    pack_byte,
    pack_int,
    pack_longint,
    pack_shortint,
    pack_varint,
    pack_varint30,
    pack_varlong,
    pack_varlong30,
)

# file_struct flags the receiver derives from XMIT_TOP_DIR / XMIT_NO_CONTENT_DIR
FLAG_TOP_DIR = 1 << 0
FLAG_CONTENT_DIR = 1 << 2
FLAG_IMPLIED_DIR = 1 << 6

_VALID_TYPES = frozenset(
    {
        stat_mod.S_IFREG,
        stat_mod.S_IFDIR,
        stat_mod.S_IFLNK,
        stat_mod.S_IFCHR,
        stat_mod.S_IFBLK,
        stat_mod.S_IFIFO,
        stat_mod.S_IFSOCK,
    }
)


def is_device(mode: int) -> bool:
    return stat_mod.S_ISCHR(mode) or stat_mod.S_ISBLK(mode)


def is_special(mode: int) -> bool:
    return stat_mod.S_ISFIFO(mode) or stat_mod.S_ISSOCK(mode)


@dataclass(frozen=True, slots=True)
class FlistOptions:
    """Everything that shapes the file-list encoding of one session."""

    protocol: int
    varint_flags: bool = False  # CF_VARINT_FLIST_FLAGS
    safe_flist: bool = False  # the end marker may carry an io_error
    preserve_uid: bool = False
    preserve_gid: bool = False
    preserve_links: bool = False
    preserve_devices: bool = False
    preserve_specials: bool = False
    preserve_hard_links: bool = False
    preserve_atimes: bool = False
    preserve_crtimes: bool = False
    checksum_len: int = 0  # -c: bytes of file checksum per regular file, else 0
    relative_paths: bool = False
    numeric_ids: bool = False
    id0_names: bool = False  # CF_ID0_NAMES
    inc_recurse: bool = False


@dataclass(slots=True, eq=False)
class FileEntry:
    """One file-list entry (rsync's file_struct, as both sides see it)."""

    name: bytes  # '/'-separated path below the transfer root; b"." for the root
    mode: int
    size: int = 0
    mtime: int = 0
    mtime_nsec: int = 0
    atime: int | None = None
    crtime: int | None = None
    uid: int | None = None
    gid: int | None = None
    user: bytes | None = None  # owner name, from the id lists or sent inline
    group: bytes | None = None
    rdev_major: int = 0
    rdev_minor: int = 0
    link_target: bytes | None = None
    checksum: bytes | None = None  # -c file checksum (regular files)
    hlink_first_ndx: int | None = None  # hard-link group: receive index of its first member
    dev_ino: tuple[int, int] | None = None  # hard-link identity below protocol 30
    flags: int = 0  # FLAG_TOP_DIR | FLAG_CONTENT_DIR | FLAG_IMPLIED_DIR
    active: bool = True  # False once removed as a duplicate (the index stays taken)

    def is_dir(self) -> bool:
        return stat_mod.S_ISDIR(self.mode)

    def is_file(self) -> bool:
        return stat_mod.S_ISREG(self.mode)

    def is_symlink(self) -> bool:
        return stat_mod.S_ISLNK(self.mode)

    @property
    def rdev(self) -> tuple[int, int]:
        return (self.rdev_major, self.rdev_minor)


@dataclass(frozen=True, slots=True)
class ListEnd:
    """The end-of-list marker, with the sender's io_error bits (0 if none were sent)."""

    io_error: int = 0


def clean_fname(name: bytes) -> bytes | None:
    """Clean a received name as util1.c does with CFN_REFUSE_DOT_DOT_DIRS.

    Returns None if the name has a '..' component.
    """
    anchored = name.startswith(b"/")
    parts = name.split(b"/")
    kept: list[bytes] = []
    for i, part in enumerate(parts):
        if part == b"..":
            return None
        if not part or (part == b"." and i != len(parts) - 1):
            continue
        kept.append(part)
    cleaned = (b"/" if anchored else b"") + b"/".join(kept)
    return cleaned if cleaned else b"."


@dataclass(slots=True)
class _Previous:
    """The "same as the previous entry" values (the statics of recv/send_file_entry)."""

    name: bytes = b""
    mode: int = 0
    mtime: int = 0
    atime: int = 0
    crtime: int = 0
    uid: int = 0
    gid: int = 0
    rdev_major: int = 0
    rdev: tuple[int, int] = (0, 0)
    dev: int = 0
    # rsync < 30: flist.c keeps "in_del_hier" state to mark content directories
    in_del_hier: bool = False
    del_hier_name_len: int = 0


class FlistDecoder:
    """Reads file-list entries one at a time (flist.c recv_file_entry)."""

    def __init__(self, options: FlistOptions, *, ndx_start: int = 0) -> None:
        self.options = options
        self.ndx_start = ndx_start
        self.entries: list[FileEntry] = []  # in receive order
        self._prev = _Previous()

    def read(self, cur: Cursor) -> FileEntry | ListEnd:
        """Decode the next entry or the end marker; the entry is appended to `entries`."""
        opts = self.options
        if opts.varint_flags:
            xflags = cur.varint()
            if xflags == 0:
                return ListEnd(cur.varint())
        else:
            xflags = cur.byte()
            if xflags == 0:
                return ListEnd(0)
            if opts.protocol >= 28 and xflags & XMIT_EXTENDED_FLAGS:
                xflags |= cur.byte() << 8
            if xflags == XMIT_EXTENDED_FLAGS | XMIT_IO_ERROR_ENDLIST:
                if not opts.safe_flist:
                    raise RemoteProtocolError(f"Invalid flist flag: {xflags:x}")
                return ListEnd(cur.varint())
        entry, prev = self._decode_entry(cur, xflags)
        entries = self.entries

        def commit() -> None:
            self._prev = prev
            entries.append(entry)

        cur.on_commit(commit)
        return entry

    def _decode_entry(self, cur: Cursor, xflags: int) -> tuple[FileEntry, _Previous]:
        opts = self.options
        protocol = opts.protocol
        prev = replace(self._prev)

        l1 = cur.byte() if xflags & XMIT_SAME_NAME else 0
        l2 = cur.varint30(protocol) if xflags & XMIT_LONG_NAME else cur.byte()
        if l1 > len(prev.name) or l2 >= MAXPATHLEN - l1 or l2 < 0:
            raise RemoteProtocolError(
                f"overflow: xflags=0x{xflags:x} l1={l1} l2={l2}", ExitCode.RERR_PROTOCOL
            )
        raw_name = prev.name[:l1] + cur.take(l2)
        prev.name = raw_name
        name = clean_fname(raw_name) if raw_name else raw_name
        if name is None or (not opts.relative_paths and name.startswith(b"/")):
            raise RemoteProtocolError(
                "ABORTING due to unsafe pathname from sender: "
                + raw_name.decode("utf-8", "backslashreplace"),
                ExitCode.RERR_UNSUPPORTED,
            )

        first: FileEntry | None = None
        hlink_first_ndx: int | None = None
        if protocol >= 30 and xflags & XMIT_HLINKED and not xflags & XMIT_HLINK_FIRST:
            hlink_first_ndx = cur.varint()
            limit = self.ndx_start + len(self.entries)
            if not 0 <= hlink_first_ndx < limit:
                raise RemoteProtocolError(
                    f"hard-link reference out of range: {hlink_first_ndx} ({limit})"
                )
            if hlink_first_ndx >= self.ndx_start:
                first = self.entries[hlink_first_ndx - self.ndx_start]

        if first is not None:
            entry = FileEntry(
                name=name,
                mode=first.mode,
                size=first.size,
                mtime=first.mtime,
                mtime_nsec=first.mtime_nsec,
                atime=first.atime,
                crtime=first.crtime,
                uid=first.uid,
                gid=first.gid,
                user=first.user,
                group=first.group,
                rdev_major=first.rdev_major,
                rdev_minor=first.rdev_minor,
                link_target=first.link_target,
                checksum=first.checksum,
            )
            prev.mode, prev.mtime = first.mode, first.mtime
            if first.atime is not None:
                prev.atime = first.atime
            if first.crtime is not None:
                prev.crtime = first.crtime
            if first.uid is not None:
                prev.uid = first.uid
            if first.gid is not None:
                prev.gid = first.gid
            if is_device(first.mode):
                prev.rdev_major, prev.rdev = first.rdev_major, first.rdev
        else:
            entry = self._decode_fields(cur, xflags, name, prev)

        if (
            opts.preserve_hard_links
            and xflags & XMIT_HLINKED
            and not entry.is_dir()
            and protocol >= 30
        ):
            entry.hlink_first_ndx = (
                self.ndx_start + len(self.entries) if xflags & XMIT_HLINK_FIRST else hlink_first_ndx
            )
        self._set_dir_flags(entry, xflags, l1, l2, prev)
        return entry, prev

    def _decode_fields(self, cur: Cursor, xflags: int, name: bytes, prev: _Previous) -> FileEntry:
        opts = self.options
        protocol = opts.protocol
        size = cur.varlong30(protocol, 3)
        if not xflags & XMIT_SAME_TIME:
            prev.mtime = cur.varlong(4) if protocol >= 30 else cur.uint32()
        nsec = cur.varint() if xflags & XMIT_MOD_NSEC else 0
        if not 0 <= nsec <= 999_999_999:
            raise RemoteProtocolError(f"wire value modtime_nsec out of range: {nsec}")
        crtime = None
        if opts.preserve_crtimes:
            crtime = prev.mtime if xflags & XMIT_CRTIME_EQ_MTIME else cur.varlong(4)
        if not xflags & XMIT_SAME_MODE:
            prev.mode = cur.uint32()
            if stat_mod.S_IFMT(prev.mode) not in _VALID_TYPES:
                raise RemoteProtocolError(
                    f"invalid file mode 0{prev.mode:o} for "
                    + name.decode("utf-8", "backslashreplace")
                )
        mode = prev.mode
        atime = None
        if opts.preserve_atimes and not stat_mod.S_ISDIR(mode):
            if not xflags & XMIT_SAME_ATIME:
                prev.atime = cur.varlong(4)
            atime = prev.atime

        user = group = None
        uid = gid = None
        if opts.preserve_uid:
            if not xflags & XMIT_SAME_UID:
                prev.uid = cur.int32() if protocol < 30 else cur.varint()
                if protocol >= 30 and xflags & XMIT_USER_NAME_FOLLOWS:
                    user = cur.take(cur.byte()) or None
            uid = prev.uid
        if opts.preserve_gid:
            if not xflags & XMIT_SAME_GID:
                prev.gid = cur.int32() if protocol < 30 else cur.varint()
                if protocol >= 30 and xflags & XMIT_GROUP_NAME_FOLLOWS:
                    group = cur.take(cur.byte()) or None
            gid = prev.gid

        rdev = (0, 0)
        if (opts.preserve_devices and is_device(mode)) or (
            opts.preserve_specials and is_special(mode) and protocol < 31
        ):
            if protocol < 28:
                if not xflags & XMIT_SAME_RDEV_pre28:
                    raw = cur.uint32()
                    prev.rdev = ((raw >> 8) & 0xFFF, (raw & 0xFF) | ((raw >> 12) & 0xFFF00))
                rdev = prev.rdev
            else:
                if not xflags & XMIT_SAME_RDEV_MAJOR:
                    prev.rdev_major = cur.varint30(protocol)
                if protocol >= 30:
                    minor = cur.varint()
                elif xflags & XMIT_RDEV_MINOR_8_pre30:
                    minor = cur.byte()
                else:
                    minor = cur.int32()
                rdev = (prev.rdev_major, minor)
            size = 0
        elif is_device(mode):
            size = 0

        link_target = None
        if opts.preserve_links and stat_mod.S_ISLNK(mode):
            length = cur.varint30(protocol)
            if not 0 <= length < MAXPATHLEN:
                raise RemoteProtocolError(f"overflow: linkname_len={length}")
            link_target = cur.take(length)

        dev_ino = None
        if opts.preserve_hard_links and protocol < 30:
            hlinked = xflags & XMIT_HLINKED or (protocol < 28 and stat_mod.S_ISREG(mode))
            if hlinked:
                if protocol < 26:
                    prev.dev = cur.int32()
                    ino = cur.int32()
                else:
                    if not xflags & XMIT_SAME_DEV_pre30:
                        prev.dev = cur.longint()
                    ino = cur.longint()
                dev_ino = (prev.dev, ino)

        checksum = None
        if opts.checksum_len and (stat_mod.S_ISREG(mode) or protocol < 28):
            checksum = cur.take(opts.checksum_len)
            if not stat_mod.S_ISREG(mode):
                checksum = None  # protocol < 28 sends zeros for non-files

        if size < 0:
            raise RemoteProtocolError(
                "Offset underflow: file-length is negative", ExitCode.RERR_UNSUPPORTED
            )
        if name in (b".", b"/.") and not stat_mod.S_ISDIR(mode):
            raise RemoteProtocolError(
                "ERROR: rejecting non-directory transfer-root entry: "
                + name.decode("utf-8", "backslashreplace")
            )
        return FileEntry(
            name=name,
            mode=mode,
            size=size,
            mtime=prev.mtime,
            mtime_nsec=nsec,
            atime=atime,
            crtime=crtime,
            uid=uid,
            gid=gid,
            user=user,
            group=group,
            rdev_major=rdev[0],
            rdev_minor=rdev[1],
            link_target=link_target,
            checksum=checksum,
            dev_ino=dev_ino,
        )

    def _set_dir_flags(
        self, entry: FileEntry, xflags: int, l1: int, l2: int, prev: _Previous
    ) -> None:
        """Which directories are "content" dirs (whose extra files --delete may remove)."""
        if not entry.is_dir():
            return
        if self.options.protocol >= 30:
            if not xflags & XMIT_NO_CONTENT_DIR:
                entry.flags |= FLAG_CONTENT_DIR | (FLAG_TOP_DIR if xflags & XMIT_TOP_DIR else 0)
            elif xflags & XMIT_TOP_DIR:
                entry.flags |= FLAG_IMPLIED_DIR
            return
        # Below 30 a top dir starts a "delete hierarchy" and the dirs below it that the
        # sender recursed into inherit FLAG_CONTENT_DIR (flist.c in_del_hier).
        if xflags & XMIT_TOP_DIR:
            prev.in_del_hier = True
            depth0 = entry.name in (b".", b"/.")
            prev.del_hier_name_len = 0 if depth0 else l1 + l2
            if (
                self.options.relative_paths
                and prev.del_hier_name_len > 2
                and entry.name.endswith(b"/.")
            ):
                prev.del_hier_name_len -= 2
            entry.flags |= FLAG_TOP_DIR | FLAG_CONTENT_DIR
        elif prev.in_del_hier:
            n = prev.del_hier_name_len
            if (
                not self.options.relative_paths
                or not n
                or (l1 >= n and prev.name[n : n + 1] == b"/")
            ):
                entry.flags |= FLAG_CONTENT_DIR
            else:
                prev.in_del_hier = False


class FlistEncoder:
    """Writes file-list entries (flist.c send_file_entry); the sender's half."""

    def __init__(self, options: FlistOptions, *, ndx_start: int = 0) -> None:
        self.options = options
        self.ndx_start = ndx_start
        self._prev = _Previous()
        self._count = 0
        self._hlink_firsts: dict[object, int] = {}

    def encode(self, entry: FileEntry, *, hlink_key: object | None = None) -> bytes:
        """Return the wire bytes of `entry`; `hlink_key` groups hard links (>= 30)."""
        opts = self.options
        protocol = opts.protocol
        prev = self._prev
        mode = entry.mode
        out: list[bytes] = []

        if stat_mod.S_ISDIR(mode):
            if protocol >= 30:
                if entry.flags & FLAG_CONTENT_DIR:
                    xflags = entry.flags & FLAG_TOP_DIR
                elif entry.flags & FLAG_IMPLIED_DIR:
                    xflags = XMIT_TOP_DIR | XMIT_NO_CONTENT_DIR
                else:
                    xflags = XMIT_NO_CONTENT_DIR
            else:
                xflags = entry.flags & FLAG_TOP_DIR
        else:
            xflags = 0
        if mode == prev.mode:
            xflags |= XMIT_SAME_MODE
        else:
            prev.mode = mode
        rdev = entry.rdev
        if opts.preserve_devices and is_device(mode):
            if protocol < 28:
                if rdev == prev.rdev:
                    xflags |= XMIT_SAME_RDEV_pre28
                else:
                    prev.rdev = rdev
            else:
                prev.rdev = rdev
                if rdev[0] == prev.rdev_major:
                    xflags |= XMIT_SAME_RDEV_MAJOR
                else:
                    prev.rdev_major = rdev[0]
                if protocol < 30 and rdev[1] <= 0xFF:
                    xflags |= XMIT_RDEV_MINOR_8_pre30
        elif opts.preserve_specials and is_special(mode) and protocol < 31:
            if protocol < 28:
                xflags |= XMIT_SAME_RDEV_pre28
            else:
                rdev = prev.rdev = (prev.rdev_major, 0)
                xflags |= XMIT_SAME_RDEV_MAJOR
                if protocol < 30:
                    xflags |= XMIT_RDEV_MINOR_8_pre30
        uid, gid = entry.uid or 0, entry.gid or 0
        if not opts.preserve_uid or (uid == prev.uid and prev.name):
            xflags |= XMIT_SAME_UID
        else:
            prev.uid = uid
            if opts.inc_recurse and not opts.numeric_ids and entry.user:
                xflags |= XMIT_USER_NAME_FOLLOWS
        if not opts.preserve_gid or (gid == prev.gid and prev.name):
            xflags |= XMIT_SAME_GID
        else:
            prev.gid = gid
            if opts.inc_recurse and not opts.numeric_ids and entry.group:
                xflags |= XMIT_GROUP_NAME_FOLLOWS
        if entry.mtime == prev.mtime:
            xflags |= XMIT_SAME_TIME
        else:
            prev.mtime = entry.mtime
        if entry.mtime_nsec and protocol >= 31:
            xflags |= XMIT_MOD_NSEC
        if opts.preserve_atimes and not stat_mod.S_ISDIR(mode):
            if entry.atime == prev.atime:
                xflags |= XMIT_SAME_ATIME
            else:
                prev.atime = entry.atime or 0
        if opts.preserve_crtimes and entry.crtime == prev.mtime:
            xflags |= XMIT_CRTIME_EQ_MTIME

        first_ndx = -1
        if opts.preserve_hard_links and hlink_key is not None:
            if protocol >= 30:
                first_ndx = self._hlink_firsts.get(hlink_key, -1)
                if first_ndx < 0:
                    self._hlink_firsts[hlink_key] = self.ndx_start + self._count
                    xflags |= XMIT_HLINK_FIRST
            elif entry.dev_ino is not None:
                if entry.dev_ino[0] == prev.dev:
                    if protocol >= 28:
                        xflags |= XMIT_SAME_DEV_pre30
                else:
                    prev.dev = entry.dev_ino[0]
            xflags |= XMIT_HLINKED

        name = entry.name
        l1 = 0
        limit = min(len(name), len(prev.name), 255)
        while l1 < limit and name[l1] == prev.name[l1]:
            l1 += 1
        suffix = name[l1:]
        if l1:
            xflags |= XMIT_SAME_NAME
        if len(suffix) > 255:
            xflags |= XMIT_LONG_NAME

        if opts.varint_flags:
            out.append(pack_varint(xflags or XMIT_EXTENDED_FLAGS))
        elif protocol >= 28:
            if not xflags and not stat_mod.S_ISDIR(mode):
                xflags |= XMIT_TOP_DIR
            if xflags & 0xFF00 or not xflags:
                xflags |= XMIT_EXTENDED_FLAGS
                out.append(pack_shortint(xflags))
            else:
                out.append(pack_byte(xflags))
        else:
            if not xflags & 0xFF:
                xflags |= XMIT_LONG_NAME if stat_mod.S_ISDIR(mode) else XMIT_TOP_DIR
            out.append(pack_byte(xflags))
        if xflags & XMIT_SAME_NAME:
            out.append(pack_byte(l1))
        if xflags & XMIT_LONG_NAME:
            out.append(pack_varint30(len(suffix), protocol))
        else:
            out.append(pack_byte(len(suffix)))
        out.append(suffix)
        prev.name = name
        self._count += 1

        if first_ndx >= 0:
            out.append(pack_varint(first_ndx))
            if first_ndx >= self.ndx_start:
                return b"".join(out)

        out.append(pack_varlong30(entry.size, protocol, 3))
        if not xflags & XMIT_SAME_TIME:
            out.append(pack_varlong(entry.mtime, 4) if protocol >= 30 else pack_int(entry.mtime))
        if xflags & XMIT_MOD_NSEC:
            out.append(pack_varint(entry.mtime_nsec))
        if opts.preserve_crtimes and not xflags & XMIT_CRTIME_EQ_MTIME:
            out.append(pack_varlong(entry.crtime or 0, 4))
        if not xflags & XMIT_SAME_MODE:
            out.append(pack_int(mode))
        if opts.preserve_atimes and not stat_mod.S_ISDIR(mode) and not xflags & XMIT_SAME_ATIME:
            out.append(pack_varlong(entry.atime or 0, 4))
        for preserve, same_bit, follows_bit, value, label in (
            (opts.preserve_uid, XMIT_SAME_UID, XMIT_USER_NAME_FOLLOWS, uid, entry.user),
            (opts.preserve_gid, XMIT_SAME_GID, XMIT_GROUP_NAME_FOLLOWS, gid, entry.group),
        ):
            if preserve and not xflags & same_bit:
                if protocol < 30:
                    out.append(pack_int(value))
                else:
                    out.append(pack_varint(value))
                    if xflags & follows_bit and label:
                        out.append(pack_byte(len(label[:255])) + label[:255])
        if (opts.preserve_devices and is_device(mode)) or (
            opts.preserve_specials and is_special(mode) and protocol < 31
        ):
            if protocol < 28:
                if not xflags & XMIT_SAME_RDEV_pre28:
                    major, minor = rdev
                    out.append(pack_int((major << 8) | (minor & 0xFF) | ((minor & ~0xFF) << 12)))
            else:
                if not xflags & XMIT_SAME_RDEV_MAJOR:
                    out.append(pack_varint30(rdev[0], protocol))
                if protocol >= 30:
                    out.append(pack_varint(rdev[1]))
                elif xflags & XMIT_RDEV_MINOR_8_pre30:
                    out.append(pack_byte(rdev[1]))
                else:
                    out.append(pack_int(rdev[1]))
        if opts.preserve_links and stat_mod.S_ISLNK(mode):
            target = entry.link_target or b""
            out.append(pack_varint30(len(target), protocol))
            out.append(target)
        if opts.preserve_hard_links and hlink_key is not None and protocol < 30:
            dev, ino = entry.dev_ino or (0, 0)
            if protocol < 26:
                out.append(pack_int(dev) + pack_int(ino))
            else:
                if not xflags & XMIT_SAME_DEV_pre30:
                    out.append(pack_longint(dev))
                out.append(pack_longint(ino))
        if opts.checksum_len and (stat_mod.S_ISREG(mode) or protocol < 28):
            digest = entry.checksum if stat_mod.S_ISREG(mode) and entry.checksum else b""
            out.append(digest[: opts.checksum_len].ljust(opts.checksum_len, b"\0"))
        return b"".join(out)

    def end(self, io_error: int = 0) -> bytes:
        """flist.c write_end_of_flist: the end marker, carrying `io_error` if allowed."""
        opts = self.options
        if opts.varint_flags:
            return pack_varint(0) + pack_varint(io_error)
        if io_error and opts.safe_flist:
            return pack_shortint(XMIT_EXTENDED_FLAGS | XMIT_IO_ERROR_ENDLIST) + pack_varint(
                io_error
            )
        return b"\x00"
