"""rsync's ACL wire format (acls.c), with the per-session index caches.

Theory of operation
-------------------
With -A every file-list entry but a symlink carries its access ACL, and a directory
then its default ACL (after the entry's other fields, before its xattrs). Each ACL is
`varint ndx+1`, naming one sent earlier in the session -- access and default ACLs are
two separate lists both sides grow in step -- or `varint 0` and a literal:

    byte   flags: XMIT_USER_OBJ 1, XMIT_GROUP_OBJ 2, XMIT_MASK_OBJ 4, XMIT_OTHER_OBJ 8,
                  XMIT_NAME_LIST 16
    varint perms of each object entry whose flag is set, in that order
    [XMIT_NAME_LIST] varint count, then per named entry ("ida entry"):
                  varint id, varint perms << 2 | XFLAG_NAME_IS_USER 2 | XFLAG_NAME_FOLLOWS 1,
                  [XFLAG_NAME_FOLLOWS] byte length + the user or group name

An access ACL leaves out what the file's mode already carries (rsync_acl_strip_perms):
the user and other entries always, the group entry when there is no mask or it equals
the mode's group bits, and a mask equal to the mode's group bits when named entries
exist. A receiver puts them back from the mode; a mask that is still missing where
named entries need one becomes the mode's group bits (access ACL) or the union of the
entries' permissions (default ACL). A default ACL travels whole; an empty one (no
entries) means "none". Names follow inline only with incremental recursion, and only
the first time an id is sent; otherwise ids are mapped through the uid/gid lists that
follow the file list (which then include every id an ACL names).

State: `AclSender` and `AclReceiver` each keep the two lists of one direction of a
session. Readers are transactional (ints.py): an ACL joins its list only when the
whole entry has been read. What a FileSystem stores (`Stat.acl`) and how it maps to and
from `RsyncAcl` is in acl_blob.py.
"""

from __future__ import annotations

import stat as stat_mod
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from rsyncd_py.protocol.errors import ExitCode, RemoteProtocolError
from rsyncd_py.protocol.ints import Cursor, pack_byte, pack_varint

XMIT_USER_OBJ = 1 << 0
XMIT_GROUP_OBJ = 1 << 1
XMIT_MASK_OBJ = 1 << 2
XMIT_OTHER_OBJ = 1 << 3
XMIT_NAME_LIST = 1 << 4
XFLAG_NAME_FOLLOWS = 0x0001
XFLAG_NAME_IS_USER = 0x0002
VALID_PERM_BITS = 0o7  # SMB_ACL_VALID_NAME_BITS / SMB_ACL_VALID_OBJ_BITS on Linux
MAX_ACL_COUNT = 65536  # rsync 3.5 MAX_WIRE_ACL_COUNT

ACCESS = "ACL_TYPE_ACCESS"
DEFAULT = "ACL_TYPE_DEFAULT"


@dataclass(frozen=True, slots=True)
class IdAccess:
    """A named entry: the permissions of one user or group (rsync's id_access)."""

    id: int
    perms: int
    is_user: bool
    name: bytes | None = field(default=None, compare=False)  # sent inline (inc_recurse)


@dataclass(frozen=True, slots=True)
class RsyncAcl:
    """One ACL as rsync handles it; None marks an entry that is absent (NO_ENTRY)."""

    user_obj: int | None = None
    group_obj: int | None = None
    mask_obj: int | None = None
    other_obj: int | None = None
    names: tuple[IdAccess, ...] = ()

    @classmethod
    def from_mode(cls, mode: int) -> RsyncAcl:
        """rsync_acl_fake_perms: the ACL a file without extended entries has."""
        return cls((mode >> 6) & 7, (mode >> 3) & 7, None, mode & 7)

    def stripped(self, mode: int) -> RsyncAcl:
        """rsync_acl_strip_perms: leave out what `mode` carries (access ACLs)."""
        group_perms = (mode >> 3) & 7
        group_obj = self.group_obj
        mask_obj = self.mask_obj
        if mask_obj is None or group_obj == group_perms:
            group_obj = None
        if self.names and mask_obj == group_perms:
            mask_obj = None
        return RsyncAcl(None, group_obj, mask_obj, None, self.names)

    def equal_enough(self, condensed: RsyncAcl, mode: int) -> bool:
        """rsync_acl_equal_enough: whether the entries `mode` cannot carry agree.

        `self` is a full access ACL, `condensed` one as received; only meaningful for
        access ACLs.
        """
        if (self.mask_obj is None) != (condensed.mask_obj is None):
            return False
        if self.mask_obj is not None:
            expected = (mode >> 3) & 7 if condensed.group_obj is None else condensed.group_obj
            if self.group_obj != expected:
                return False
        return self.names == condensed.names


