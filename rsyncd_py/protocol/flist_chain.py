"""The file lists of a session and the index space they share (flist.c, rsync.c).

Mirrors flist.c flist_new / flist_free and rsync.c flist_for_ndx.

Theory of operation. Without incremental recursion a session has one list, indexed
from 0. With it the lists arrive one after another and share one index space: the
first starts at 1 and each later one at `prev.ndx_start + prev.used + 1`, where `prev`
is the list added last. The index just before a list's start, `ndx_start - 1`, names
the directory whose contents the list holds -- its *parent* (the first list's parent is
its "." entry, so "." is 0). A list is freed oldest first, when the generator's
NDX_DONE for it comes round; an index in a freed list is no longer valid.

`FileLists` is one side's chain of lists that are not freed yet. A push keeps two
views of the same `FileList` objects, as rsync's two processes do: the receiver's
(freed on the sender's NDX_DONE echoes) and the generator's (freed when it sends the
NDX_DONE). `DirIndex` numbers the directories of every list as rsync's `dir_flist`
does -- each list's directories appended in sorted order, "." included -- which is how
a sub-list's header (`NDX_FLIST_OFFSET - dir_ndx`) names its directory. It keeps only
the directories whose sub-list has not come yet, so memory follows the directories in
flight, not the tree.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from rsyncd_py.protocol.constants import NDX_FLIST_OFFSET
from rsyncd_py.protocol.errors import ProtocolError

T = TypeVar("T")


class FileList(Generic[T]):
    """One file list: its sorted entries and where they sit in the index space.

    `in_progress` and `to_redo` are the generator's counts of transfers (and hard-link
    members) of this list not finished yet, and of redo requests queued for it
    (generator.c; a list is only freed when both are 0).
    """

    __slots__ = ("entries", "in_progress", "ndx_start", "parent", "parent_ndx", "to_redo")

    def __init__(
        self, entries: Sequence[T], ndx_start: int, parent: T | None, parent_ndx: int
    ) -> None:
        self.entries = entries
        self.ndx_start = ndx_start
        self.parent = parent  # the directory the list holds the contents of (or None)
        self.parent_ndx = parent_ndx  # its DirIndex number, -1 for none
        self.in_progress = 0
        self.to_redo = 0

    @property
    def used(self) -> int:
        return len(self.entries)

    @property
    def end(self) -> int:
        """One past the last index of the list."""
        return self.ndx_start + len(self.entries)

    def covers(self, ndx: int) -> bool:
        """Whether `ndx` is the list's parent or one of its entries (flist_for_ndx)."""
        return self.ndx_start - 1 <= ndx < self.end

    def get(self, ndx: int) -> T | None:
        """The entry at `ndx` (the parent for `ndx_start - 1`), or None."""
        i = ndx - self.ndx_start
        if i >= 0:
            return self.entries[i] if i < len(self.entries) else None
        return self.parent if i == -1 else None

    def indexed(self) -> Iterator[tuple[int, T]]:
        """(ndx, entry) for every entry, in index order."""
        return enumerate(self.entries, self.ndx_start)


class FileLists(Generic[T]):
    """One side's lists that are not freed yet (see the module docstring)."""

    def __init__(self, *, incremental: bool) -> None:
        self.incremental = incremental
        self._lists: deque[FileList[T]] = deque()
        self._next_start = 1 if incremental else 0
        self._last_hit: FileList[T] | None = None
        self.file_total = 0  # entries in the lists not freed yet (flist.c file_total)
        self.eof = False  # NDX_FLIST_EOF seen (or sent): no list will follow

    def add(
        self, entries: Sequence[T], parent: T | None = None, parent_ndx: int = -1
    ) -> FileList[T]:
        """flist.c flist_new: a new last list, numbered after the one added before it."""
        flist = FileList(entries, self._next_start, parent, parent_ndx)
        self._next_start = flist.end + 1
        self.append(flist)
        return flist

    def append(self, flist: FileList[T]) -> None:
        """Add a list numbered elsewhere (the generator's view of the receiver's list)."""
        self._lists.append(flist)
        self.file_total += flist.used

    @property
    def next_start(self) -> int:
        """The `ndx_start` the next list will get."""
        return self._next_start

    def __len__(self) -> int:
        return len(self._lists)

    def __iter__(self) -> Iterator[FileList[T]]:
        return iter(self._lists)

    @property
    def first(self) -> FileList[T]:
        return self._lists[0]

    @property
    def last(self) -> FileList[T]:
        return self._lists[-1]

    def pop_first(self) -> FileList[T]:
        """flist.c flist_free of the oldest list."""
        flist = self._lists.popleft()
        self.file_total -= flist.used
        if self._last_hit is flist:
            self._last_hit = None
        return flist

    def list_for(self, ndx: int) -> FileList[T] | None:
        """rsync.c flist_for_ndx without the fatal error: the list `ndx` is in, or None."""
        hit = self._last_hit
        if hit is not None and hit.covers(ndx):
            return hit
        for flist in self._lists:
            if flist.covers(ndx):
                self._last_hit = flist
                return flist
        return None

    def lookup(self, ndx: int) -> T | None:
        """The entry at `ndx` in a list not freed yet (a list's parent too), or None."""
        flist = self.list_for(ndx)
        return flist.get(ndx) if flist is not None else None

    def find(self, ndx: int, where: str, role: str) -> tuple[FileList[T], T]:
        """flist_for_ndx with its fatal error: the list and entry `ndx` names."""
        flist = self.list_for(ndx)
        entry = flist.get(ndx) if flist is not None else None
        if flist is None or entry is None:
            first, last = (self.first.ndx_start - 1, self.last.end - 1) if self._lists else (0, -1)
            raise ProtocolError(f"File-list index {ndx} not in {first} - {last} ({where}) [{role}]")
        return flist, entry


class DirIndex(Generic[T]):
    """rsync's dir_flist numbering, keeping the directories still owed a sub-list."""

    def __init__(self) -> None:
        self.count = 0  # directories numbered so far (dir_flist->used)
        self._pending: dict[int, T] = {}

    def add(self, entries: Sequence[T], is_dir: Callable[[T], bool]) -> list[tuple[int, T]]:
        """Number the directories of a sorted list; return them as (dir_ndx, entry)."""
        added = []
        for entry in entries:
            if is_dir(entry):
                added.append((self.count, entry))
                self._pending[self.count] = entry
                self.count += 1
        return added

    def take(self, dir_ndx: int) -> T:
        """The directory a sub-list header names; it may be named only once.

        Raises rsync's errors for an index out of range or named twice (flist.c
        recv_file_list's "refusing" checks).
        """
        if not 0 <= dir_ndx < self.count:
            raise ProtocolError(
                f"Invalid dir index: {NDX_FLIST_OFFSET - dir_ndx} "
                f"({NDX_FLIST_OFFSET} - {NDX_FLIST_OFFSET - self.count + 1})"
            )
        entry = self._pending.pop(dir_ndx, None)
        if entry is None:
            raise ProtocolError(f"rsync: refusing malicious duplicate flist for dir {dir_ndx}")
        return entry

    def discard(self, dir_ndx: int) -> None:
        """Forget a directory that will get no sub-list (the first list's ".")."""
        self._pending.pop(dir_ndx, None)

    def __len__(self) -> int:
        """Directories still owed a sub-list."""
        return len(self._pending)
