"""Limit layer: a semaphore bounding how many requests reach the inner backend at once.

Sits above the statistics and the bottom backend so at most `connections` requests
are in flight (matching the S3 client's connection pool, so no thread blocks inside
urllib3 holding a half-built request). A listing takes a slot only while fetching
each item, never while the caller holds the iterator, so a caller that issues gets
while iterating a listing cannot deadlock the layer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import TypeVar

from blockstore.backend import Backend, Layer, Properties

T = TypeVar("T")
_END = object()


class LimitLayer(Layer):
    """Run at most `connections` inner requests concurrently."""

    def __init__(self, inner: Backend, connections: int) -> None:
        super().__init__(inner)
        if connections < 1:
            raise ValueError("LimitLayer needs at least one connection")
        self.connections = connections
        self._slots = threading.BoundedSemaphore(connections)

    @property
    def properties(self) -> Properties:
        inner = self.inner.properties
        return replace(inner, connections=min(inner.connections, self.connections))

    def _call(self, fn: Callable[..., T], *args: object) -> T:
        with self._slots:
            return fn(*args)

    def get(self, key: str) -> bytes:
        return self._call(self.inner.get, key)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self._call(self.inner.get_range, key, offset, length)

    def put(self, key: str, data: bytes) -> None:
        self._call(self.inner.put, key, data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self._call(self.inner.put_if_absent, key, data)

    def exists(self, key: str) -> bool:
        return self._call(self.inner.exists, key)

    def delete(self, key: str) -> None:
        self._call(self.inner.delete, key)

    def delete_many(self, keys: Iterable[str]) -> None:
        self._call(self.inner.delete_many, keys)

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        items = iter(self.inner.list(prefix))
        while True:
            with self._slots:
                item = next(items, _END)
            if item is _END:
                return
            yield item  # type: ignore[misc]
