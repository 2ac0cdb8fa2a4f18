"""Cache layer: a size-bounded on-disk LRU of whole immutable objects.

Theory of operation:

* What is cached. Only keys accepted by `cacheable` (default: ``blocks/`` and
  ``trees/``, which are content-named and never rewritten), in their stored form
  (already compressed and encrypted: the cache holds no plaintext). Control objects
  (lease, config, snapshots) always go to the backend.
* Files. An object lives in ``DIR/<h[:2]>/<h>`` where h = BLAKE2b-128 of its key,
  as ``xxh3-128(data) || data``; a file that fails its checksum (torn by a crash,
  damaged on disk) is dropped and read again from below, never served. Files are
  written to a temp name and renamed, and are not fsynced: losing them loses only
  cache.
* LRU state. An OrderedDict name -> size in access order, rebuilt on open from the
  files' mtimes (hits touch the mtime), so the cache survives restarts. Adding past
  `max_bytes` evicts least recently used files. Objects over a quarter of the cache
  are not cached.
* Writes are write-through: `put` stores below first, then caches. Reads fill the
  cache on a miss; `get_range` is served from a cached whole object when present.
* Staleness. One lock guards the LRU, the file renames and unlinks, and a mutation
  counter per stripe of names. A fill records its stripe's counter before reading
  below and is installed only if no put or delete of that stripe happened meanwhile;
  put and delete update the cache (under the lock) only after the backend call
  returned. So once `delete` returns, no copy of the key is or will be cached.
* Failures of the cache itself (disk full, permissions) are logged and turn into
  misses; they never fail a request.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import xxhash

from blockstore.backend import Backend, Layer

log = logging.getLogger(__name__)
_DIGEST = 16
_STRIPES = 256
_TMP_PREFIX = ".tmp-"


def immutable_key(key: str) -> bool:
    """The default `cacheable` predicate: content-named block and tree objects."""
    return key.startswith(("blocks/", "trees/"))


class CacheLayer(Layer):
    """Cache whole objects of `inner` under `directory`, at most `max_bytes` of them."""

    def __init__(
        self,
        inner: Backend,
        directory: str | Path,
        max_bytes: int,
        *,
        cacheable: Callable[[str], bool] = immutable_key,
    ) -> None:
        super().__init__(inner)
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._cacheable = cacheable
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, int] = OrderedDict()
        self._total = 0
        self._epochs = [0] * _STRIPES
        os.makedirs(self.directory, exist_ok=True)
        self._rebuild()

    # -- bookkeeping (callers hold no lock unless noted) ------------------------------

    @staticmethod
    def _name(key: str) -> str:
        return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()

    def _path(self, name: str) -> Path:
        return self.directory / name[:2] / name

    @staticmethod
    def _stripe(name: str) -> int:
        return int(name[:2], 16)

    def _rebuild(self) -> None:
        """Recreate the LRU order from the files on disk (oldest mtime first)."""
        found: list[tuple[float, str, int]] = []
        for sub in os.scandir(self.directory):
            if not sub.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(sub.path):
                if entry.name.startswith(_TMP_PREFIX):
                    self._unlink(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat()
                    found.append((st.st_mtime, entry.name, st.st_size))
        found.sort()
        with self._lock:
            for _, name, size in found:
                self._entries[name] = size
                self._total += size
            self._evict_locked()

    def _evict_locked(self) -> None:
        while self._total > self.max_bytes and self._entries:
            name, size = self._entries.popitem(last=False)
            self._total -= size
            self._unlink(self._path(name))

    def _forget_locked(self, name: str) -> None:
        size = self._entries.pop(name, None)
        if size is not None:
            self._total -= size
            self._unlink(self._path(name))

    @staticmethod
    def _unlink(path: Path) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cache: cannot remove %s: %s", path, exc.strerror)

    # -- cache file I/O -------------------------------------------------------------

    def _read(self, name: str) -> bytes | None:
        """The cached object `name`, or None (a miss, or a damaged file now dropped)."""
        with self._lock:
            if name not in self._entries:
                return None
            self._entries.move_to_end(name)
        path = self._path(name)
        try:
            with open(path, "rb") as f:
                stored = f.read()
            os.utime(path)
        except OSError:
            stored = b""
        data = stored[_DIGEST:]
        if len(stored) < _DIGEST or xxhash.xxh3_128_digest(data) != stored[:_DIGEST]:
            with self._lock:
                self._forget_locked(name)
            return None
        return data

    def _install(self, name: str, data: bytes, epoch: int | None) -> None:
        """Cache `data` as `name`.

        A fill passes the stripe `epoch` it saw before reading below and is dropped if
        a mutation happened since; a write-through after a mutation passes None and
        bumps the stripe, invalidating fills in flight.
        """
        size = _DIGEST + len(data)
        temp = self._write_temp(name, data) if size <= self.max_bytes // 4 else None
        path = self._path(name)
        with self._lock:
            stripe = self._stripe(name)
            if epoch is None:
                self._epochs[stripe] += 1
                self._forget_locked(name)
            elif epoch != self._epochs[stripe]:
                if temp is not None:
                    self._unlink(temp)  # a put or delete raced with this fill
                return
            if temp is None:
                return
            try:
                os.replace(temp, path)
            except OSError as exc:
                log.warning("cache: cannot install %s: %s", path, exc.strerror)
                self._unlink(temp)
                return
            self._total += size - self._entries.pop(name, 0)
            self._entries[name] = size
            self._evict_locked()

    def _write_temp(self, name: str, data: bytes) -> Path | None:
        """Write a cache file for `data` under a temp name; None if the disk refuses."""
        temp = self.directory / name[:2] / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            os.makedirs(temp.parent, exist_ok=True)
            with open(temp, "wb") as f:
                f.write(xxhash.xxh3_128_digest(data))
                f.write(data)
        except OSError as exc:
            log.warning("cache: cannot write %s: %s", temp, exc.strerror)
            self._unlink(temp)
            return None
        return temp

    def _invalidate(self, names: Iterable[str]) -> None:
        with self._lock:
            for name in names:
                self._epochs[self._stripe(name)] += 1
                self._forget_locked(name)

    # -- Backend --------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        if not self._cacheable(key):
            return self.inner.get(key)
        name = self._name(key)
        data = self._read(name)
        if data is None:
            with self._lock:
                epoch = self._epochs[self._stripe(name)]
            data = self.inner.get(key)
            self._install(name, data, epoch)
        return data

    def get_many(self, keys: Sequence[str]) -> list[bytes]:
        """Cached objects from disk; the misses from below in one batch, then cached."""
        names = [self._name(key) if self._cacheable(key) else None for key in keys]
        out = [b""] * len(keys)
        misses = []
        for i, name in enumerate(names):
            data = self._read(name) if name is not None else None
            if data is None:
                misses.append(i)
            else:
                out[i] = data
        if not misses:
            return out
        with self._lock:
            epochs = [
                self._epochs[self._stripe(name)] if (name := names[i]) is not None else 0
                for i in misses
            ]
        fetched = self.inner.get_many([keys[i] for i in misses])
        for i, epoch, data in zip(misses, epochs, fetched, strict=True):
            out[i] = data
            if (name := names[i]) is not None:
                self._install(name, data, epoch)
        return out

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if self._cacheable(key):
            data = self._read(self._name(key))
            if data is not None:
                return data[offset : offset + length]
        return self.inner.get_range(key, offset, length)

    def exists(self, key: str) -> bool:
        if self._cacheable(key):
            with self._lock:
                if self._name(key) in self._entries:
                    return True
        return self.inner.exists(key)

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)
        if self._cacheable(key):
            self._install(self._name(key), data, None)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        stored = self.inner.put_if_absent(key, data)
        if stored and self._cacheable(key):
            self._install(self._name(key), data, None)
        return stored

    def delete(self, key: str) -> None:
        self.inner.delete(key)
        if self._cacheable(key):
            self._invalidate([self._name(key)])

    def delete_many(self, keys: Iterable[str]) -> None:
        batch = list(keys)
        self.inner.delete_many(batch)
        self._invalidate(self._name(key) for key in batch if self._cacheable(key))

    def cached_bytes(self) -> int:
        """Bytes the cache holds on disk now (for stats and tests)."""
        with self._lock:
            return self._total