EMPTY_ACL = RsyncAcl()


def _obj_perms(value: int) -> int:
    """acls.c recv_acl_access for an object entry (Linux: rwx bits only)."""
    if value & ~VALID_PERM_BITS:
        raise RemoteProtocolError(
            f"recv_acl_access: value out of range: {value & 0xFFFFFFFF:x}", ExitCode.RERR_STREAMIO
        )
    return value


class AclSender:
    """acls.c send_acl for the side that sends the file list.

    `add_name(is_user, id)` is uidlist.c add_uid/add_gid: it returns the name to send
    inline the first time an id is seen with incremental recursion, else None. Every id
    an ACL names is also recorded in `user_ids` / `group_ids` (first appearance order)
    for the id lists that follow a non-incremental file list.
    """

    def __init__(self, *, add_name: Callable[[bool, int], bytes | None] | None = None) -> None:
        self.add_name = add_name
        self.access: list[RsyncAcl] = []
        self.default: list[RsyncAcl] = []
        self._index: dict[str, dict[RsyncAcl, int]] = {ACCESS: {}, DEFAULT: {}}
        self.user_ids: dict[int, None] = {}
        self.group_ids: dict[int, None] = {}

    def encode(self, access: RsyncAcl | None, default: RsyncAcl | None, mode: int) -> bytes:
        """acls.c send_acl: an entry's access ACL (full, as read) and a dir's default ACL.

        A missing access ACL is the one the mode implies; a directory's missing default
        ACL is sent as an empty one.
        """
        full = access if access is not None else RsyncAcl.from_mode(mode)
        out = self._send_one(full.stripped(mode), ACCESS, self.access)
        if stat_mod.S_ISDIR(mode):
            out += self._send_one(default or EMPTY_ACL, DEFAULT, self.default)
        return out

    def _send_one(self, racl: RsyncAcl, kind: str, sent: list[RsyncAcl]) -> bytes:
        """acls.c send_rsync_acl: an index, or 0 and the literal ACL."""
        index = self._index[kind]
        ndx = index.get(racl)
        if ndx is not None:
            return pack_varint(ndx + 1)
        index[racl] = len(sent)
        sent.append(racl)
        flags = (
            (XMIT_USER_OBJ if racl.user_obj is not None else 0)
            | (XMIT_GROUP_OBJ if racl.group_obj is not None else 0)
            | (XMIT_MASK_OBJ if racl.mask_obj is not None else 0)
            | (XMIT_OTHER_OBJ if racl.other_obj is not None else 0)
            | (XMIT_NAME_LIST if racl.names else 0)
        )
        out = [pack_varint(0), pack_byte(flags)]
        for value in (racl.user_obj, racl.group_obj, racl.mask_obj, racl.other_obj):
            if value is not None:
                out.append(pack_varint(value))
        if racl.names:
            out.append(pack_varint(len(racl.names)))
            for ida in racl.names:
                out.append(self._ida_entry(ida))
        return b"".join(out)

    def _ida_entry(self, ida: IdAccess) -> bytes:
        """acls.c send_ida_entries, one entry."""
        (self.user_ids if ida.is_user else self.group_ids).setdefault(ida.id, None)
        xbits = ida.perms << 2 | (XFLAG_NAME_IS_USER if ida.is_user else 0)
        name = self.add_name(ida.is_user, ida.id) if self.add_name is not None else None
        if name:
            name = name[:255]
            return (
                pack_varint(ida.id)
                + pack_varint(xbits | XFLAG_NAME_FOLLOWS)
                + pack_byte(len(name))
                + name
            )
        return pack_varint(ida.id) + pack_varint(xbits)


