"""File-list entries as both sides see them (rsync's struct file_struct).

The value types the file-list codec reads and writes: `FileEntry` (one entry),
`FlistOptions` (what shapes the encoding), `ListEnd` (the end marker), and `Previous`,
the "same as the previous entry" state each direction of the codec keeps.
"""

from __future__ import annotations

import stat as stat_mod
from dataclasses import dataclass

# file_struct flags the receiver derives from XMIT_TOP_DIR / XMIT_NO_CONTENT_DIR
FLAG_TOP_DIR = 1 << 0
FLAG_CONTENT_DIR = 1 << 2
FLAG_IMPLIED_DIR = 1 << 6

VALID_TYPES = frozenset(
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
    preserve_acls: bool = False  # -A: ACLs follow each entry (acls.py)
    preserve_xattrs: int = 0  # -X (2 for -XX): xattrs follow each entry (xattrs.py)
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
    acl_ndx: int | None = None  # -A: index of the access ACL in the session's list
    def_acl_ndx: int | None = None  # -A, directories: index of the default ACL
    xattr_ndx: int | None = None  # -X: index of the xattr set in the session's list
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
class Previous:
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
