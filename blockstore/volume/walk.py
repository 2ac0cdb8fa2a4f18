"""Walking what snapshots reference: trees, list objects and blocks (fsck, gc, stats).

Theory of operation. `Walker.walk(snapshot)` yields every entry of a snapshot's tree
with its path, loading each tree object once per walker: a subtree shared by many
snapshots (the usual case: most directories do not change between sessions) is
visited only the first time, so walking N snapshots costs roughly the trees that
differ, not N times the tree. `content_blocks(content)` yields a file's block records,
loading its list objects (again once per walker for `list_ids`).

Errors: by default a missing or corrupt object raises (gc must never decide on a
partial view). With `on_error` set, the walker reports the problem (key, path) and
skips that subtree instead (fsck reports everything it can reach). `on_load` sees
each tree and list object's bytes as loaded (fsck re-hashes them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from blockstore.backend import StoreError
from blockstore.volume.blockid import tree_key
from blockstore.volume.objects import Content, TreeEntry, decode_list, decode_tree, record_dtype
from blockstore.volume.snapshots import Snapshot
from blockstore.volume.volume import Volume

ErrorHandler = Callable[[str, bytes, StoreError], None]  # (key, path, error)
LoadHandler = Callable[[str, bytes, bytes], None]  # (key, stored plaintext, path)


class Walker:
    """Visits snapshots' trees, each tree and list object once (see the module docstring)."""

    def __init__(
        self,
        volume: Volume,
        *,
        on_error: ErrorHandler | None = None,
        on_load: LoadHandler | None = None,
    ) -> None:
        self.volume = volume
        self.on_error = on_error
        self.on_load = on_load
        self.tree_ids: set[bytes] = set()
        self.list_ids: set[bytes] = set()

    def walk(self, snap: Snapshot) -> Iterator[tuple[bytes, TreeEntry]]:
        """(path, entry) for every entry reached from `snap` through unseen trees."""
        if snap.root.subtree is not None:
            yield from self._walk_tree(snap.root.subtree, b"")

    def _walk_tree(self, tree_id: bytes, path: bytes) -> Iterator[tuple[bytes, TreeEntry]]:
        if tree_id in self.tree_ids:
            return
        self.tree_ids.add(tree_id)
        key = tree_key(tree_id)
        try:
            entries = decode_tree(self._load(key, tree_id, path), key)
        except StoreError as exc:
            if self.on_error is None:
                raise
            self.on_error(key, path, exc)
            return
        for entry in entries:
            child = path + b"/" + entry.name if path else entry.name
            yield child, entry
            if entry.is_dir() and entry.subtree is not None:
                yield from self._walk_tree(entry.subtree, child)

    def content_blocks(self, content: Content, path: bytes = b"") -> Iterator[np.ndarray]:
        """Block records (BLOCK_RECORD arrays, holes included) of a file, a node at a time.

        List objects already seen by this walker are skipped (their blocks were yielded).
        """
        yield from self._node(content.height, content.records, path)

    def _node(self, height: int, records: bytes, path: bytes) -> Iterator[np.ndarray]:
        table = np.frombuffer(records, dtype=record_dtype(height))
        if height == 0:
            yield table
            return
        for ident in table["id"].tolist():
            list_id = bytes(ident)
            if list_id in self.list_ids:
                continue
            self.list_ids.add(list_id)
            key = tree_key(list_id)
            try:
                stored_height, child = decode_list(self._load(key, list_id, path), key)
                if stored_height != height - 1:
                    raise StoreError(f"{key}: list object at the wrong height", key=key)
            except StoreError as exc:
                if self.on_error is None:
                    raise
                self.on_error(key, path, exc)
                continue
            yield from self._node(height - 1, child, path)

    def _load(self, key: str, ident: bytes, path: bytes) -> bytes:
        data = self.volume.objects.get_tree(ident)
        if self.on_load is not None:
            self.on_load(key, data, path)
        return data
