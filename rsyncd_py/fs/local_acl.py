"""POSIX ACLs of local files, through the kernel's system.posix_acl_* xattrs (no libacl).

The kernel's xattr values are the very format `Stat.acl` is built from
(protocol/acl_blob.py), so reading is two getxattr calls (one for a non-directory) and
writing is a setxattr or removexattr for each of the two that differs. Setting an access
ACL also sets the permission bits of the mode, from the entries the mode carries;
`write_acl` fills those from the mode it is given, so the file keeps that mode.

`target` is an fd (the xattr calls follow it) or a /proc path reaching the entry (they
do not follow a final symlink). Symlinks have no ACLs. Errors are OSErrors for the
caller's `os_errors`; a file system without ACL support reads as "no ACL".
"""

from __future__ import annotations

import errno
import os

from rsyncd_py.protocol.acl_blob import ACCESS_XATTR, DEFAULT_XATTR, acl_xattrs, pack_acl_blob

_ABSENT = (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP)


def _get(target: bytes | int, name: bytes) -> bytes | None:
    try:
        return os.getxattr(target, name, follow_symlinks=isinstance(target, int))
    except OSError as exc:
        if exc.errno in _ABSENT:
            return None
        raise


def read_acl(target: bytes | int, *, is_dir: bool) -> bytes | None:
    """The `Stat.acl` of the file at `target` (None: the mode says it all)."""
    access = _get(target, ACCESS_XATTR)
    default = _get(target, DEFAULT_XATTR) if is_dir else None
    try:
        return pack_acl_blob(access, default)
    except ValueError as exc:
        raise OSError(errno.EIO, f"unreadable POSIX ACL: {exc}") from None


def write_acl(target: bytes | int, blob: bytes | None, mode: int, *, is_dir: bool) -> None:
    """Give the file at `target` (of `mode`) the ACLs in `blob`, changing only what differs."""
    follow = isinstance(target, int)
    try:
        access, default = acl_xattrs(blob, mode)
    except ValueError as exc:
        raise OSError(errno.EINVAL, f"invalid POSIX ACL: {exc}") from None
    wanted = [(ACCESS_XATTR, access)] + ([(DEFAULT_XATTR, default)] if is_dir else [])
    for name, value in wanted:
        current = _get(target, name)
        if current == value:
            continue
        if value is not None:
            os.setxattr(target, name, value, follow_symlinks=follow)
        elif current is not None:
            try:
                os.removexattr(target, name, follow_symlinks=follow)
            except OSError as exc:
                if exc.errno != errno.ENODATA:
                    raise
