"""CPU time per store layer, measured by thin timing layers spliced into an open stack.

Theory of operation. `instrument(volume)` puts a `TimedLayer` above every piece of the
volume's layer stack (compress, encrypt, pack, pack cache, retry, limit, stats, the
backend) by re-pointing each layer's `inner`, and wraps the block-id hasher and the
dedup probe (the pack layer, asked directly) of the volume's object store, so the
product's code runs unchanged. Each timed call reads its thread's CPU clock
(`time.thread_time`) before and after; what the timed calls below it spent on the
same thread is subtracted (a per-thread accumulator, saved and restored around each
call), so every stage is charged only its own work, on whichever thread it runs: the
volume's pool (hash, compress, encrypt, pack append), the pack layer's uploaders
(pack cache write-through, the backend's PUT), the store executor (reads). Waiting
(a full upload queue, a GET in flight) costs no CPU and so is charged to no one.
What no timed call covers -- chunking and the builder, the reader, asyncio, executor
hops, the pack layer's sealing on its upload threads -- is the process's CPU minus
the stages.

The clock is thread-local and costs about a microsecond per call: noise next to a
64 KiB block's hashing or compression.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from blockstore.backend import Backend, Layer, Properties
from blockstore.volume import Volume

_T = TypeVar("_T")

STAGE_NAMES = {  # layer class -> stage; the three request layers are one stage
    "CompressLayer": "compress",
    "EncryptLayer": "encrypt",
    "PackLayer": "pack",
    "PackCacheLayer": "pack cache",
    "CacheLayer": "cache",
    "RetryLayer": "requests",
    "LimitLayer": "requests",
    "StatsLayer": "requests",
    "ReadOnlyLayer": "requests",
    "FaultLayer": "requests",
}
HASH_STAGE = "hash"
BACKEND_STAGE = "backend"


class StageClock:
    """Exclusive thread CPU seconds per stage, summed over every thread; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._seconds: dict[str, float] = {}

    def call(self, stage: str, fn: Callable[..., _T], *args: Any) -> _T:
        """Run `fn(*args)`, charging `stage` its thread CPU minus that of timed calls inside."""
        local = self._local
        outer_children = getattr(local, "children", 0.0)
        local.children = 0.0
        start = time.thread_time()
        try:
            return fn(*args)
        finally:
            spent = time.thread_time() - start
            own = spent - local.children
            local.children = outer_children + spent
            with self._lock:
                self._seconds[stage] = self._seconds.get(stage, 0.0) + own

    def snapshot(self) -> dict[str, float]:
        """Seconds per stage so far (subtract two snapshots for a phase)."""
        with self._lock:
            return dict(self._seconds)


class TimedLayer(Layer):
    """Charges every call of the Backend interface on `inner` to `stage` (see above)."""

    def __init__(self, inner: Backend, stage: str, clock: StageClock) -> None:
        super().__init__(inner)
        self.stage = stage
        self.clock = clock

    @property
    def properties(self) -> Properties:
        return self.inner.properties

    def get(self, key: str) -> bytes:
        return self.clock.call(self.stage, self.inner.get, key)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self.clock.call(self.stage, self.inner.get_range, key, offset, length)

    def get_many(self, keys: Sequence[str]) -> list[bytes]:
        return self.clock.call(self.stage, self.inner.get_many, keys)

    def put(self, key: str, data: bytes) -> None:
        self.clock.call(self.stage, self.inner.put, key, data)

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        self.clock.call(self.stage, self.inner.put_many, items)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self.clock.call(self.stage, self.inner.put_if_absent, key, data)

    def exists(self, key: str) -> bool:
        return self.clock.call(self.stage, self.inner.exists, key)

    def exists_many(self, keys: Sequence[str]) -> list[bool]:
        return self.clock.call(self.stage, self.inner.exists_many, keys)

    def delete(self, key: str) -> None:
        self.clock.call(self.stage, self.inner.delete, key)

    def delete_many(self, keys: Iterable[str]) -> None:
        self.clock.call(self.stage, self.inner.delete_many, keys)

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        return self.inner.list(prefix)  # lazy, and only syncs and commits list: not timed

    def flush(self) -> None:
        self.clock.call(self.stage, self.inner.flush)

    def close(self) -> None:
        self.clock.call(self.stage, self.inner.close)


class _TimedHasher:
    """The object store's `BlockHasher` with `digest` charged to the hash stage."""

    def __init__(self, hasher: Any, clock: StageClock) -> None:
        self._hasher = hasher
        self._clock = clock

    def digest(self, data: bytes) -> bytes:
        return self._clock.call(HASH_STAGE, self._hasher.digest, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hasher, name)


def stage_of(node: Backend) -> str:
    """The stage a piece of the stack is charged to."""
    return STAGE_NAMES.get(type(node).__name__, BACKEND_STAGE)


def instrument(volume: Volume) -> StageClock:
    """Splice timing layers into `volume`'s stack and hasher; return their clock.

    The top layer is wrapped where the object store calls it (`objects.backend`, the
    path every block and tree takes); each layer below is wrapped by re-pointing its
    parent's `inner`. Call before the volume is used.
    """
    clock = StageClock()
    objects = volume.objects
    top = objects.backend
    objects.backend = TimedLayer(top, stage_of(top), clock)
    objects.hasher = _TimedHasher(objects.hasher, clock)
    # dedup lookups go straight to the pack layer's index, past the top of the stack
    objects._probe = TimedLayer(objects._probe, stage_of(objects._probe), clock)
    node = top
    while isinstance(node, Layer):
        below = node.inner
        node.inner = TimedLayer(below, stage_of(below), clock)
        node = below
    return clock
