"""Tree objects: one immutable object per directory, entries sorted by name bytes.

Format (`trees/<id>`, id = content id of these bytes, see blockid.py)::

    tree    = b"T" version count:uvarint entry*            (names strictly increasing)
    entry   = name:bytes mode:uvarint flags:uvarint field*  (fields in flag-bit order)
    content = size:uvarint height:uvarint count:uvarint records

`flags` says which optional fields follow, so a plain file costs a few bytes plus its
block records. A file's `records` are fixed-width so numpy can parse a long list at
once: at height 0 each is a block record (32-byte id, u32 length; the all-zero id is a
hole); at height h > 0 each is a reference (32-byte id, u64 length) to a list object of
height h-1 (`blocklist.py`), so a 1 TiB file's block list lives out of line and its
tree entry stays small. A directory entry names its own tree in `subtree` (absent for
an empty directory). Hard links share a `link_group` number and carry the same content.
"""

from __future__ import annotations

import stat as stat_mod
from dataclasses import KW_ONLY, dataclass, fields, replace
from typing import Any

import numpy as np

from blockstore.volume.blockid import ID_SIZE
from blockstore.volume.encoding import Decoder, header, put_bytes, put_svarint, put_uvarint

BLOCK_RECORD = np.dtype([("id", f"V{ID_SIZE}"), ("length", "<u4")])
REF_RECORD = np.dtype([("id", f"V{ID_SIZE}"), ("length", "<u8")])


def record_dtype(height: int) -> np.dtype:
    """The record layout of a block-list node of `height`."""
    return BLOCK_RECORD if height == 0 else REF_RECORD


@dataclass(frozen=True, slots=True)
class Content:
    """A regular file's data: its size, whole-file digests and block-list root."""

    size: int
    height: int = 0
    records: bytes = b""
    xxh128: bytes | None = None
    md5: bytes | None = None

    @property
    def count(self) -> int:
        """Number of records in the root node."""
        return len(self.records) // record_dtype(self.height).itemsize


class FileType:
    """The file-type questions an entry with a `mode` (S_IFMT bits included) answers."""

    __slots__ = ()
    mode: int

    @property
    def kind(self) -> int:
        """The S_IFMT part of `mode`."""
        return stat_mod.S_IFMT(self.mode)

    def is_dir(self) -> bool:
        return stat_mod.S_ISDIR(self.mode)

    def is_file(self) -> bool:
        return stat_mod.S_ISREG(self.mode)

    def is_symlink(self) -> bool:
        return stat_mod.S_ISLNK(self.mode)


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryAttrs(FileType):
    """What rsync transfers about an entry besides its name, mode, size and content.

    Shared by the volume's `TreeEntry` and rsyncd_py's `Stat` (the FileSystem
    contract), so the two describe an entry with the same fields and one becomes the
    other through `attrs()`. `xattrs` is sorted by name; `acl` is rsyncd-py's opaque
    `Stat.acl` blob. Subclasses declare `mode` themselves, where their positional
    arguments want it; these fields are keyword-only.
    """

    mtime_ns: int = 0
    uid: int = 0
    gid: int = 0
    user: bytes | None = None
    group: bytes | None = None
    rdev: int = 0
    link_target: bytes | None = None
    atime_ns: int | None = None
    crtime_ns: int | None = None
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    acl: bytes | None = None

    def attrs(self) -> dict[str, Any]:
        """These attributes by field name (keyword arguments for another kind of entry)."""
        return {name: getattr(self, name) for name in ATTR_NAMES}


ATTR_NAMES = tuple(f.name for f in fields(EntryAttrs))


@dataclass(frozen=True, slots=True)
class TreeEntry(EntryAttrs):
    """One directory entry: name, mode, attributes, and a file's content or a tree.

    Constructed as ``TreeEntry(name, mode, **attributes)``.
    """

    name: bytes
    mode: int
    _: KW_ONLY
    link_group: int | None = None
    subtree: bytes | None = None
    content: Content | None = None

    @property
    def size(self) -> int:
        return self.content.size if self.content is not None else 0

    def renamed(self, name: bytes) -> TreeEntry:
        return replace(self, name=name)


# flag bits, in encoding order
_F_MTIME, _F_UID, _F_GID, _F_USER, _F_GROUP, _F_RDEV, _F_TARGET = (1 << i for i in range(7))
_F_ATIME, _F_CRTIME, _F_LINKGROUP, _F_XATTRS, _F_ACL, _F_SUBTREE = (1 << i for i in range(7, 13))
_F_CONTENT, _F_XXH128, _F_MD5 = (1 << i for i in range(13, 16))


