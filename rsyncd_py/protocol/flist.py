"""The file-list codec (flist.c recv_file_entry / send_file_entry): the reading side.

Theory of operation: the file list is a run of entries, each starting with its XMIT_*
flags, and ends with a zero flags value (plus, depending on the protocol, an io_error).
Most fields of an entry may be elided as "same as the previous entry", so both ends keep
the previous entry's values: `FlistDecoder` here and `FlistEncoder` (flist_send.py) each
hold that state for one direction. The decoder is a Cursor decoder (see ints.py): it
reads one whole entry or nothing, and updates its "previous" state only when the entry
is complete, so it can be fed a byte at a time.

What the fields are and when they are present depends on `FlistOptions` (the negotiated
protocol and the preserve options both sides agreed on); the branches for protocols
27-29 (byte/short flags, int times and ids, 8-bit minors, dev/ino hard links) sit beside
the 30+ ones.

Entries are kept in receive order (the "unsorted" list, which hard-link references use);
`flist_sort.py` sorts them into the order both sides index them by. This module also
re-exports the entry types (flist_entry.py) and the encoder, so `flist` is the one
import for the whole codec.
"""

from __future__ import annotations

import stat as stat_mod
from dataclasses import replace

from rsyncd_py.protocol.acls import AclReceiver
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
from rsyncd_py.protocol.flist_entry import (
    FLAG_CONTENT_DIR,
    FLAG_IMPLIED_DIR,
    FLAG_TOP_DIR,
    VALID_TYPES,
    FileEntry,
    FlistOptions,
    ListEnd,
    Previous,
    clean_fname,
    is_device,
    is_special,
)
from rsyncd_py.protocol.flist_send import FlistEncoder
from rsyncd_py.protocol.ints import Cursor
from rsyncd_py.protocol.xattrs import XattrReceiver

__all__ = [
    "FLAG_CONTENT_DIR",
    "FLAG_IMPLIED_DIR",
    "FLAG_TOP_DIR",
    "FileEntry",
    "FlistDecoder",
    "FlistEncoder",
    "FlistOptions",
    "ListEnd",
    "clean_fname",
    "is_device",
    "is_special",
]


class FlistDecoder:
    """Reads file-list entries one at a time (flist.c recv_file_entry)."""

    def __init__(
        self,
        options: FlistOptions,
        *,
        ndx_start: int = 0,
        acls: AclReceiver | None = None,
        xattrs: XattrReceiver | None = None,
    ) -> None:
        self.options = options
        self.ndx_start = ndx_start
        self.entries: list[FileEntry] = []  # in receive order
        self._prev = Previous()
        # the session's ACL and xattr lists (-A, -X), shared with later incremental lists
        self.acls = (acls or AclReceiver()) if options.preserve_acls else None
        self.xattrs = None
        if options.preserve_xattrs:
            self.xattrs = xattrs or XattrReceiver(level=options.preserve_xattrs)

    def start_list(self, ndx_start: int) -> None:
        """Begin the next list of an incremental session (its entries start empty).

        The "same as the previous entry" state carries on: rsync's recv_file_entry
        keeps it in statics across every list of the session.
        """
        self.ndx_start = ndx_start
        self.entries = []

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
        self._decode_acl_xattrs(cur, entry)
        entries = self.entries

        def commit() -> None:
            self._prev = prev
            entries.append(entry)

        cur.on_commit(commit)
        return entry

    def _decode_entry(self, cur: Cursor, xflags: int) -> tuple[FileEntry, Previous]:
        opts = self.options
        protocol = opts.protocol
        prev = replace(self._prev)

        l1 = cur.byte() if xflags & XMIT_SAME_NAME else 0
        l2 = cur.varint30(protocol) if xflags & XMIT_LONG_NAME else cur.byte()
        if l2 >= MAXPATHLEN - l1 or l2 < 0:
            raise RemoteProtocolError(
                f"overflow: xflags=0x{xflags:x} l1={l1} l2={l2}", ExitCode.RERR_PROTOCOL
            )
        suffix = cur.take(l2)  # rsync reads the name before it looks at it: a stream cut
        if l1 > len(prev.name):  # short of it ends as an EOF, whatever l1 says
            raise RemoteProtocolError(
                f"overflow: xflags=0x{xflags:x} l1={l1} l2={l2}", ExitCode.RERR_PROTOCOL
            )
        raw_name = prev.name[:l1] + suffix
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

    def _decode_fields(self, cur: Cursor, xflags: int, name: bytes, prev: Previous) -> FileEntry:
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
            if stat_mod.S_IFMT(prev.mode) not in VALID_TYPES:
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

    def _decode_acl_xattrs(self, cur: Cursor, entry: FileEntry) -> None:
        """recv_file_entry's tail: the ACLs (not for a symlink), then the xattrs.

        Hard links that copied their other fields from an earlier entry carry them too.
        """
        if self.acls is not None and not entry.is_symlink():
            entry.acl_ndx, entry.def_acl_ndx = self.acls.read(cur, entry.mode)
        if self.xattrs is not None:
            entry.xattr_ndx = self.xattrs.read(cur, entry.name)

    def _set_dir_flags(
        self, entry: FileEntry, xflags: int, l1: int, l2: int, prev: Previous
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
