"""The volume: a versioned, deduplicated file tree stored in a block-store stack.

Public API (everything else in this package is internal):
- `open_volume(url, ...)` / `Volume`: one open store; snapshots, namespaces, transactions;
- `Transaction`: a writable overlay on the newest snapshot, committed as a new snapshot;
- `Namespace`: a (read-only or transaction-owned) view of one snapshot's tree;
- `TreeEntry`, `Content`, `Snapshot`: the objects the namespace is made of;
- `FileBuilder` / `FileReader`: file content in and out (`Copy`: a write's range that
  copies a stored file, whose whole blocks are reused by id);
- `Lease`: the one-writer-per-store lease;
- `VolumeParams`, `ChunkParams`: the store parameters fixed at `init`.
See docs/STORE.md for the on-bucket format and the commit protocol.
"""

from blockstore.volume.chunker import ChunkParams
from blockstore.volume.files import Copy, FileBuilder, FileReader, WrittenFile
from blockstore.volume.lease import Lease, LeaseHeldError, LeaseLostError
from blockstore.volume.objects import Content, TreeEntry
from blockstore.volume.snapshots import Snapshot
from blockstore.volume.transaction import (
    RESERVED_ROOT_NAME,
    MissingObjectsError,
    Transaction,
)
from blockstore.volume.tree import NEEDS_IO, Namespace, NamespaceError
from blockstore.volume.volume import Volume, VolumeParams, open_volume

__all__ = [
    "NEEDS_IO",
    "RESERVED_ROOT_NAME",
    "ChunkParams",
    "Content",
    "Copy",
    "FileBuilder",
    "FileReader",
    "Lease",
    "LeaseHeldError",
    "LeaseLostError",
    "MissingObjectsError",
    "Namespace",
    "NamespaceError",
    "Snapshot",
    "Transaction",
    "TreeEntry",
    "Volume",
    "VolumeParams",
    "WrittenFile",
    "open_volume",
]
