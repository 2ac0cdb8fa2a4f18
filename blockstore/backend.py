"""The one interface of the store stack: a flat map from keys to immutable byte objects.

Theory of operation (s3backer's `struct s3backer_store`, restic's `Backend`):
every piece of the stack implements `Backend`. Bottom pieces (`blockstore.backends.*`:
memory, local directory, S3) do I/O; every other piece is a *layer* that wraps one
inner `Backend` and changes one thing (compression, encryption, packing many small
objects into pack objects, caching, retry, a concurrency limit, statistics, fault
injection). One factory (`blockstore.factory.open_backend`) builds the stack from a
store URL and options. Code above the stack (the volume: chunking, trees, snapshots)
sees only this interface.

Keys are '/'-separated ASCII strings such as ``blocks/3f9a...`` or ``snapshots/<id>``;
a key never starts or ends with '/'. Objects are written once and normally never
rewritten: block, tree and pack objects are content-named; only a few small control
objects (the lease, the store config) are replaced, and only with `put` (whose
overwrite is atomic: readers see the old or the new object, never a mix).

The interface is synchronous and thread-safe: boto3 and file I/O block anyway, and the
async server reaches the store through a bounded executor. Every method may be called
from many threads at once.

Errors: every failure is a `StoreError` carrying an errno. `NotFoundError` (ENOENT)
means the key does not exist. `TransientError` is the only class a retry layer
retries (throttling, 5xx, timeouts, connection resets); anything else is permanent
and surfaces at once with the backend's own error text. `IntegrityError` (EIO) means
an object exists but is corrupt, truncated or fails authentication: never return
wrong or zero data in its place.
"""

from __future__ import annotations

import errno
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass


class StoreError(Exception):
    """A store operation failed; `errno` classifies it for callers and FUSE.

    A backend may pass `errno` to refine the class default with the OS or service's
    own classification (EACCES for a denied request, EROFS for a read-only store, ...).
    """

    errno: int = errno.EIO

    def __init__(self, message: str, *, key: str | None = None, errno: int | None = None) -> None:
        super().__init__(message)
        self.key = key
        if errno is not None:
            self.errno = errno


class NotFoundError(StoreError):
    """The key does not exist."""

    errno = errno.ENOENT


class TransientError(StoreError):
    """A failure worth retrying (throttled, 5xx, timeout, connection reset)."""

    errno = errno.EAGAIN


class IntegrityError(StoreError):
    """The object exists but is corrupt, truncated, tampered with or undecryptable."""

    errno = errno.EIO


class StoreFullError(StoreError):
    """The backend has no room (ENOSPC, quota exceeded)."""

    errno = errno.ENOSPC


class ReadOnlyError(StoreError):
    """A write was attempted on a store opened read-only."""

    errno = errno.EROFS


_KEY_COMPONENT = re.compile(r"[A-Za-z0-9_\-:@,+=~][A-Za-z0-9_.\-:@,+=~]*")


def check_key(key: str) -> str:
    """Return `key` if it is a well-formed store key, else raise StoreError(EINVAL).

    A key is one or more '/'-separated components of ASCII letters, digits and
    `_-.:@,+=~`, none empty and none starting with '.', so every backend can map it to a
    file path that stays inside its root (and '.'-names stay free for temp files).
    """
    if not key or not all(_KEY_COMPONENT.fullmatch(part) for part in key.split("/")):
        raise StoreError(f"invalid store key {key!r}", key=key, errno=errno.EINVAL)
    return key


@dataclass(frozen=True, slots=True)
class Properties:
    """What a backend stack can do (restic's Properties, s3backer's optional ops).

    `connections`: how many requests may usefully run at once.
    `conditional_put`: `put_if_absent` is atomic against other writers (S3 If-None-Match,
    O_EXCL on a local directory); without it the lease is best effort.
    `range_reads`: `get_range` is cheaper than `get` (true for S3 and files).
    """

    connections: int = 1
    conditional_put: bool = False
    range_reads: bool = True


class Backend(ABC):
    """A flat key -> bytes object store (see the module docstring for the contract)."""

    @property
    @abstractmethod
    def properties(self) -> Properties:
        """Capabilities of this backend (layers pass through their inner one's)."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Return the whole object. Raises NotFoundError if absent."""

    @abstractmethod
    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """Return `length` bytes at `offset` (fewer only at the object's end).

        Raises NotFoundError if absent. A layer that transforms whole objects
        (compression, encryption) implements this by reading the whole object.
        """

    def get_many(self, keys: Sequence[str]) -> list[bytes]:
        """Return the whole objects `keys` names, in order (a key may repeat).

        Raises as `get` would for a key that fails (for which one, when several do, is
        unspecified). A backend or layer that can
        fetch several objects in fewer requests overrides this (the pack layer reads
        adjacent objects of one pack with one range read); the default asks for each.
        """
        return [self.get(key) for key in keys]

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, replacing any existing object atomically.

        `data` may be any bytes-like object (the pack layer hands down a bytearray it
        reuses once `put` returns): a backend that keeps it must keep a copy.
        """

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """`put` each (key, data) of `items`, in order.

        A layer that can store a batch for less than one call per object overrides
        this (the pack layer appends a run of blocks under one lock; the compression
        and encryption layers transform the batch and hand it down); the default puts
        each through this object's own `put`, so a layer that transforms objects is
        right without knowing of it.
        """
        for key, data in items:
            self.put(key, data)

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Store `data` only if `key` does not exist; return whether it was stored.

        Atomic against concurrent writers when `properties.conditional_put` is true.
        """

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Return whether `key` exists."""

    def exists_many(self, keys: Sequence[str]) -> list[bool]:
        """`exists` of each key (the pack layer answers a batch under one lock)."""
        return [self.exists(key) for key in keys]

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`. Deleting a missing key is not an error."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Yield (key, stored size) for every key starting with `prefix`, in key order."""

    def delete_many(self, keys: Iterable[str]) -> None:
        """Remove every key in `keys` (missing keys are not an error).

        Backends with a bulk request (S3 DeleteObjects, 1000 keys each) override this;
        the garbage collector calls it so a large sweep costs few requests.
        """
        for key in keys:
            self.delete(key)

    def flush(self) -> None:
        """Make everything written so far durable in the bottom backend.

        Layers that buffer (packing, write-back caches) override this and then call the
        inner flush. The volume calls it before writing a snapshot (the commit point).
        """

    def close(self) -> None:
        """Flush and release resources. The backend must not be used afterwards."""
        self.flush()


class Layer(Backend):
    """A backend that wraps `inner` and, by default, passes every call through.

    Subclasses override only what they change (restic's embedding, zarr's WrapperStore).
    The exception is `get_many`: by default it goes through this layer's own `get` per
    key, so a layer that transforms objects is right without knowing of it; a layer
    overrides it to hand whole batches down (`inner.get_many`, transformed or not).
    """

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    @property
    def properties(self) -> Properties:
        return self.inner.properties

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self.inner.get_range(key, offset, length)

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self.inner.put_if_absent(key, data)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def delete_many(self, keys: Iterable[str]) -> None:
        self.inner.delete_many(keys)

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        return self.inner.list(prefix)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()

    def find_layer(self, cls: type[Backend]) -> Backend | None:
        """Return the nearest layer of type `cls` in this stack (restic's AsBackend)."""
        node: Backend = self
        while True:
            if isinstance(node, cls):
                return node
            if not isinstance(node, Layer):
                return None
            node = node.inner
