"""Pack cache layer: whole pack objects kept on local disk, range reads served from them.

Theory of operation. It sits below the pack layer (pack -> PACK CACHE -> retry -> ...
-> backend), where every block and tree travels inside a `packs/<64 hex>` object of
about 16 MiB and is read back with a range GET. Caching those packs instead of the
objects above them costs one file written per 16 MiB uploaded: the block cache above
the pack layer wrote a file per 64 KiB block, 1.8 CPU-s per GiB pushed (docs/
PERFORMANCE.md), for the same benefit: the next delta push's basis and the pulls of
what was just pushed read from local disk instead of the bucket.

* What is cached: `packs/` keys only, in their stored form (compressed and encrypted
  objects; no plaintext). Packs are written once and never rewritten, so a cached
  pack never goes stale; `delete` (gc) drops it. Every other key passes through.
* When: write-through on `put` (after the upload succeeded) and on a whole-pack `get`.
  A range read that misses is served from below and caches nothing (a pull of an old
  pack reads a few objects of it, not 16 MiB).
* Files: `DIR/<pack name>` holding `xxh3-128(data) || data`, written to a temp name
  and renamed, not fsynced. A pack this process wrote or has checked since it opened is
  served by `pread` at once; any other file (left by an earlier process, maybe torn by
  a crash) is checked whole on its first read (16 MiB at ~30 GB/s) and dropped, never
  served, if it fails. Objects read from a pack are checked again one by one above
  (compression checksum or AES-GCM).
* Size: LRU by total bytes (`max_bytes`), rebuilt from the files' mtimes on open
  (reads touch the mtime). Failures of the cache itself are logged and become misses.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import xxhash

from blockstore.backend import Backend, Layer

log = logging.getLogger(__name__)
PACK_PREFIX = "packs/"
_DIGEST = 16
_TMP_PREFIX = ".tmp-"


class PackCacheLayer(Layer):
    """Cache whole `packs/` objects of `inner` under `directory` (see the module docstring)."""

    def __init__(self, inner: Backend, directory: str | Path, max_bytes: int) -> None:
        super().__init__(inner)
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, int] = OrderedDict()  # name -> file size, LRU order
        self._checked: set[str] = set()  # files known good: written or verified here
        self._checking: dict[str, threading.Lock] = {}  # one whole-file check per pack
        self._total = 0
        os.makedirs(self.directory, exist_ok=True)
        self._rebuild()

    def _rebuild(self) -> None:
        """Recreate the LRU order from the files on disk (oldest mtime first)."""
        found: list[tuple[float, str, int]] = []
        for entry in os.scandir(self.directory):
            if entry.name.startswith(_TMP_PREFIX):
                self._unlink(entry.name)
            elif entry.is_file(follow_symlinks=False):
                st = entry.stat()
                found.append((st.st_mtime, entry.name, st.st_size))
        found.sort()
        with self._lock:
            for _mtime, name, size in found:
                self._entries[name] = size
                self._total += size
            self._evict_locked()

    @staticmethod
    def _cached_name(key: str) -> str | None:
        if not key.startswith(PACK_PREFIX):
            return None
        name = key[len(PACK_PREFIX) :]
        return name if name and "/" not in name and not name.startswith(".") else None

    def _evict_locked(self) -> None:
        while self._total > self.max_bytes and self._entries:
            name, size = self._entries.popitem(last=False)
            self._total -= size
            self._checked.discard(name)
            self._unlink(name)

    def _forget(self, name: str) -> None:
        with self._lock:
            size = self._entries.pop(name, None)
            self._checked.discard(name)
            if size is not None:
                self._total -= size
                self._unlink(name)

    def _unlink(self, name: str) -> None:
        try:
            os.unlink(self.directory / name)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("pack cache: cannot remove %s: %s", name, exc.strerror)

    # -- cache file I/O -------------------------------------------------------------

    def _usable(self, name: str) -> bool:
        """Whether `name` is cached and good (checked whole once if not written here)."""
        with self._lock:
            if name not in self._entries:
                return False
            self._entries.move_to_end(name)
            if name in self._checked:
                return True
            checking = self._checking.setdefault(name, threading.Lock())
        # A reader fetches several runs of one pack at once: one of them checks the file,
        # the others wait for its verdict instead of each reading the 16 MiB again.
        with checking:
            with self._lock:
                if name in self._checked:
                    return True
                if name not in self._entries:
                    return False
            try:
                stored = (self.directory / name).read_bytes()
            except OSError:
                stored = b""
            good = len(stored) >= _DIGEST and (
                xxhash.xxh3_128_digest(memoryview(stored)[_DIGEST:]) == stored[:_DIGEST]
            )
            if not good:
                log.warning("pack cache: %s is damaged; dropped", name)
                self._forget(name)
            with self._lock:
                if good:
                    self._checked.add(name)
                self._checking.pop(name, None)
        return good

    def _read(self, name: str, offset: int, length: int | None) -> bytes | None:
        """Bytes of a cached pack (None on a miss or a cache failure)."""
        if not self._usable(name):
            return None
        path = self.directory / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if length is None:
                    length = os.fstat(fd).st_size - _DIGEST - offset
                data = os.pread(fd, max(0, length), _DIGEST + offset)
            finally:
                os.close(fd)
            os.utime(path)
        except OSError as exc:
            log.warning("pack cache: cannot read %s: %s", name, exc.strerror)
            self._forget(name)
            return None
        return data

    def _install(self, name: str, data: bytes) -> None:
        size = _DIGEST + len(data)
        if size > self.max_bytes // 4:
            return
        temp = self.directory / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            with open(temp, "wb") as f:
                f.write(xxhash.xxh3_128_digest(data))
                f.write(data)
            os.replace(temp, self.directory / name)
        except OSError as exc:
            log.warning("pack cache: cannot write %s: %s", name, exc.strerror)
            self._unlink(temp.name)
            return
        with self._lock:
            self._total += size - self._entries.pop(name, 0)
            self._entries[name] = size
            self._checked.add(name)
            self._evict_locked()

    # -- Backend --------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        name = self._cached_name(key)
        if name is None:
            return self.inner.get(key)
        data = self._read(name, 0, None)
        if data is None:
            data = self.inner.get(key)
            self._install(name, data)
        return data

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        name = self._cached_name(key)
        if name is not None:
            data = self._read(name, offset, length)
            if data is not None:
                return data
        return self.inner.get_range(key, offset, length)

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)
        name = self._cached_name(key)
        if name is not None:
            self._install(name, data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        stored = self.inner.put_if_absent(key, data)
        name = self._cached_name(key)
        if stored and name is not None:
            self._install(name, data)
        return stored

    def delete(self, key: str) -> None:
        self.inner.delete(key)
        name = self._cached_name(key)
        if name is not None:
            self._forget(name)

    def delete_many(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        self.inner.delete_many(keys)
        for key in keys:
            name = self._cached_name(key)
            if name is not None:
                self._forget(name)
