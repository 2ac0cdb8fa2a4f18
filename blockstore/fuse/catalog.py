"""What the mount shows, read from the volume: views, directories, snapshots, link counts.

Theory of operation. Everything here is synchronous (it may wait on the store) and
thread-safe; the FUSE operations call it from worker threads, and call its
`*_cached` methods on the trio thread to skip the thread hop when the answer is
already in memory.

- **Views.** A `View` is one snapshot's tree placed in the mount: at the root (the
  snapshot chosen at mount time, pinned: the root never changes under a reader) or
  under `.snapshots/<id>`. The same snapshot in both places is two views (two sets
  of inode numbers). Like `rsyncd_py.fs.store`'s `/.snapshots`, `.snapshots/<id>`
  has its snapshot's root mode and owner and the snapshot time as mtime.
- **Directories** are the volume's immutable tree objects, decoded through the
  volume's shared `TreeCache` (bounded LRU); a small LRU of the most recent ones here
  (bounded by entries, like the TreeCache) lets hot lookups skip the thread hop.
  Entries are sorted by name, so a name is a binary search. Namespaces are not used:
  they keep every directory they ever loaded.
- **Snapshots.** The id list is one LIST request; snapshot objects are loaded once each
  (they never change) and forgotten when their id disappears (`forget`). The list is
  refreshed when `.snapshots` is opened and, at most once a second, when a lookup
  names an id not seen yet: new snapshots appear without a remount (their objects,
  in packs this process has not indexed yet, are found by the volume: see
  `blockstore.volume.volume`).
- **Link counts.** Trees record a hard-link group per entry, not the group's size, so
  the first stat of a hard-linked file in a snapshot walks that snapshot's trees once
  and counts each group (snapshots without hard links never pay for it).
- **Stored bytes** (`st_blocks`): the non-hole block lengths of a file, summed once per
  file content; a long block list (list objects) is read on the first stat.
"""

from __future__ import annotations

import bisect
import errno
import logging
import stat as stat_mod
import threading
import time
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from blockstore.backend import StoreError
from blockstore.volume import RESERVED_ROOT_NAME, Content, Snapshot, TreeEntry, Volume

log = logging.getLogger(__name__)

SNAPSHOTS_DIR_MODE = stat_mod.S_IFDIR | 0o555
SNAPSHOT_RELIST_SECONDS = 1.0  # a lookup of an unknown id re-lists at most this often
_RECENT_ENTRIES = 50_000  # entries of the recent directories kept at hand (at least one)
_LINK_COUNT_SNAPSHOTS = 8
_STORED_BYTES_MEMO = 4096
_SNAPSHOT_LOADERS = 8

Entries = tuple[TreeEntry, ...]


class View:
    """One snapshot's tree placed in the mount (see the module docstring)."""

    __slots__ = ("at_root", "key", "root", "snapshot")

    def __init__(self, snapshot: Snapshot | None, *, at_root: bool) -> None:
        self.snapshot = snapshot
        self.at_root = at_root
        snapshot_id = snapshot.id if snapshot is not None else ""
        self.key = ("/" if at_root else "/.snapshots/") + snapshot_id
        if snapshot is None:
            self.root = TreeEntry(b"", stat_mod.S_IFDIR | 0o755)
        elif at_root:
            self.root = snapshot.root
        else:
            self.root = replace(snapshot.root, name=snapshot_id.encode(),
                                mtime_ns=snapshot.time_ns)

    @property
    def snapshot_id(self) -> str:
        return self.snapshot.id if self.snapshot is not None else ""


def _name(entry: TreeEntry) -> bytes:
    return entry.name


