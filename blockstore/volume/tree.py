"""The namespace: a copy-on-write, lazily loaded view of one snapshot's directory tree.

Theory of operation. A `Namespace` starts from a root entry (a snapshot's, or an empty
one) and loads directory nodes from tree objects only when a path walks into them.
Each loaded `DirNode` holds its entries by name and the child nodes loaded so far.
Mutations change nodes in memory and mark every node on the path dirty; `write()`
stores the dirty nodes bottom-up as new tree objects (unchanged subtrees keep their
ids, so a change rewrites only the trees on its path) and returns the new root entry.

States of a node: *unloaded* (`entries is None`, it names `base_tree`), *clean* (loaded,
equal to `base_tree`), *dirty* (changed since; `base_tree` still names what it was
loaded from, which is what a rebase diffs against). A new directory is dirty with
`base_tree = None`.

Memory: loaded nodes count their entries, and once more than `max_loaded` are loaded
the clean subtrees are dropped from their parents (`_evict_clean`; the path just loaded
stays): a walk over a whole large tree -- a pull, or the quick check of an unchanged
push -- holds only about `max_loaded` entries, and a dropped directory loads again from
its tree object (through the TreeCache) if it is needed again. Dirty nodes are never
dropped, so no change is lost, and a change re-finds its directory under the lock
before applying (`_mutate`): a node dropped in between would otherwise take it along.
Between `write` and a failed commit's `mark_dirty_again` nothing is dropped, so the
nodes that must be written again are still in the tree.

Hard links: the members of a link group are separate entries carrying the same
`link_group`. The namespace indexes where the members in its loaded directories are,
and `update_group` changes all of them -- those loaded now and, as the walk goes on,
those in directories loaded later -- so a member never shows another's old metadata
(one inode on a real file system). Members in directories this namespace never loads
keep what they had.

Concurrency: one lock guards the node graph. Tree objects are fetched *outside* the
lock and installed under it if still needed, and `write` encodes under the lock but
uploads after releasing it, so a slow request never blocks callers that only touch
loaded nodes (the async adapter answers those on the event loop via `lookup_cached`).
Decoded trees are shared between namespaces through `TreeCache` (read-only tuples; a
node copies them into its own dict).
"""

from __future__ import annotations

import errno
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from blockstore.volume.blockid import tree_key
from blockstore.volume.objects import TreeEntry, decode_tree, encode_tree
from blockstore.volume.objectstore import ObjectStore


class NamespaceError(OSError):
    """A namespace operation failed; `errno` says why (ENOENT, ENOTDIR, EEXIST, ...)."""

    def __init__(self, err: int, message: str, path: bytes) -> None:
        super().__init__(err, message)
        self.path = path


class _NeedsIO(Exception):
    """A cached-only lookup reached a node that is not loaded."""


_T = TypeVar("_T")

NEEDS_IO = object()  # returned by `lookup_cached` when the answer needs a tree fetch
MAX_LOADED_ENTRIES = 50_000  # loaded entries a namespace keeps before dropping clean dirs


