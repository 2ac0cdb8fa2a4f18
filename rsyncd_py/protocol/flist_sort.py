"""The order both sides index a file list by (flist.c f_name_cmp, flist_sort_and_clean).

rsync compares names component by component as unsigned bytes. From protocol 29 on, a
directory's name compares as if it ended in '/', and inside one directory every
non-directory sorts before every subdirectory; the top directory "." sorts first. Below
29 the comparison is a plain byte comparison of the whole path (a directory has no
trailing slash, and "." is just the string ".").

`sort_key` turns that comparison into a Python key: a tuple with one (kind, bytes) pair
per path component, where kind 0 is "a name ending here" (a non-directory, or the "."
dir) and kind 1 is "a directory level" (a parent component, or a directory entry, which
carries its trailing '/'). Comparing the tuples is exactly f_name_cmp.

`sort_and_clean` sorts the received entries and deactivates duplicates the way the
receiver does (a directory beats a non-directory of the same name; otherwise the first
of equal names wins). Deactivated entries keep their index: both sides count them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rsyncd_py.protocol.flist import FLAG_CONTENT_DIR, FLAG_IMPLIED_DIR, FLAG_TOP_DIR, FileEntry

SortKey = tuple[tuple[int, bytes], ...] | bytes


def sort_key(name: bytes, is_dir: bool, protocol: int) -> SortKey:
    """Return the key that orders entries like f_name_cmp."""
    if protocol < 29:
        return name
    parts = name.split(b"/")
    key = [(1, part + b"/") for part in parts[:-1]]
    last = parts[-1]
    if is_dir and last != b".":
        key.append((1, last + b"/"))
    else:
        key.append((0, b"" if is_dir else last))
    return tuple(key)


def entry_key(entry: FileEntry, protocol: int) -> SortKey:
    return sort_key(entry.name, entry.is_dir(), protocol)


def sort_and_clean(entries: Sequence[FileEntry], protocol: int) -> list[FileEntry]:
    """flist.c flist_sort_and_clean (receiver side): sorted entries, duplicates inactive.

    Returns a new list in index order; duplicates stay in place with `active = False`.
    A --relative name may start with '/': it sorts with it, and rsync strips it only
    after sorting (`strip_root`), so we do the same.
    """
    ordered = sorted(entries, key=lambda e: entry_key(e, protocol))
    seen: dict[bytes, int] = {}
    for i, entry in enumerate(ordered):
        name = entry.name
        j = seen.get(name)
        if j is None:
            seen[name] = i
            continue
        other = ordered[j]
        if entry.is_dir() and not other.is_dir():
            other.active = False  # a directory wins: it may have contents in the list
            seen[name] = i
        else:
            if entry.is_dir() and other.is_dir():
                # merge the vital flags into the survivor, as rsync does
                other.flags |= entry.flags & (FLAG_TOP_DIR | FLAG_CONTENT_DIR)
                other.flags &= entry.flags | ~FLAG_IMPLIED_DIR
            entry.active = False
    for entry in ordered:
        if entry.name.startswith(b"/"):
            entry.name = entry.name.lstrip(b"/") or b"."
    return ordered


def prune_empty_dirs(entries: Sequence[FileEntry], keep_dir: Callable[[bytes], bool]) -> None:
    """Drop directories with nothing but empty directories below them (-m).

    flist.c flist_sort_and_clean does this on the receiver with --prune-empty-dirs.
    A directory stays if some non-directory is inside it, or if `keep_dir(name)` says
    so for it or a directory inside it (rsync keeps the dirs its filter rules match).
    The top directory always stays. Dropped entries become inactive, keeping their index.
    """
    keep: set[bytes] = set()
    for entry in entries:
        if not entry.active or (entry.is_dir() and not keep_dir(entry.name)):
            continue
        parts = entry.name.split(b"/")
        for depth in range(1, len(parts) + 1):
            keep.add(b"/".join(parts[:depth]))
    for entry in entries:
        if entry.active and entry.is_dir() and entry.name != b"." and entry.name not in keep:
            entry.active = False