class AclReceiver:
    """acls.c receive_acl for the side that receives the file list."""

    def __init__(self) -> None:
        self.access: list[RsyncAcl] = []
        self.default: list[RsyncAcl] = []

    def read(self, cur: Cursor, mode: int) -> tuple[int, int | None]:
        """acls.c receive_acl: (access index, default index or None) for an entry of `mode`.

        Call it for every entry but a symlink; directories carry a default ACL too.
        """
        pending: list[tuple[list[RsyncAcl], RsyncAcl]] = []
        access = self._recv_one(cur, ACCESS, self.access, mode, pending)
        default = None
        if stat_mod.S_ISDIR(mode):
            default = self._recv_one(cur, DEFAULT, self.default, 0, pending)

        def commit() -> None:
            for target, racl in pending:
                target.append(racl)

        cur.on_commit(commit)
        return access, default

    @staticmethod
    def _recv_one(
        cur: Cursor,
        kind: str,
        received: list[RsyncAcl],
        mode: int,
        pending: list[tuple[list[RsyncAcl], RsyncAcl]],
    ) -> int:
        """acls.c recv_rsync_acl."""
        ndx = cur.varint()
        if ndx < 0 or ndx > len(received):
            raise RemoteProtocolError(
                f"recv_acl_index: {kind} ACL index {ndx} > {len(received)}",
                ExitCode.RERR_STREAMIO,
            )
        if ndx:
            return ndx - 1
        flags = cur.byte()
        objs = [
            _obj_perms(cur.varint()) if flags & bit else None
            for bit in (XMIT_USER_OBJ, XMIT_GROUP_OBJ, XMIT_MASK_OBJ, XMIT_OTHER_OBJ)
        ]
        names: tuple[IdAccess, ...] = ()
        if flags & XMIT_NAME_LIST:
            names = _recv_ida_entries(cur)
        racl = RsyncAcl(*objs, names)
        if names and racl.mask_obj is None:
            if kind == ACCESS:
                mask = (mode >> 3) & 7
            else:
                mask = racl.group_obj or 0
                for ida in names:
                    mask |= ida.perms
            racl = replace(racl, mask_obj=mask)
        pending.append((received, racl))
        return len(received)  # an entry adds at most one ACL to each list

    def map_ids(
        self, map_id: Callable[[bool, int, bytes | None], int], *, start: tuple[int, int] = (0, 0)
    ) -> None:
        """acls.c match_acl_ids: give every named entry its local id.

        `map_id(is_user, id, inline_name)` returns the local id (uidlist.c match_uid /
        match_gid, or recv_user_name for a name sent inline). `start` skips the access
        and default ACLs mapped before (an incremental list maps only its new ones).
        """
        for acls, first in ((self.access, start[0]), (self.default, start[1])):
            for i in range(first, len(acls)):
                racl = acls[i]
                if racl.names:
                    names = tuple(
                        replace(ida, id=map_id(ida.is_user, ida.id, ida.name)) for ida in racl.names
                    )
                    acls[i] = replace(racl, names=names)


def _recv_ida_entries(cur: Cursor) -> tuple[IdAccess, ...]:
    """acls.c recv_ida_entries."""
    count = cur.varint()
    if not 0 <= count <= MAX_ACL_COUNT:
        raise RemoteProtocolError(
            f"wire value ACL count out of range: {count} not in [0,{MAX_ACL_COUNT}] [receiver]"
        )
    entries = []
    for _ in range(count):
        ident = cur.varint() & 0xFFFFFFFF
        xbits = cur.varint()
        perms = (xbits & 0xFFFFFFFF) >> 2
        if perms & ~VALID_PERM_BITS:
            raise RemoteProtocolError(
                f"recv_acl_access: value out of range: {perms:x}", ExitCode.RERR_STREAMIO
            )
        name = cur.take(cur.byte()) if xbits & XFLAG_NAME_FOLLOWS else None
        entries.append(IdAccess(ident, perms, bool(xbits & XFLAG_NAME_IS_USER), name))
    return tuple(entries)
