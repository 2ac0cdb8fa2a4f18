"""Statistics layer: counts the requests and bytes that reach the bottom backend.

Placed just above the bottom backend (below retry and the concurrency limit), it sees
every real request, retries included, and so gives the figures a bill is made of:
PUT (`put`, `put_if_absent`), GET (`get`, `get_range`), HEAD (`exists`), DELETE
(`delete`, and one per 1000 keys of `delete_many`, S3's DeleteObjects batch) and LIST
(one per 1000 keys listed, S3's page size; an empty listing is one request). A request
counts when it is made, even if it then fails; bytes down count on success.

Counters live under one lock. `snapshot()` returns an immutable `RequestStats`;
subtracting two snapshots gives the figures of the work in between (a session).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields

from blockstore.backend import Backend, Layer

LIST_PAGE = 1000
DELETE_BATCH = 1000


@dataclass(frozen=True, slots=True)
class RequestStats:
    """Request counts by type and bytes moved; supports `a - b`, `a + b`, `to_dict()`."""

    puts: int = 0
    gets: int = 0
    heads: int = 0
    deletes: int = 0
    lists: int = 0
    bytes_up: int = 0
    bytes_down: int = 0

    @property
    def requests(self) -> int:
        """All requests of every type."""
        return self.puts + self.gets + self.heads + self.deletes + self.lists

    def __sub__(self, other: RequestStats) -> RequestStats:
        return RequestStats(
            *(getattr(self, f.name) - getattr(other, f.name) for f in fields(self))
        )

    def __add__(self, other: RequestStats) -> RequestStats:
        return RequestStats(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(self))
        )

    def to_dict(self) -> dict[str, int]:
        """A JSON-able dict of the counters."""
        return asdict(self)


class StatsLayer(Layer):
    """Count requests and bytes passing through to `inner` (see the module docstring)."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self._lock = threading.Lock()
        self._counts = dict.fromkeys((f.name for f in fields(RequestStats)), 0)

    def snapshot(self) -> RequestStats:
        """The counters now, as an immutable value."""
        with self._lock:
            return RequestStats(**self._counts)

    def _add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def _got(self, data: bytes) -> bytes:
        self._add("bytes_down", len(data))
        return data

    def get(self, key: str) -> bytes:
        self._add("gets")
        return self._got(self.inner.get(key))

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        self._add("gets")
        return self._got(self.inner.get_range(key, offset, length))

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            self._counts["puts"] += 1
            self._counts["bytes_up"] += len(data)
        self.inner.put(key, data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        with self._lock:
            self._counts["puts"] += 1
            self._counts["bytes_up"] += len(data)
        return self.inner.put_if_absent(key, data)

    def exists(self, key: str) -> bool:
        self._add("heads")
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self._add("deletes")
        self.inner.delete(key)

    def delete_many(self, keys: Iterable[str]) -> None:
        batch = list(keys)
        self._add("deletes", -(-len(batch) // DELETE_BATCH))
        self.inner.delete_many(batch)

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        self._add("lists")
        for count, item in enumerate(self.inner.list(prefix)):
            if count and count % LIST_PAGE == 0:
                self._add("lists")
            yield item