def encode_entry(out: bytearray, e: TreeEntry) -> None:
    """Append one entry's encoding (also used for a snapshot's root entry)."""
    content = e.content
    flags = (
        (_F_MTIME if e.mtime_ns else 0)
        | (_F_UID if e.uid else 0)
        | (_F_GID if e.gid else 0)
        | (_F_USER if e.user is not None else 0)
        | (_F_GROUP if e.group is not None else 0)
        | (_F_RDEV if e.rdev else 0)
        | (_F_TARGET if e.link_target is not None else 0)
        | (_F_ATIME if e.atime_ns is not None else 0)
        | (_F_CRTIME if e.crtime_ns is not None else 0)
        | (_F_LINKGROUP if e.link_group is not None else 0)
        | (_F_XATTRS if e.xattrs else 0)
        | (_F_ACL if e.acl is not None else 0)
        | (_F_SUBTREE if e.subtree is not None else 0)
        | (_F_CONTENT if content is not None else 0)
        | (_F_XXH128 if content is not None and content.xxh128 is not None else 0)
        | (_F_MD5 if content is not None and content.md5 is not None else 0)
    )
    put_bytes(out, e.name)
    put_uvarint(out, e.mode)
    put_uvarint(out, flags)
    if flags & _F_MTIME:
        put_svarint(out, e.mtime_ns)
    if flags & _F_UID:
        put_uvarint(out, e.uid)
    if flags & _F_GID:
        put_uvarint(out, e.gid)
    if e.user is not None:
        put_bytes(out, e.user)
    if e.group is not None:
        put_bytes(out, e.group)
    if flags & _F_RDEV:
        put_uvarint(out, e.rdev)
    if e.link_target is not None:
        put_bytes(out, e.link_target)
    if e.atime_ns is not None:
        put_svarint(out, e.atime_ns)
    if e.crtime_ns is not None:
        put_svarint(out, e.crtime_ns)
    if e.link_group is not None:
        put_uvarint(out, e.link_group)
    if e.xattrs:
        put_uvarint(out, len(e.xattrs))
        for name, value in e.xattrs:
            put_bytes(out, name)
            put_bytes(out, value)
    if e.acl is not None:
        put_bytes(out, e.acl)
    if e.subtree is not None:
        out += e.subtree
    if content is not None:
        put_uvarint(out, content.size)
        put_uvarint(out, content.height)
        put_uvarint(out, content.count)
        out += content.records
        if content.xxh128 is not None:
            out += content.xxh128
        if content.md5 is not None:
            out += content.md5


def decode_entry(d: Decoder, *, root: bool = False) -> TreeEntry:
    """Decode one entry; only a snapshot's `root` entry may have an empty name."""
    name = d.bytes()
    mode = d.uvarint()
    flags = d.uvarint()
    mtime = d.svarint() if flags & _F_MTIME else 0
    uid = d.uvarint() if flags & _F_UID else 0
    gid = d.uvarint() if flags & _F_GID else 0
    user = d.bytes() if flags & _F_USER else None
    group = d.bytes() if flags & _F_GROUP else None
    rdev = d.uvarint() if flags & _F_RDEV else 0
    target = d.bytes() if flags & _F_TARGET else None
    atime = d.svarint() if flags & _F_ATIME else None
    crtime = d.svarint() if flags & _F_CRTIME else None
    link_group = d.uvarint() if flags & _F_LINKGROUP else None
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    if flags & _F_XATTRS:
        xattrs = tuple((d.bytes(), d.bytes()) for _ in range(d.uvarint()))
    acl = d.bytes() if flags & _F_ACL else None
    subtree = d.raw(ID_SIZE) if flags & _F_SUBTREE else None
    content = None
    if flags & _F_CONTENT:
        size = d.uvarint()
        height = d.uvarint()
        if height > 8:
            raise d.error(f"block list height {height} out of range")
        records = d.raw(d.uvarint() * record_dtype(height).itemsize)
        xxh = d.raw(16) if flags & _F_XXH128 else None
        md5 = d.raw(16) if flags & _F_MD5 else None
        content = Content(size, height, records, xxh, md5)
    if (not name and not root) or b"/" in name or b"\0" in name:
        raise d.error(f"invalid entry name {name!r}")
    return TreeEntry(
        name, mode, mtime_ns=mtime, uid=uid, gid=gid, user=user, group=group, rdev=rdev,
        link_target=target, atime_ns=atime, crtime_ns=crtime, link_group=link_group,
        xattrs=xattrs, acl=acl, subtree=subtree, content=content,
    )  # fmt: skip


def encode_tree(entries: list[TreeEntry]) -> bytes:
    """Encode a directory; `entries` must be sorted by name with no duplicates."""
    out = header(b"T")
    put_uvarint(out, len(entries))
    for entry in entries:
        encode_entry(out, entry)
    return bytes(out)


def decode_tree(data: bytes, key: str) -> list[TreeEntry]:
    """Decode a tree object (`key` names it in errors); checks the name order."""
    d = Decoder(data, key, b"T")
    count = d.uvarint()
    entries: list[TreeEntry] = []
    previous = b""
    for _ in range(count):
        entry = decode_entry(d)
        if entries and entry.name <= previous:
            raise d.error("entries not sorted by name")
        previous = entry.name
        entries.append(entry)
    if not d.at_end():
        raise d.error("trailing bytes")
    return entries


def encode_list(height: int, records: bytes) -> bytes:
    """Encode a block-list node (records of `record_dtype(height)`)."""
    out = header(b"L")
    put_uvarint(out, height)
    out += records
    return bytes(out)


def decode_list(data: bytes, key: str) -> tuple[int, bytes]:
    """Decode a block-list node into (height, records)."""
    d = Decoder(data, key, b"L")
    height = d.uvarint()
    if height > 8:
        raise d.error(f"block list height {height} out of range")
    records = bytes(d.view(len(d.buf) - d.pos))
    if len(records) % record_dtype(height).itemsize:
        raise d.error("records not a whole number")
    return height, records
