"""An in-process backend: a dict under a lock (`memory://` store URLs and tests)."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator

from blockstore.backend import Backend, NotFoundError, Properties


class MemoryBackend(Backend):
    """Objects kept in a dict; every operation is atomic under one lock."""

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @property
    def properties(self) -> Properties:
        return Properties(connections=8, conditional_put=True, range_reads=True)

    def get(self, key: str) -> bytes:
        with self._lock:
            try:
                return self._objects[key]
            except KeyError:
                raise NotFoundError(f"{key}: not found", key=key) from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self.get(key)[offset : offset + length]

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            self._objects[key] = bytes(data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        with self._lock:
            if key in self._objects:
                return False
            self._objects[key] = bytes(data)
            return True

    def exists(self, key: str) -> bool:
        with self._lock:
            return key in self._objects

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(key, None)

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        with self._lock:
            keys = sorted(self._objects)
            start = bisect.bisect_left(keys, prefix)
            listing = []
            for key in keys[start:]:
                if not key.startswith(prefix):
                    break
                listing.append((key, len(self._objects[key])))
        yield from listing
