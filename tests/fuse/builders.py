"""Put trees into a store through the volume API, the way a push would leave them.

`import_tree(tx, volume, src)` copies a local directory into a transaction with all
that rsync -aHX carries: types, modes, owners, ns mtimes (the root's too), symlink
targets, device numbers, hard links (one link group), user xattrs and POSIX ACLs, and
sparse files as holes (SEEK_DATA/SEEK_HOLE). `put_bytes` writes one file from pieces of data
and holes. Both leave committing to the caller.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from blockstore.volume import Transaction, TreeEntry, Volume
from rsyncd_py.fs.local_acl import read_acl

CHUNK = 1 << 20
Piece = bytes | int  # data, or the length of a hole


def entry_of(path: bytes, name: bytes, *, xattrs: bool = True) -> TreeEntry:
    """The tree entry (without content) that describes `path`."""
    st = os.lstat(path)
    pairs: tuple[tuple[bytes, bytes], ...] = ()
    if xattrs and not stat.S_ISLNK(st.st_mode):
        pairs = tuple(sorted(
            (os.fsencode(key), os.getxattr(path, key, follow_symlinks=False))
            for key in os.listxattr(path, follow_symlinks=False) if key.startswith("user.")
        ))  # fmt: skip
    device = stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
    link = stat.S_ISLNK(st.st_mode)
    return TreeEntry(
        name, st.st_mode, mtime_ns=st.st_mtime_ns, uid=st.st_uid, gid=st.st_gid,
        rdev=st.st_rdev if device else 0,
        link_target=os.readlink(path) if link else None,
        xattrs=pairs,
        acl=None if link else read_acl(path, is_dir=stat.S_ISDIR(st.st_mode)),
    )  # fmt: skip


def put_bytes(tx: Transaction, volume: Volume, path: bytes, entry: TreeEntry,
              pieces: Iterable[Piece]) -> None:
    """Store a file made of `pieces` (bytes are data, ints are holes) at `path`."""
    builder = volume.new_file()
    for piece in pieces:
        if isinstance(piece, int):
            builder.write_zeros(piece)
        else:
            builder.write(piece)
    tx.put_file(path, entry, builder.finish())


def sparse_pieces(path: bytes) -> Iterable[Piece]:
    """The data and holes of a local file, read with SEEK_DATA/SEEK_HOLE."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        position = 0
        while position < size:
            try:
                data = os.lseek(fd, position, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                data = size
            if data > position:
                yield data - position
            if data >= size:
                return
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            for start in range(data, hole, CHUNK):
                yield os.pread(fd, min(CHUNK, hole - start), start)
            position = hole
    finally:
        os.close(fd)


def import_tree(tx: Transaction, volume: Volume, src: Path) -> None:
    """Copy everything under `src` into `tx`'s root (see the module docstring)."""
    base = os.fsencode(src)
    tx.set_meta(b"", entry_of(base, b""))
    links: dict[tuple[int, int], bytes] = {}
    pending = [b""]
    while pending:
        directory = pending.pop()
        for name in sorted(os.listdir(os.path.join(base, directory) if directory else base)):
            rel = directory + b"/" + name if directory else name
            full = os.path.join(base, rel)
            st = os.lstat(full)
            entry = entry_of(full, name)
            if stat.S_ISDIR(st.st_mode):
                tx.mkdir(rel, entry)
                pending.append(rel)
            elif stat.S_ISREG(st.st_mode):
                first = links.get((st.st_dev, st.st_ino))
                if first is not None:
                    tx.link(rel, first)
                    continue
                put_bytes(tx, volume, rel, entry, sparse_pieces(full))
                if st.st_nlink > 1:
                    links[(st.st_dev, st.st_ino)] = rel
            else:
                tx.put_special(rel, entry)