class Catalog:
    """The read side of the volume for the mount (see the module docstring)."""

    def __init__(self, volume: Volume) -> None:
        self.volume = volume
        self._lock = threading.Lock()
        self._recent: OrderedDict[bytes, Entries] = OrderedDict()
        self._recent_entries = 0
        self._snapshots: dict[str, Snapshot] = {}
        self._listed_at = float("-inf")
        self._list_lock = threading.Lock()
        self._links: OrderedDict[str, dict[int, int]] = OrderedDict()
        self._link_locks: dict[str, threading.Lock] = {}
        self._stored: OrderedDict[tuple[int, bytes], int] = OrderedDict()

    # -- directories ---------------------------------------------------------------------

    def entries_cached(self, directory: TreeEntry) -> Entries | None:
        """The entries of `directory` if they are at hand, else None (no I/O)."""
        if directory.subtree is None:
            return ()
        with self._lock:
            found = self._recent.get(directory.subtree)
            if found is not None:
                self._recent.move_to_end(directory.subtree)
            return found

    def entries(self, directory: TreeEntry) -> Entries:
        """The entries of `directory`, sorted by name (may fetch its tree object)."""
        found = self.entries_cached(directory)
        if found is not None:
            return found
        assert directory.subtree is not None
        loaded = self.volume.tree_entries(directory.subtree)
        with self._lock:
            if directory.subtree not in self._recent:
                self._recent[directory.subtree] = loaded
                self._recent_entries += len(loaded)
            while self._recent_entries > _RECENT_ENTRIES and len(self._recent) > 1:
                self._recent_entries -= len(self._recent.popitem(last=False)[1])
        return loaded

    @staticmethod
    def find(entries: Entries, name: bytes) -> TreeEntry | None:
        """The entry called `name` in sorted `entries`, or None."""
        at = bisect.bisect_left(entries, name, key=_name)
        if at < len(entries) and entries[at].name == name:
            return entries[at]
        return None

    @staticmethod
    def visible(entries: Entries, view: View, path: bytes) -> Entries:
        """`entries` without a stored `.snapshots` at a view's root (the virtual one wins)."""
        if path or not view.at_root or Catalog.find(entries, RESERVED_ROOT_NAME) is None:
            return entries
        return tuple(e for e in entries if e.name != RESERVED_ROOT_NAME)

    def resolve(self, view: View, path: bytes) -> TreeEntry:
        """The entry at `path` inside `view` (used for `..`); OSError(ENOENT) if gone."""
        entry = view.root
        for part in path.split(b"/") if path else ():
            found = self.find(self.entries(entry), part) if entry.is_dir() else None
            if found is None:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
            entry = found
        return entry

    # -- snapshots -----------------------------------------------------------------------

    def snapshot_list(self, *, refresh: bool = False) -> list[Snapshot]:
        """All snapshots, oldest first; `refresh` re-lists the store first."""
        if refresh or not self.listed:
            self._relist()
        with self._lock:
            return sorted(self._snapshots.values(), key=lambda s: s.id)

    @property
    def listed(self) -> bool:
        """Whether the snapshot list was read at least once."""
        return self._listed_at != float("-inf")

    def snapshot_cached(self, snapshot_id: str) -> Snapshot | None:
        """The snapshot `snapshot_id` if it is listed already, else None (no I/O)."""
        with self._lock:
            return self._snapshots.get(snapshot_id)

    def snapshot(self, snapshot_id: str) -> Snapshot | None:
        """The snapshot `snapshot_id` (exact id), re-listing if it is not known yet."""
        found = self.snapshot_cached(snapshot_id)
        if found is None and time.monotonic() - self._listed_at >= SNAPSHOT_RELIST_SECONDS:
            self._relist()
            found = self.snapshot_cached(snapshot_id)
        return found

    def newest_time_ns(self) -> int:
        """The commit time of the newest listed snapshot (0 if none): `.snapshots`' mtime."""
        with self._lock:
            return max((s.time_ns for s in self._snapshots.values()), default=0)

    def _relist(self) -> None:
        with self._list_lock:
            ids = self.volume.snapshot_ids()
            with self._lock:
                unknown = [i for i in ids if i not in self._snapshots]
            if len(unknown) > 1:
                with ThreadPoolExecutor(_SNAPSHOT_LOADERS) as pool:
                    loaded = list(pool.map(self._load_snapshot, unknown))
            else:
                loaded = [self._load_snapshot(i) for i in unknown]
            with self._lock:
                present = set(ids)
                for gone in [i for i in self._snapshots if i not in present]:
                    del self._snapshots[gone]
                self._snapshots.update((snap.id, snap) for snap in loaded if snap is not None)
            self._listed_at = time.monotonic()

    def _load_snapshot(self, snapshot_id: str) -> Snapshot | None:
        """One snapshot object; a damaged one is logged and left out, not fatal to the list."""
        try:
            return self.volume.load_snapshot(snapshot_id)
        except StoreError as exc:
            log.error("snapshot %s left out of .snapshots: %s", snapshot_id, exc)
            return None

    # -- link counts ---------------------------------------------------------------------

    def link_count_cached(self, view: View, group: int) -> int | None:
        """`link_count` if `view`'s snapshot was counted already, else None (no I/O)."""
        with self._lock:
            counts = self._links.get(view.snapshot_id)
            return None if counts is None else max(1, counts.get(group, 1))

    def link_count(self, view: View, group: int) -> int:
        """How many entries of `view`'s snapshot share hard-link `group`."""
        found = self.link_count_cached(view, group)
        if found is not None:
            return found
        key = view.snapshot_id
        with self._lock:
            walk_lock = self._link_locks.setdefault(key, threading.Lock())
        with walk_lock:  # one walk per snapshot, however many files ask at once
            found = self.link_count_cached(view, group)
            if found is not None:
                return found
            counts = self._count_links(view.root)
            with self._lock:
                self._links[key] = counts
                while len(self._links) > _LINK_COUNT_SNAPSHOTS:
                    self._links.popitem(last=False)
                self._link_locks.pop(key, None)
        return max(1, counts.get(group, 1))

    def _count_links(self, root: TreeEntry) -> dict[int, int]:
        counts: Counter[int] = Counter()
        pending = [root]
        while pending:
            directory = pending.pop()
            try:
                children = self.entries(directory)
            except StoreError as exc:  # count what can be reached; the bad tree says EIO itself
                log.warning("counting hard links: %s", exc)
                continue
            for child in children:
                if child.is_dir():
                    if child.subtree is not None:
                        pending.append(child)
                elif child.link_group is not None:
                    counts[child.link_group] += 1
        return dict(counts)

    # -- stored bytes --------------------------------------------------------------------

    def stored_bytes_cached(self, content: Content) -> int | None:
        """The non-hole bytes of `content` when no list object must be read, else None."""
        if content.height == 0:
            return self._sum_stored(content)
        with self._lock:
            return self._stored.get((content.height, content.records))

    def stored_bytes(self, content: Content) -> int:
        """The non-hole bytes of `content` (reads its list objects once, then memoised)."""
        found = self.stored_bytes_cached(content)
        if found is not None:
            return found
        total = self._sum_stored(content)
        with self._lock:
            self._stored[(content.height, content.records)] = total
            while len(self._stored) > _STORED_BYTES_MEMO:
                self._stored.popitem(last=False)
        return total

    def _sum_stored(self, content: Content) -> int:
        blocks = self.volume.reader(content, cache_blocks=0).blocks(0)
        return sum(length for block_id, _offset, length in blocks if block_id is not None)