class TreeCache:
    """A bounded LRU of decoded tree objects, shared by all namespaces of a volume."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self._trees: OrderedDict[bytes, tuple[TreeEntry, ...]] = OrderedDict()
        self._entries = 0
        self._max = max_entries
        self._lock = threading.Lock()

    def get(self, objects: ObjectStore, tree_id: bytes) -> tuple[TreeEntry, ...]:
        with self._lock:
            found = self._trees.get(tree_id)
            if found is not None:
                self._trees.move_to_end(tree_id)
                return found
        entries = tuple(decode_tree(objects.get_tree(tree_id), tree_key(tree_id)))
        with self._lock:
            if tree_id not in self._trees:
                self._trees[tree_id] = entries
                self._entries += len(entries)
                while self._entries > self._max and len(self._trees) > 1:
                    _, dropped = self._trees.popitem(last=False)
                    self._entries -= len(dropped)
        return entries


class DirNode:
    """One directory of a namespace (see the module docstring for its states)."""

    __slots__ = ("base_tree", "children", "dirty", "entries")

    def __init__(self, base_tree: bytes | None, *, new: bool = False) -> None:
        self.base_tree = base_tree
        self.entries: dict[bytes, TreeEntry] | None = {} if base_tree is None else None
        self.children: dict[bytes, DirNode] = {}
        self.dirty = new


def split_path(path: bytes) -> list[bytes]:
    """Components of a volume path (b"" is the root)."""
    return path.split(b"/") if path else []


class Namespace:
    """A mutable view of one directory tree (see the module docstring)."""

    def __init__(
        self,
        objects: ObjectStore,
        cache: TreeCache,
        root: TreeEntry,
        *,
        max_loaded: int = MAX_LOADED_ENTRIES,
    ) -> None:
        self.objects = objects
        self.cache = cache
        self.root_entry = root
        self.root = DirNode(root.subtree)
        self.lock = threading.RLock()
        self.max_loaded = max_loaded
        self._loaded = 0  # entries of loaded nodes (about: a dropped node's are subtracted)
        self._keep_all = False  # between `write` and `mark_dirty_again`: drop nothing
        # link group -> paths of its members among the loaded directories (may hold
        # stale paths: `link_members` checks them); None after a directory move, until
        # rebuilt from the loaded nodes
        self._link_paths: dict[int, set[bytes]] | None = {}
        # link group -> the change every member gets, including members loaded later
        self._group_changes: dict[int, Callable[[TreeEntry], TreeEntry]] = {}

    # -- reading ---------------------------------------------------------------------

    def lookup(self, path: bytes) -> TreeEntry | None:
        """The entry at `path` (the root entry for b""), or None."""
        parts = split_path(path)
        if not parts:
            return self.root_entry
        try:
            node = self._node_at(parts[:-1])
        except NamespaceError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise
        entries = self._entries(node, parts[:-1])
        with self.lock:
            return entries.get(parts[-1])

    def lookup_cached(self, path: bytes) -> TreeEntry | object | None:
        """Like `lookup`, but return NEEDS_IO instead of fetching a tree."""
        try:
            with self.lock:
                return self._lookup_loaded(split_path(path))
        except _NeedsIO:
            return NEEDS_IO

    def listdir(self, path: bytes) -> list[TreeEntry]:
        """The entries of directory `path`, sorted by name."""
        parts = split_path(path)
        entries = self._entries(self._node_at(parts), parts)
        with self.lock:
            return sorted(entries.values(), key=_name)

    # -- changing --------------------------------------------------------------------

    def put(self, path: bytes, entry: TreeEntry) -> None:
        """Set the entry at `path` (its parent directory must exist).

        A directory entry gets a node of its own: an empty new one when it has no
        `subtree`, or one that loads `subtree` lazily.
        """
        parts = split_path(path)
        if not parts:
            with self.lock:
                self.root_entry = replace(entry, name=b"", subtree=self.root_entry.subtree)
                self.root.dirty = True
            return
        self._mutate(parts, lambda node, name: self._set(node, name, entry, path))

    def update_root(self, entry: TreeEntry) -> None:
        """Replace the root entry's metadata (keeps the tree)."""
        self.put(b"", entry)

    def remove(self, path: bytes) -> TreeEntry:
        """Remove and return the entry at `path` (ENOENT if absent)."""
        parts = split_path(path)
        if not parts:
            raise NamespaceError(errno.EBUSY, "Cannot remove the root directory", path)

        def pop(node: DirNode, name: bytes) -> TreeEntry:
            assert node.entries is not None
            entry = node.entries.pop(name, None)
            if entry is None:
                raise NamespaceError(errno.ENOENT, "No such file or directory", path)
            node.children.pop(name, None)
            self._index_link(entry, None, path)
            return entry

        return self._mutate(parts, pop)

    def move(self, old: bytes, new: bytes) -> None:
        """Move the entry at `old` (with any unwritten changes below it) to `new`."""
        old_parts, new_parts = split_path(old), split_path(new)
        while True:
            new_parent = self._node_at(new_parts[:-1])
            old_parent = self._node_at(old_parts[:-1])
            with self.lock:
                if self._attached(new_parent, new_parts[:-1]) and self._attached(
                    old_parent, old_parts[:-1]
                ):
                    self._move_locked(old_parts, new_parts, old_parent, new_parent)
                    return

    def _move_locked(
        self,
        old_parts: list[bytes],
        new_parts: list[bytes],
        old_parent: DirNode,
        new_parent: DirNode,
    ) -> None:
        """`move` once both parent directories are found (lock held)."""
        new, old = b"/".join(new_parts), b"/".join(old_parts)
        assert old_parent.entries is not None and new_parent.entries is not None
        entry = old_parent.entries.pop(old_parts[-1])
        child = old_parent.children.pop(old_parts[-1], None)
        replaced = new_parent.entries.get(new_parts[-1])
        new_parent.entries[new_parts[-1]] = entry.renamed(new_parts[-1])
        new_parent.children.pop(new_parts[-1], None)
        if child is not None:
            new_parent.children[new_parts[-1]] = child
        self._mark_dirty(old_parts[:-1])
        self._mark_dirty(new_parts[:-1])
        if entry.is_dir():
            self._link_paths = None  # members below moved: rebuild when asked
        else:
            self._index_link(replaced, None, new)
            self._index_link(entry, None, old)
            self._index_link(None, entry, new)

    # -- hard links --------------------------------------------------------------------

    def link_members(self, group: int) -> list[bytes]:
        """Paths of the members of link `group` in the loaded directories."""
        with self.lock:
            if self._link_paths is None:
                self._link_paths = {}
                self._index_loaded(self.root, [])
            found = []
            for path in sorted(self._link_paths.get(group, ())):
                try:
                    entry = self._lookup_loaded(split_path(path))
                except _NeedsIO:
                    entry = None
                if entry is not None and entry.link_group == group and not entry.is_dir():
                    found.append(path)
            self._link_paths[group] = set(found)
            return found

    def update_group(self, group: int, change: Callable[[TreeEntry], TreeEntry]) -> None:
        """Apply `change` to every member of link `group`, now and when more load.

        `change` must be idempotent (it sets metadata): a member may see it again.
        """
        with self.lock:
            self._group_changes[group] = change
            for path in self.link_members(group):
                entry = self.lookup(path)
                assert entry is not None
                self.put(path, change(entry))

    # -- writing ---------------------------------------------------------------------

    def write(self) -> TreeEntry:
        """Store every dirty directory (bottom-up); return the new root entry.

        The trees are encoded and named under the lock (CPU only) and uploaded after it
        is released, so lookups of loaded directories never wait for the store.
        """
        encoded: list[tuple[bytes, bytes]] = []
        with self.lock:
            self._keep_all = True  # until the commit is known to have worked
            if self.root.dirty:
                subtree = self._write_node(self.root, encoded)
                self.root_entry = replace(self.root_entry, subtree=subtree)
            root = self.root_entry
        for tree_id, data in encoded:
            self.objects.store_tree(tree_id, data)
        return root

    def dirty_nodes(self) -> list[DirNode]:
        """The nodes `write` would store (to mark them dirty again if the commit fails)."""
        with self.lock:
            found, stack = [], [self.root]
            while stack:
                node = stack.pop()
                if node.dirty:
                    found.append(node)
                    stack.extend(node.children.values())
            return found

    def mark_dirty_again(self, nodes: list[DirNode]) -> None:
        """Undo `write`'s bookkeeping after a failed commit: these must be written again."""
        with self.lock:
            for node in nodes:
                node.dirty = True
            self._keep_all = False

    def _write_node(self, node: DirNode, encoded: list[tuple[bytes, bytes]]) -> bytes | None:
        assert node.entries is not None
        for name, child in node.children.items():
            if child.dirty:
                subtree = self._write_node(child, encoded)
                node.entries[name] = replace(node.entries[name], subtree=subtree)
        node.dirty = False
        if not node.entries:
            node.base_tree = None
            return None
        data = encode_tree(sorted(node.entries.values(), key=_name))
        tree_id = self.objects.hasher.digest(data)
        encoded.append((tree_id, data))
        node.base_tree = tree_id
        return tree_id

    # -- internals -------------------------------------------------------------------

    def _entries(self, node: DirNode, parts: list[bytes]) -> dict[bytes, TreeEntry]:
        """Load `node` (at `parts`) if needed, fetching outside the lock; its entries."""
        entries = node.entries
        if entries is not None:
            return entries
        assert node.base_tree is not None
        loaded = self.cache.get(self.objects, node.base_tree)
        with self.lock:
            if node.entries is None:
                node.entries = {entry.name: entry for entry in loaded}
                self._loaded_links(node, parts)
                self._loaded += len(node.entries)
                if self._loaded > self.max_loaded and not self._keep_all:
                    self._evict_clean(parts)
            return node.entries

    def _evict_clean(self, keep: list[bytes]) -> None:
        """Drop every clean subtree from its parent, except along `keep` (lock held)."""
        self._loaded = 0
        stack = [(self.root, keep)]
        while stack:
            node, path = stack.pop()
            self._loaded += len(node.entries or ())
            for name, child in list(node.children.items()):
                on_path = bool(path) and path[0] == name
                if child.dirty or on_path:
                    stack.append((child, path[1:] if on_path else []))
                else:
                    del node.children[name]

    def _loaded_links(self, node: DirNode, parts: list[bytes]) -> None:
        """Index a just loaded node's hard links and give them their group's changes."""
        assert node.entries is not None
        linked = [e for e in node.entries.values() if e.link_group is not None and not e.is_dir()]
        changed = False
        for entry in linked:
            path = b"/".join([*parts, entry.name])
            self._index_link(None, entry, path)
            change = self._group_changes.get(entry.link_group)  # type: ignore[arg-type]
            if change is not None and (updated := change(entry)) != entry:
                node.entries[entry.name] = updated
                changed = True
        if changed:
            self._mark_dirty(parts)

    def _index_loaded(self, node: DirNode, parts: list[bytes]) -> None:
        """Rebuild the link index from every loaded node below `node`."""
        if node.entries is None:
            return
        for entry in node.entries.values():
            if entry.link_group is not None and not entry.is_dir():
                self._index_link(None, entry, b"/".join([*parts, entry.name]))
        for name, child in node.children.items():
            self._index_loaded(child, [*parts, name])

    def _index_link(self, old: TreeEntry | None, new: TreeEntry | None, path: bytes) -> None:
        """Keep the link index right when the entry at `path` goes from `old` to `new`."""
        index = self._link_paths
        if index is None:
            return
        if old is not None and old.link_group is not None:
            index.get(old.link_group, set()).discard(path)
        if new is not None and new.link_group is not None and not new.is_dir():
            index.setdefault(new.link_group, set()).add(path)

    def _child(self, node: DirNode, name: bytes, path: list[bytes]) -> DirNode:
        entries = self._entries(node, path[:-1])
        with self.lock:
            child = node.children.get(name)
            if child is not None:
                return child
            entry = entries.get(name)
            if entry is None:
                raise NamespaceError(errno.ENOENT, "No such file or directory", b"/".join(path))
            if not entry.is_dir():
                raise NamespaceError(errno.ENOTDIR, "Not a directory", b"/".join(path))
            child = node.children[name] = DirNode(entry.subtree)
            return child

    def _node_at(self, parts: list[bytes]) -> DirNode:
        node = self.root
        for depth, name in enumerate(parts):
            node = self._child(node, name, parts[: depth + 1])
        self._entries(node, parts)
        return node

    def _lookup_loaded(self, parts: list[bytes]) -> TreeEntry | None:
        if not parts:
            return self.root_entry
        node = self.root
        for name in parts[:-1]:
            if node.entries is None:
                raise _NeedsIO
            child = node.children.get(name)
            if child is None:
                entry = node.entries.get(name)
                if entry is None or not entry.is_dir():
                    return None
                if entry.subtree is not None:
                    raise _NeedsIO
                child = node.children[name] = DirNode(None)
            node = child
        if node.entries is None:
            raise _NeedsIO
        return node.entries.get(parts[-1])

    def _mutate(self, parts: list[bytes], change: Callable[[DirNode, bytes], _T]) -> _T:
        while True:
            parent = self._node_at(parts[:-1])
            with self.lock:
                if self._attached(parent, parts[:-1]):
                    result = change(parent, parts[-1])
                    self._mark_dirty(parts[:-1])
                    return result
            # the directory was dropped (clean) while it loaded: find it again

    def _attached(self, node: DirNode, parts: list[bytes]) -> bool:
        """Whether `node` is still the one at `parts` (lock held)."""
        at = self.root
        for name in parts:
            found = at.children.get(name)
            if found is None:
                return False
            at = found
        return at is node

    def _set(self, node: DirNode, name: bytes, entry: TreeEntry, path: bytes) -> None:
        assert node.entries is not None
        old = node.entries.get(name)
        node.entries[name] = entry.renamed(name) if entry.name != name else entry
        loaded = node.children.pop(name, None)
        if entry.is_dir():
            if (
                loaded is not None
                and old is not None
                and old.is_dir()
                and entry.subtree == old.subtree
            ):
                # the same directory with new metadata: its loaded contents, and any
                # change made below it, stay (reloading `subtree` would undo them)
                node.children[name] = loaded
            elif entry.subtree is None:
                node.children[name] = DirNode(None, new=True)
        self._index_link(old, entry, path)

    def _mark_dirty(self, parts: list[bytes]) -> None:
        node = self.root
        node.dirty = True
        for name in parts:
            node = node.children[name]
            node.dirty = True


def _name(entry: TreeEntry) -> bytes:
    return entry.name
