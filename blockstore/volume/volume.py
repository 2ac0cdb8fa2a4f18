"""The volume: one store's namespace, snapshots and file pipelines, over a layer stack.

Theory of operation. A `Volume` wraps the top of a store stack (`backend`: objects are
compressed and encrypted one by one, then packed) and, when it may write, the lease on
`raw`. It hands out:
- `Transaction`s (writable overlays on the newest snapshot; commits are serialised by
  `commit_lock` so concurrent sessions of one process rebase onto each other),
- read-only `Namespace`s of any snapshot (what read sessions, `ls`, `cat` and FUSE use),
- `FileBuilder`s and `FileReader`s (file content in and out).
The volume core is synchronous and thread-safe; async callers go through an executor.
CPU-heavy per-block work (hashing, compression, encryption) runs on `pool`, a small
thread pool (the C libraries release the GIL), bounded per file by the builder.

Readers beside a writer. A volume opened read-only (a FUSE mount, a serve process)
may live for days while another process commits to the same store. It never caches
the snapshot list (`snapshot_ids` is one LIST each time), and the objects of a snapshot
committed since it opened sit in packs its index has not seen: the pack layer re-reads
the bucket's pack list when a read misses the index (layers/pack.py), so such a
snapshot reads at once, never as EIO.

Public API: the methods below. The attributes `objects`, `snapshots`, `trees`, `pool`
and `backend` are the volume package's own plumbing (transactions, gc, fsck, stats);
code outside `blockstore.volume` uses the methods.

`open_volume(url, ...)` opens a store through `blockstore.factory.open_store` with the
pack layer and returns a volume that owns (and closes) the stack.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blockstore.backend import Backend, Layer, StoreError
from blockstore.volume.blockid import BlockHasher
from blockstore.volume.chunker import ChunkParams
from blockstore.volume.files import FileBuilder, FileReader
from blockstore.volume.lease import Lease
from blockstore.volume.objects import Content, TreeEntry
from blockstore.volume.objectstore import ObjectStore
from blockstore.volume.snapshots import Snapshot, SnapshotStore, empty_root
from blockstore.volume.transaction import Transaction
from blockstore.volume.tree import Namespace, TreeCache

if TYPE_CHECKING:
    from blockstore.factory import StoreStack
    from blockstore.layers.pack import PackLayer

DEFAULT_PACK_SIZE = 16 << 20


@dataclass(frozen=True, slots=True)
class VolumeParams:
    """The volume's store parameters, fixed at `init` (kept in `config.volume`)."""

    chunk: ChunkParams = field(default_factory=ChunkParams)
    pack_size: int = DEFAULT_PACK_SIZE
    md5: bool = False

    @classmethod
    def from_config(cls, volume: Mapping[str, Any]) -> VolumeParams:
        """Read a store's `config.volume` (defaults for what it does not say)."""
        return cls(
            chunk=ChunkParams.from_config(volume),
            pack_size=int(volume.get("pack_size", DEFAULT_PACK_SIZE)),
            md5=bool(volume.get("md5", False)),
        )

    def to_config(self) -> dict[str, Any]:
        """The `config.volume` dict `init` records."""
        return {"chunker": self.chunk.to_config(), "pack_size": self.pack_size, "md5": self.md5}


