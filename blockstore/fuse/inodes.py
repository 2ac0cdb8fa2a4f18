"""The inode table of the FUSE view: stable inode numbers, bounded by the kernel's interest.

Theory of operation. The kernel names files by inode number and tells us, through
lookup counts, which numbers it still holds: every successful `lookup` (and every
`readdir` entry it accepts) adds one, every `forget` takes some away, and at zero the
kernel has dropped the inode and will not ask about that number again. So the table
keeps a `Node` only while its count is above zero (plus a few pinned nodes: the root
and the `.snapshots` directory); memory follows what the kernel caches, not what the
store holds.

Numbers are *derived*, not allocated: a node's number is a 63-bit hash of its
identity, `(view key, path)`, so a file keeps its number after the kernel forgot it and
looked it up again, and across remounts. That matters to `du`, `find`, `tar` and
`rsync -H`, which recognise hard links and loops by (st_dev, st_ino) and would be
misled by a number that changed in the middle of a walk. Hard links of one snapshot
share one node: their identity is their link group, not their path. Should two live
identities ever hash to the same number, the second is re-hashed until free (it then
has a number that is stable only while it stays known; a 63-bit collision is not
expected in practice).

A view key names *where* a snapshot's tree appears (at the root or under
`.snapshots/<id>`), so the two places never share numbers: a root that is re-pinned
to a newer snapshot gets fresh numbers, and the kernel's caches of the old ones can
never serve the new content.

Not thread-safe: it is used from the trio thread only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import xxhash

from blockstore.volume import TreeEntry

if TYPE_CHECKING:
    from blockstore.fuse.catalog import View

ROOT_INODE = 1  # pyfuse3.ROOT_INODE (FUSE_ROOT_ID)
SNAPSHOTS_INODE = 2  # the virtual `.snapshots` directory
FIRST_DERIVED = 3
_INODE_MASK = (1 << 63) - 1


@dataclass(eq=False, slots=True)
class Node:
    """One inode the kernel knows: where it is and the tree entry it shows.

    `path` is relative to its view's root (b"" for the root itself); for a hard-linked
    file it is the path it was first seen at. `attrs` caches the kernel attributes
    once built (the entry never changes).
    """

    ino: int
    view: View | None  # None only for the `.snapshots` directory
    path: bytes
    entry: TreeEntry
    identity: bytes
    lookups: int = 0
    pinned: bool = False
    attrs: object | None = field(default=None, repr=False)


def identity_of(view: View, path: bytes, entry: TreeEntry) -> bytes:
    """What makes two names the same inode: the view, then the link group or the path."""
    if entry.link_group is not None and not entry.is_dir():
        return b"%s\0link\0%d" % (view.key.encode(), entry.link_group)
    return view.key.encode() + b"\0" + path


def derived_inode(identity: bytes) -> int:
    """The inode number an identity gets when nothing else holds it."""
    return _fold(xxhash.xxh3_64_intdigest(identity))


def _fold(value: int) -> int:
    value &= _INODE_MASK
    return value if value >= FIRST_DERIVED else value + FIRST_DERIVED


class InodeTable:
    """Live inodes by number and by identity (see the module docstring)."""

    def __init__(self) -> None:
        self._nodes: dict[int, Node] = {}
        self._by_identity: dict[bytes, Node] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self._nodes.values())

    def get(self, ino: int) -> Node | None:
        return self._nodes.get(ino)

    def pin(self, ino: int, view: View | None, path: bytes, entry: TreeEntry) -> Node:
        """Install a node that is never forgotten (the root, `.snapshots`)."""
        identity = b"\0pinned\0%d" % ino
        node = Node(ino, view, path, entry, identity, pinned=True)
        self._nodes[ino] = node
        self._by_identity[identity] = node
        return node

    def node(self, view: View, path: bytes, entry: TreeEntry) -> Node:
        """The node for `entry` at `path` in `view`, made if new (its count unchanged).

        A node made here and then not counted must be handed to `release_unused`.
        """
        identity = identity_of(view, path, entry)
        found = self._by_identity.get(identity)
        if found is not None:
            return found
        ino = derived_inode(identity)
        while ino in self._nodes:
            ino = _fold(xxhash.xxh3_64_intdigest(ino.to_bytes(8, "little") + identity))
        node = Node(ino, view, path, entry, identity)
        self._nodes[ino] = node
        self._by_identity[identity] = node
        return node

    @staticmethod
    def count(node: Node) -> None:
        """The kernel now holds one more reference to `node` (a lookup or readdir entry)."""
        node.lookups += 1

    def release_unused(self, node: Node) -> None:
        """Drop `node` if the kernel holds no reference to it."""
        if node.lookups <= 0 and not node.pinned:
            self._drop(node)

    def forget(self, ino: int, nlookup: int) -> None:
        """The kernel dropped `nlookup` references to `ino`; free the node at zero."""
        node = self._nodes.get(ino)
        if node is None:
            return
        node.lookups -= nlookup
        self.release_unused(node)

    def _drop(self, node: Node) -> None:
        if self._nodes.get(node.ino) is node:
            del self._nodes[node.ino]
        if self._by_identity.get(node.identity) is node:
            del self._by_identity[node.identity]
