"""The extended attributes the mount shows: the stored ones plus the POSIX ACLs.

A tree entry keeps its xattrs (sorted by name) and, apart from them, its ACLs as one
blob (`TreeEntry.acl`) in rsyncd-py's `Stat.acl` format, which is defined by
rsyncd_py/protocol/acl_blob.py (blockstore may not import it, and that package may not
import blockstore, so the few lines that read it are here; a test checks both agree):

    u32le access_len, access (access_len bytes), default (the rest)

`access` and `default` are the Linux `system.posix_acl_access` and
`system.posix_acl_default` xattr values (u32le version 2, then 8-byte entries: u16le
tag, u16le perm, u32le id), except that in `access` the permissions of the entries
the mode carries (user::, other::, and mask:: if there is one, else group::) are
stored as 0: the mode is their one source of truth. The mount shows the values the
kernel had on the original file, so those permissions are filled in from the entry's
mode here; `getfacl` on the mount then prints what it printed on the source, and the
kernel (the mount enables POSIX ACLs, with `default_permissions`) enforces them.
"""

from __future__ import annotations

import struct

from blockstore.backend import IntegrityError
from blockstore.volume import TreeEntry

ACCESS_XATTR = b"system.posix_acl_access"
DEFAULT_XATTR = b"system.posix_acl_default"
_LENGTH = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")
_USER_OBJ, _GROUP_OBJ, _MASK, _OTHER = 0x01, 0x04, 0x10, 0x20

Xattrs = tuple[tuple[bytes, bytes], ...]


def shown_xattrs(entry: TreeEntry) -> Xattrs:
    """Every (name, value) xattr the mount shows for `entry`, sorted by name.

    Raises IntegrityError if the entry's ACL blob is malformed.
    """
    acls = acl_xattrs(entry.acl, entry.mode)
    if not acls:
        return entry.xattrs
    return tuple(sorted((*entry.xattrs, *acls)))


def acl_xattrs(blob: bytes | None, mode: int) -> Xattrs:
    """The system.posix_acl_* (name, value) pairs a file of `mode` with ACL `blob` had."""
    if not blob:
        return ()
    if len(blob) < _LENGTH.size:
        raise IntegrityError(f"ACL record of {len(blob)} bytes is too short")
    (access_len,) = _LENGTH.unpack_from(blob)
    access = blob[_LENGTH.size : _LENGTH.size + access_len]
    default = blob[_LENGTH.size + access_len :]
    if len(access) != access_len:
        raise IntegrityError("ACL record shorter than its access ACL length")
    shown = []
    if access:
        shown.append((ACCESS_XATTR, _with_mode_permissions(access, mode)))
    if default:
        shown.append((DEFAULT_XATTR, default))
    return tuple(shown)


def _with_mode_permissions(access: bytes, mode: int) -> bytes:
    """`access` with the permissions of the mode-carried entries taken from `mode`."""
    if (len(access) - _LENGTH.size) % _ENTRY.size:
        raise IntegrityError(f"access ACL of {len(access)} bytes is not whole entries")
    entries = list(_ENTRY.iter_unpack(access[_LENGTH.size :]))
    group_bits = (mode >> 3) & 7
    from_mode = {_USER_OBJ: (mode >> 6) & 7, _OTHER: mode & 7}
    if any(tag == _MASK for tag, _perm, _id in entries):
        from_mode[_MASK] = group_bits  # with a mask, the mode's group bits are the mask's
    else:
        from_mode[_GROUP_OBJ] = group_bits
    return access[: _LENGTH.size] + b"".join(
        _ENTRY.pack(tag, from_mode.get(tag, perm), ident) for tag, perm, ident in entries
    )