class Volume:
    """One open store seen as a versioned file tree (see the module docstring)."""

    def __init__(
        self,
        backend: Backend,
        *,
        params: VolumeParams | None = None,
        id_key: bytes | None = None,
        stack: StoreStack | None = None,
        host: str | None = None,
        workers: int = 2,
        id_hash: str = "blake3",
    ) -> None:
        self.backend = backend
        self.params = params or VolumeParams()
        self.chunk_params = self.params.chunk.with_secret_seed(id_key)
        self.stack = stack
        self.host = host or socket.gethostname()
        self.objects = ObjectStore(backend, BlockHasher(id_key, id_hash))
        self.snapshots = SnapshotStore(backend)
        self.trees = TreeCache()
        self.commit_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="volume")
        self.lease: Lease | None = None

    @classmethod
    def from_stack(cls, stack: StoreStack, **kwargs: Any) -> Volume:
        """A volume over an open store stack (which it will close)."""
        params = VolumeParams.from_config(stack.config.volume)
        id_hash = "blake3" if stack.config.format_version >= 3 else "sha256"
        return cls(
            stack.backend, params=params, id_key=stack.keys.id_key, stack=stack,
            id_hash=id_hash, **kwargs,
        )  # fmt: skip

    # -- snapshots and namespaces --------------------------------------------------------

    def latest(self) -> Snapshot | None:
        """The newest snapshot, or None for a store nothing was committed to yet."""
        return self.snapshots.latest()

    def snapshot_ids(self) -> list[str]:
        """Every snapshot id, oldest first (listed afresh: one LIST per 1000 snapshots)."""
        return self.snapshots.ids()

    def load_snapshot(self, snapshot_id: str) -> Snapshot:
        """The snapshot with exactly this id.

        Raises NotFoundError if it is gone (forgotten since it was listed) and
        IntegrityError if its object is damaged.
        """
        return self.snapshots.load(snapshot_id)

    def snapshot(self, snapshot_id: str) -> Snapshot:
        """The snapshot `snapshot_id`, or the newest one whose id starts with it."""
        if snapshot_id in ("latest", ""):
            found = self.latest()
            if found is None:
                raise StoreError("the store has no snapshots yet", key="snapshots/")
            return found
        ids = [i for i in self.snapshots.ids() if i.startswith(snapshot_id)]
        if not ids:
            raise StoreError(f"no snapshot {snapshot_id!r}", key="snapshots/" + snapshot_id)
        return self.snapshots.load(ids[-1])

    def namespace(self, snap: Snapshot | None) -> Namespace:
        """A fresh namespace of `snap` (an empty tree for None)."""
        root = snap.root if snap is not None else empty_root()
        return Namespace(self.objects, self.trees, root)

    def tree_entries(self, tree_id: bytes) -> tuple[TreeEntry, ...]:
        """The entries of the tree object `tree_id`, sorted by name.

        Decoded once and shared through the volume's tree cache: the tuple is the
        cache's own, so callers keep it as it is. Unlike a `Namespace`, this remembers
        nothing per caller, which suits a reader that visits many trees (the mount).
        """
        return self.trees.get(self.objects, tree_id)

    def begin(self) -> Transaction:
        """A new transaction on the newest snapshot."""
        return Transaction(self, self.latest())

    @property
    def pack_layer(self) -> PackLayer | None:
        """The pack layer of the stack, if there is one (gc, fsck and stats use its index)."""
        from blockstore.layers.pack import PackLayer

        found = self.backend.find_layer(PackLayer) if isinstance(self.backend, Layer) else None
        return found if isinstance(found, PackLayer) else None

    def acquire_lease(self, *, force: bool = False) -> None:
        """Become the store's writer: take the lease, then catch up with the bucket.

        Packs written by the previous writer (another process, maybe another machine)
        are indexed before this process deduplicates against its index.
        """
        if self.stack is None:
            return
        if self.lease is None:
            self.lease = Lease(self.stack.raw)
        self.lease.acquire(force=force)
        pack = self.pack_layer
        if pack is not None:
            pack.sync_from_bucket()

    def release_lease(self) -> None:
        """Stop being the writer (no-op if not)."""
        lease, self.lease = self.lease, None
        if lease is not None:
            lease.release()

    def check_writable(self) -> None:
        """Raise unless this volume may commit (its lease, when it has one, is valid)."""
        if self.lease is not None:
            self.lease.verify()

    # -- file content ----------------------------------------------------------------------

    def new_file(self) -> FileBuilder:
        """A builder for one new file's content (see files.py)."""
        return FileBuilder(self.objects, self.chunk_params, self.pool, md5=self.params.md5)

    def reader(self, content: Content, *, cache_blocks: int = 8) -> FileReader:
        """A reader of `content` keeping its last `cache_blocks` blocks (see files.py)."""
        return FileReader(self.objects, content, cache_blocks=cache_blocks)

    # -- figures -------------------------------------------------------------------------

    def packed_bytes(self) -> int:
        """Bytes of the packs the store holds (0 without a pack layer): what `df` shows."""
        pack = self.pack_layer
        return sum(info.size for info in pack.packs()) if pack is not None else 0

    def request_stats(self) -> dict[str, int]:
        """Backend request counters since the stack was opened (empty without a stack)."""
        if self.stack is None:
            return {}
        return self.stack.stats.snapshot().to_dict()

    def close(self) -> None:
        """Release the lease, stop the pool and close the stack (if this volume owns it)."""
        try:
            self.pool.shutdown(wait=True)
            self.release_lease()
        finally:
            if self.stack is not None:
                self.stack.close()


def open_volume(
    url: str,
    *,
    passphrase: bytes | None = None,
    key_file: str | None = None,
    state_dir: str | Path | None = None,
    read_only: bool = False,
    **options: Any,
) -> Volume:
    """Open the store at `url` (with the pack layer) as a volume.

    A local-directory store gets no block cache unless `cache_size` asks for one: its
    packs are already on local disk, so a write-through cache would only store every
    block a second time (1.8 of 4.8 CPU-seconds per GiB written, bench/micro
    test_store_pipeline) and serve reads no faster than a range read of the pack.
    """
    from blockstore.factory import open_store
    from blockstore.layers.pack import pack_layer_factory
    from blockstore.urls import parse_store_url

    if parse_store_url(url).scheme == "file":
        options.setdefault("cache_size", 0)
    stack = open_store(
        url, passphrase=passphrase, key_file=key_file, state_dir=state_dir,
        pack_layer=pack_layer_factory, read_only=read_only, **options,
    )  # fmt: skip
    try:
        return Volume.from_stack(stack, workers=min(4, os.cpu_count() or 2))
    except BaseException:
        stack.close()
        raise
