"""`Stat.acl`: a file's POSIX ACLs as bytes a FileSystem keeps, and their rsync view.

The format (None stands for "no ACL beyond the mode and no default ACL"):

    u32le access_len, access (access_len bytes), default (the rest)

- `access` is the Linux `system.posix_acl_access` xattr value: u32le version 2, then
  8-byte entries (u16le tag, u16le perm, u32le id; ids of the object entries are
  0xFFFFFFFF) in the kernel's order (by tag, then id). The permissions of the entries
  the mode carries -- ACL_USER_OBJ, ACL_OTHER, and ACL_MASK if there is one, else
  ACL_GROUP_OBJ -- are stored as 0: the mode is their one source of truth, so a chmod
  never leaves a stale copy and equal ACLs are equal bytes. Empty when the ACL has
  nothing the mode does not say (only the three object entries).
- `default` is the `system.posix_acl_default` value as the kernel stores it; empty when
  the directory has no default ACL.

So `LocalFileSystem` reads and writes ACLs as those two xattrs (no libacl) with
`pack_acl_blob` / `acl_xattrs`, the store keeps the bytes opaquely, and the roles turn
them into rsync's `RsyncAcl`s (acls.c get_acl: `rsync_acls`) and back (set_acl:
`acl_blob_from_rsync`). Ids are local ids (rsync maps a sender's ids by name).
"""

from __future__ import annotations

import stat as stat_mod
import struct

from rsyncd_py.protocol.acls import EMPTY_ACL, IdAccess, RsyncAcl

ACL_USER_OBJ = 0x01
ACL_USER = 0x02
ACL_GROUP_OBJ = 0x04
ACL_GROUP = 0x08
ACL_MASK = 0x10
ACL_OTHER = 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF
POSIX_ACL_XATTR_VERSION = 2
ACCESS_XATTR = b"system.posix_acl_access"
DEFAULT_XATTR = b"system.posix_acl_default"

_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")
_OBJECT_TAGS = (ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER)

Entry = tuple[int, int, int]  # (tag, perm, id)


def parse_posix_acl(value: bytes) -> list[Entry]:
    """The entries of a posix_acl xattr value; ValueError if it is not one."""
    if len(value) < _HEADER.size or (len(value) - _HEADER.size) % _ENTRY.size:
        raise ValueError(f"not a POSIX ACL xattr value ({len(value)} bytes)")
    (version,) = _HEADER.unpack_from(value)
    if version != POSIX_ACL_XATTR_VERSION:
        raise ValueError(f"POSIX ACL xattr version {version}, not {POSIX_ACL_XATTR_VERSION}")
    entries = [entry for entry in _ENTRY.iter_unpack(value[_HEADER.size :])]
    for tag, perm, _ in entries:
        if tag not in (*_OBJECT_TAGS, ACL_USER, ACL_GROUP) or perm & ~0o7:
            raise ValueError(f"bad POSIX ACL entry: tag 0x{tag:x} perm 0{perm:o}")
    return entries


def pack_posix_acl(entries: list[Entry]) -> bytes:
    """A posix_acl xattr value with `entries` in the kernel's order."""
    ordered = sorted(entries, key=lambda e: (e[0], e[2]))
    return _HEADER.pack(POSIX_ACL_XATTR_VERSION) + b"".join(_ENTRY.pack(*e) for e in ordered)


def _carried_by_mode(entries: list[Entry]) -> set[int]:
    has_mask = any(tag == ACL_MASK for tag, _, _ in entries)
    return {ACL_USER_OBJ, ACL_OTHER, ACL_MASK if has_mask else ACL_GROUP_OBJ}


def _is_minimal(entries: list[Entry]) -> bool:
    return all(tag in (ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_OTHER) for tag, _, _ in entries)


def pack_acl_blob(access_xattr: bytes | None, default_xattr: bytes | None) -> bytes | None:
    """`Stat.acl` from the two xattr values a file has (None where it has none).

    Raises ValueError for a value that is not a POSIX ACL.
    """
    access = b""
    if access_xattr:
        entries = parse_posix_acl(access_xattr)
        if not _is_minimal(entries):
            carried = _carried_by_mode(entries)
            access = pack_posix_acl([(t, 0 if t in carried else p, i) for t, p, i in entries])
    default = pack_posix_acl(parse_posix_acl(default_xattr)) if default_xattr else b""
    if len(default) == _HEADER.size:
        default = b""  # no entries: no default ACL
    if not access and not default:
        return None
    return _HEADER.pack(len(access)) + access + default


def _split(blob: bytes | None) -> tuple[bytes, bytes]:
    if not blob:
        return b"", b""
    (access_len,) = _HEADER.unpack_from(blob)
    start = _HEADER.size
    return blob[start : start + access_len], blob[start + access_len :]


