"""Content-addressed objects over one `Backend`: blocks, tree and list objects.

Theory of operation: an object's key is derived from its plaintext (blockid.py), so
storing is idempotent and dedup is a lookup: `put_*` first asks whether the key is
already present (through the pack layer's local index when there is one, which answers
without a request) and uploads only when it is not. Two threads storing the same new
block at once are collapsed by an in-flight set. A block another thread is still
uploading counts as present; that upload may yet fail, which is why a transaction
re-checks every block it references after the final flush, before its snapshot is
written (transaction.py), instead of trusting the answer given here.

Reads are verified, as cheaply as the stack allows: a store of format 2 checks every
object against the XXH3-64 its compression header carries (layers/compress.py), an
encrypted store's objects are authenticated by AES-GCM with the key as associated data
(which binds the content to its id); only a format-1 unencrypted store, or one without
compression, has nothing else that would notice a flipped byte, so there `get_block`
and `get_tree` re-hash what they fetch (SHA-256, 0.5 CPU-s per GiB) and compare with
the id. `fsck --read-data` re-hashes every id whatever the stack.

Counters (`IngestCounters`) record what was stored and what was deduplicated; they feed
the snapshot's statistics.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from blockstore.backend import Backend, IntegrityError, Layer
from blockstore.volume.blockid import BlockHasher, block_key, tree_key


@dataclass(slots=True)
class IngestCounters:
    """What a writer stored (new) and what it found already present (dedup)."""

    blocks_new: int = 0
    bytes_new: int = 0
    blocks_dedup: int = 0
    bytes_dedup: int = 0
    trees_new: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class ObjectStore:
    """Stores and fetches content-addressed objects; thread-safe."""

    def __init__(self, backend: Backend, hasher: BlockHasher) -> None:
        self.backend = backend
        self.hasher = hasher
        self.counters = IngestCounters()
        self._probe = _index_backend(backend)
        self._verify_reads = not hasher.keyed and not _checks_content(backend)
        self._inflight: set[str] = set()
        self._lock = threading.Lock()

    def put_block(self, data: bytes) -> bytes:
        """Store one data block (unless present); return its id."""
        block_id = self.hasher.digest(data)
        stored = self._put_once(block_key(block_id), data)
        with self._lock:
            if stored:
                self.counters.blocks_new += 1
                self.counters.bytes_new += len(data)
            else:
                self.counters.blocks_dedup += 1
                self.counters.bytes_dedup += len(data)
        return block_id

    def put_blocks(self, chunks: Sequence[bytes]) -> list[bytes]:
        """`put_block` of a run of blocks: one presence check and one append per run.

        What a builder stores for each run of chunks; per block only the hash and
        the compression are left (the locks, the index lookup and the pack append
        are per run).
        """
        ids = [self.hasher.digest(chunk) for chunk in chunks]
        keys = [block_key(block_id) for block_id in ids]
        stored = self._put_many(keys, chunks)
        new_bytes = sum(len(chunks[i]) for i in stored)
        with self._lock:
            counters = self.counters
            counters.blocks_new += len(stored)
            counters.bytes_new += new_bytes
            counters.blocks_dedup += len(chunks) - len(stored)
            counters.bytes_dedup += sum(map(len, chunks)) - new_bytes
        return ids

    def count_reused(self, blocks: int, length: int) -> None:
        """Count blocks a writer reused by id (copies of stored blocks) as deduplicated."""
        if blocks:
            with self._lock:
                self.counters.blocks_dedup += blocks
                self.counters.bytes_dedup += length

    def put_tree(self, data: bytes) -> bytes:
        """Store one tree or list object (unless present); return its id."""
        tree_id = self.hasher.digest(data)
        self.store_tree(tree_id, data)
        return tree_id

    def store_tree(self, tree_id: bytes, data: bytes) -> None:
        """Store a tree or list object whose id the caller computed (unless present)."""
        if self._put_once(tree_key(tree_id), data):
            with self._lock:
                self.counters.trees_new += 1

    def get_block(self, block_id: bytes, length: int) -> bytes:
        """Fetch a block; check its length and (unencrypted stores) its content hash."""
        return self.get_blocks([(block_id, length)])[0]

    def get_blocks(self, blocks: Sequence[tuple[bytes, int]]) -> list[bytes]:
        """`get_block` of each (id, length), fetched as one batch (`Backend.get_many`)."""
        keys = [block_key(block_id) for block_id, _length in blocks]
        found = self.backend.get_many(keys)
        for key, (block_id, length), data in zip(keys, blocks, found, strict=True):
            if len(data) != length:
                raise IntegrityError(
                    f"{key}: block is {len(data)} bytes, its file expects {length}", key=key
                )
            self._check(key, block_id, data)
        return found

    def get_tree(self, tree_id: bytes) -> bytes:
        """Fetch a tree or list object, checked like a block."""
        key = tree_key(tree_id)
        data = self.backend.get(key)
        self._check(key, tree_id, data)
        return data

    def _check(self, key: str, object_id: bytes, data: bytes) -> None:
        if self._verify_reads and self.hasher.digest(data) != object_id:
            raise IntegrityError(f"{key}: content does not match its id", key=key)

    def has(self, key: str) -> bool:
        """Whether `key` is stored (or being stored), asked as cheaply as possible."""
        return self._probe.exists(key)

    def has_many(self, keys: Sequence[str]) -> list[bool]:
        """`has` of each key, in one batch."""
        return self._probe.exists_many(keys)

    def _put_many(self, keys: list[str], datas: Sequence[bytes]) -> list[int]:
        """`_put_once` of a batch; return the indices of the objects stored now."""
        mine = []  # in flight for this call (a key twice in the batch: the first)
        with self._lock:
            for i, key in enumerate(keys):
                if key not in self._inflight:
                    self._inflight.add(key)
                    mine.append(i)
        try:
            present = self._probe.exists_many([keys[i] for i in mine])
            new = [i for i, found in zip(mine, present, strict=True) if not found]
            if new:
                self.backend.put_many([(keys[i], datas[i]) for i in new])
            return new
        finally:
            with self._lock:
                for i in mine:
                    self._inflight.discard(keys[i])

    def _put_once(self, key: str, data: bytes) -> bool:
        with self._lock:
            if key in self._inflight:
                return False
            self._inflight.add(key)
        try:
            if self._probe.exists(key):
                return False
            self.backend.put(key, data)
            return True
        finally:
            with self._lock:
                self._inflight.discard(key)


def _checks_content(backend: Backend) -> bool:
    """Whether the stack checks every object it returns (format 2's checksums)."""
    from blockstore.layers.compress import CompressLayer

    found = backend.find_layer(CompressLayer) if isinstance(backend, Layer) else None
    return isinstance(found, CompressLayer) and found.checks_content


def _index_backend(backend: Backend) -> Backend:
    """The pack layer inside `backend` if there is one (its `exists` needs no request)."""
    if isinstance(backend, Layer):
        from blockstore.layers.pack import PackLayer

        found = backend.find_layer(PackLayer)
        if found is not None:
            return found
    return backend
