"""The file-list codec's writing side (flist.c send_file_entry, write_end_of_flist).

`FlistEncoder` mirrors `FlistDecoder` (flist.py): it keeps the "previous entry" state of
the direction it writes and elides every field rsync elides, with the same branches for
protocols 27-29. The sender role (a pull) uses it; tests use it for round trips.
"""

from __future__ import annotations

import stat as stat_mod
from collections.abc import Sequence

from rsyncd_py.protocol.acl_blob import rsync_acls
from rsyncd_py.protocol.acls import AclSender
from rsyncd_py.protocol.constants import (
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
from rsyncd_py.protocol.flist_entry import (
    FLAG_CONTENT_DIR,
    FLAG_IMPLIED_DIR,
    FLAG_TOP_DIR,
    FileEntry,
    FlistOptions,
    Previous,
    is_device,
    is_special,
)
from rsyncd_py.protocol.ints import (
    pack_byte,
    pack_int,
    pack_longint,
    pack_shortint,
    pack_varint,
    pack_varint30,
    pack_varlong,
    pack_varlong30,
)
from rsyncd_py.protocol.xattrs import XattrSender, sender_keeps


class FlistEncoder:
    """Writes file-list entries (flist.c send_file_entry); the sender's half."""

    def __init__(
        self,
        options: FlistOptions,
        *,
        ndx_start: int = 0,
        acls: AclSender | None = None,
        xattrs: XattrSender | None = None,
    ) -> None:
        self.options = options
        self.ndx_start = ndx_start
        self._prev = Previous()
        self._count = 0
        self._hlink_firsts: dict[object, int] = {}
        self._seen_ids: set[tuple[bool, int]] = set()  # uidlist.c's uidlist and gidlist
        # the session's ACL and xattr lists (-A, -X), shared with later incremental lists
        self.acls = (acls or AclSender()) if options.preserve_acls else None
        self.xattrs = (xattrs or XattrSender()) if options.preserve_xattrs else None

    def start_list(self, ndx_start: int) -> None:
        """Begin the next list of an incremental session at index `ndx_start`.

        The "same as the previous entry" state, the hard-link firsts and the names
        already sent carry on: rsync's send_file_entry keeps them across lists.
        """
        self.ndx_start = ndx_start
        self._count = 0

    def first_sight(self, is_user: bool, ident: int) -> bool:
        """uidlist.c add_uid/add_gid: True the first time the session names this id.

        With incremental recursion a name travels inline only then; the ACL encoder's
        `add_name` should ask here too, as rsync's ACL code shares the same lists.
        """
        key = (is_user, ident)
        if key in self._seen_ids:
            return False
        self._seen_ids.add(key)
        return True

    def encode(
        self,
        entry: FileEntry,
        *,
        hlink_key: object | None = None,
        acl: bytes | None = None,
        xattrs: Sequence[tuple[bytes, bytes]] = (),
    ) -> bytes:
        """Return the wire bytes of `entry`; `hlink_key` groups hard links (>= 30).

        `acl` and `xattrs` are the entry's `Stat.acl` and `Stat.xattrs`, sent with -A/-X
        (the xattr set's index is left in `entry.xattr_ndx` for the requests to come).
        """
        return self._encode_fields(entry, hlink_key) + self._encode_acl_xattrs(entry, acl, xattrs)

    def _encode_acl_xattrs(
        self, entry: FileEntry, acl: bytes | None, xattrs: Sequence[tuple[bytes, bytes]]
    ) -> bytes:
        """flist.c send_file_name after send_file_entry: send_acl, then send_xattr.

        get_acl/get_xattr read nothing for a symlink, device or special file whose kind
        is not preserved (and no ACL at all for a symlink).
        """
        opts = self.options
        mode = entry.mode
        kept = _attrs_kept(opts, mode)
        out = b""
        if self.acls is not None and not stat_mod.S_ISLNK(mode):
            access, default = rsync_acls(acl if kept else None, mode)
            out += self.acls.encode(access, default, mode)
        if self.xattrs is not None:
            level = opts.preserve_xattrs
            pairs = [p for p in xattrs if sender_keeps(p[0], level=level)] if kept else []
            data, entry.xattr_ndx = self.xattrs.encode(pairs)
            out += data
        return out

    def _encode_fields(self, entry: FileEntry, hlink_key: object | None) -> bytes:
        """flist.c send_file_entry."""
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
            named = not opts.numeric_ids and self.first_sight(True, uid)
            if opts.inc_recurse and named and entry.user:
                xflags |= XMIT_USER_NAME_FOLLOWS
        if not opts.preserve_gid or (gid == prev.gid and prev.name):
            xflags |= XMIT_SAME_GID
        else:
            prev.gid = gid
            named = not opts.numeric_ids and self.first_sight(False, gid)
            if opts.inc_recurse and named and entry.group:
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


def _attrs_kept(opts: FlistOptions, mode: int) -> bool:
    """Whether get_acl/get_xattr read the attributes of an entry of this kind."""
    if stat_mod.S_ISLNK(mode):
        return opts.preserve_links
    if is_special(mode):
        return opts.preserve_specials
    if is_device(mode):
        return opts.preserve_devices
    return True