def acl_xattrs(blob: bytes | None, mode: int) -> tuple[bytes | None, bytes | None]:
    """The (access, default) xattr values that give a file of `mode` the ACLs in `blob`.

    None means "remove that xattr" (for the access ACL: the mode alone says it all).
    """
    access, default = _split(blob)
    access_value = None
    if access:
        entries = parse_posix_acl(access)
        carried = _carried_by_mode(entries)
        from_mode = {
            ACL_USER_OBJ: (mode >> 6) & 7,
            ACL_GROUP_OBJ: (mode >> 3) & 7,
            ACL_MASK: (mode >> 3) & 7,
            ACL_OTHER: mode & 7,
        }
        access_value = pack_posix_acl(
            [(t, from_mode[t] if t in carried else p, i) for t, p, i in entries]
        )
    return access_value, default or None


def rsync_acls(blob: bytes | None, mode: int) -> tuple[RsyncAcl, RsyncAcl | None]:
    """acls.c get_acl: the full access ACL and (for a directory) the default ACL.

    A directory without a default ACL gets the empty one; other entries get None.
    """
    access, default = _split(blob)
    if access:
        full = _to_rsync(parse_posix_acl(access))
        has_mask = full.mask_obj is not None
        full = RsyncAcl(
            (mode >> 6) & 7,
            full.group_obj if has_mask else (mode >> 3) & 7,
            (mode >> 3) & 7 if has_mask else None,
            mode & 7,
            full.names,
        )
    else:
        full = RsyncAcl.from_mode(mode)
    if not stat_mod.S_ISDIR(mode):
        return full, None
    return full, _to_rsync(parse_posix_acl(default)) if default else EMPTY_ACL


def _to_rsync(entries: list[Entry]) -> RsyncAcl:
    """acls.c unpack_smb_acl."""
    objs: dict[int, int] = {}
    names = []
    for tag, perm, ident in entries:
        if tag in (ACL_USER, ACL_GROUP):
            names.append(IdAccess(ident, perm, tag == ACL_USER))
        else:
            objs.setdefault(tag, perm)
    return RsyncAcl(
        objs.get(ACL_USER_OBJ),
        objs.get(ACL_GROUP_OBJ),
        objs.get(ACL_MASK),
        objs.get(ACL_OTHER),
        tuple(names),
    )


def acl_blob_from_rsync(
    access: RsyncAcl | None, default: RsyncAcl | None, mode: int
) -> bytes | None:
    """acls.c set_acl: `Stat.acl` for a file of `mode` given the ACLs as received.

    The access ACL's object entries come from the mode where rsync's change_sacl_perms
    takes them from it; an empty default ACL (no user entry) deletes the default ACL.
    """
    access_value = b""
    if access is not None and (access.names or access.mask_obj is not None):
        entries: list[Entry] = [(ACL_USER_OBJ, 0, ACL_UNDEFINED_ID)]
        entries += _named(access)
        if access.mask_obj is not None or access.names:  # named entries need a mask
            group = access.group_obj if access.group_obj is not None else (mode >> 3) & 7
            entries += [(ACL_GROUP_OBJ, group, ACL_UNDEFINED_ID), (ACL_MASK, 0, ACL_UNDEFINED_ID)]
        else:
            entries.append((ACL_GROUP_OBJ, 0, ACL_UNDEFINED_ID))
        entries.append((ACL_OTHER, 0, ACL_UNDEFINED_ID))
        access_value = pack_posix_acl(entries)
    default_value = b""
    if default is not None and default.user_obj is not None and stat_mod.S_ISDIR(mode):
        entries = [(ACL_USER_OBJ, default.user_obj, ACL_UNDEFINED_ID)]
        entries += _named(default)
        entries.append((ACL_GROUP_OBJ, default.group_obj or 0, ACL_UNDEFINED_ID))
        if default.mask_obj is not None:
            entries.append((ACL_MASK, default.mask_obj, ACL_UNDEFINED_ID))
        entries.append((ACL_OTHER, default.other_obj or 0, ACL_UNDEFINED_ID))
        default_value = pack_posix_acl(entries)
    if not access_value and not default_value:
        return None
    return _HEADER.pack(len(access_value)) + access_value + default_value


def _named(racl: RsyncAcl) -> list[Entry]:
    return [
        (ACL_USER if ida.is_user else ACL_GROUP, ida.perms, ida.id & 0xFFFFFFFF)
        for ida in racl.names
    ]


def acls_differ(
    blob: bytes | None,
    current_mode: int,
    access: RsyncAcl | None,
    default: RsyncAcl | None,
    new_mode: int,
) -> bool:
    """acls.c set_acl(NULL, ...): whether the received ACLs differ from the file's.

    `blob`/`current_mode` describe the file as it is; `access`/`default` are the ACLs
    received for it, `new_mode` the mode it is to get.
    """
    local_access, local_default = rsync_acls(blob, current_mode)
    if access is not None and not local_access.equal_enough(access, new_mode):
        return True
    if not stat_mod.S_ISDIR(new_mode) or default is None:
        return False
    return (local_default or EMPTY_ACL) != default
