"""The pack layer beyond the shared conformance suite: packing, reindex, failures, backpressure."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from blockstore.backend import Backend, Layer, NotFoundError, StoreError
from blockstore.backends.memory import MemoryBackend
from blockstore.layers.fault import FaultLayer, FaultSpec
from blockstore.layers.pack import PackLayer
from blockstore.layers.pack_format import PACK_PREFIX, read_trailer
from blockstore.layers.stats import StatsLayer


def key(n: int, kind: str = "blocks") -> str:
    return f"{kind}/{hashlib.sha256(str(n).encode()).hexdigest()}"


def data(n: int, size: int = 1000) -> bytes:
    return (str(n).encode() * size)[:size]


def packs_in(backend: Backend) -> list[tuple[str, int]]:
    return [(k, s) for k, s in backend.list(PACK_PREFIX) if len(k) == len(PACK_PREFIX) + 64]


def test_objects_travel_in_packs_and_read_back(tmp_path: Path) -> None:
    inner = StatsLayer(MemoryBackend())
    layer = PackLayer(inner, tmp_path, pack_size=10_000)
    for n in range(50):
        layer.put(key(n), data(n))
    layer.put(key(0, "trees"), b"a tree")
    assert layer.get(key(3)) == data(3)  # served before any flush
    layer.flush()
    packs = packs_in(inner)
    assert 5 <= len(packs) <= 6
    assert not list(inner.list("blocks/")) and not list(inner.list("trees/"))
    assert inner.snapshot().puts == len(packs)
    for n in range(50):
        assert layer.get(key(n)) == data(n)
        assert layer.exists(key(n))
    assert layer.get_range(key(7), 10, 5) == data(7)[10:15]
    assert layer.get_range(key(7), 995, 50) == data(7)[995:]
    assert layer.get(key(0, "trees")) == b"a tree"
    listed = [k for k, _ in layer.list("blocks/")]
    assert listed == sorted(key(n) for n in range(50))
    assert [k for k, _ in layer.list()] == sorted([*listed, key(0, "trees")])
    with pytest.raises(NotFoundError):
        layer.get(key(99))
    with pytest.raises(StoreError, match="belong to the pack layer"):
        layer.put(packs[0][0], b"x")
    layer.close()


def test_batches_are_packed_and_found_like_single_objects(tmp_path: Path) -> None:
    """put_many across a pack boundary, exists_many over pending, indexed, absent and
    unpacked keys: the answers `put` and `exists` give one by one."""
    inner = MemoryBackend()
    layer = PackLayer(inner, tmp_path, pack_size=10_000)
    layer.put_many([(key(n), data(n)) for n in range(25)] + [("lease", b"held")])
    layer.put_many([(key(n), data(n)) for n in range(25, 28)])  # pending in memory
    keys = [key(0), key(26), key(99), "lease", "config", key(3, "trees")]
    assert layer.exists_many(keys) == [layer.exists(k) for k in keys]
    assert layer.exists_many(keys) == [True, True, False, True, False, False]
    layer.flush()
    assert len(packs_in(inner)) == 3  # 28,000 bytes in packs of 10,000: sealed mid-batch
    assert [layer.get(key(n)) for n in range(28)] == [data(n) for n in range(28)]
    assert inner.get("lease") == b"held"
    layer.close()


def test_trailer_describes_the_pack(tmp_path: Path) -> None:
    inner = MemoryBackend()
    layer = PackLayer(inner, tmp_path)
    for n in range(3):
        layer.put(key(n), data(n, 100 + n))
    layer.flush()
    [(name, size)] = packs_in(inner)
    created, entries = read_trailer(inner, name[len(PACK_PREFIX) :], size)
    assert created > 0
    assert [(kind, length) for kind, _id, _off, length in entries] == [(0, 100), (0, 101), (0, 102)]
    blob = inner.get(name)
    assert len(name) == len(PACK_PREFIX) + 64  # 256 random bits, not a hash of the bytes
    assert int(name[len(PACK_PREFIX) :], 16)
    assert data(0, 100) not in blob[entries[-1][2] + 102 :]  # the trailer holds no content
    layer.close()


def test_index_rebuilds_from_the_bucket_alone(tmp_path: Path) -> None:
    inner = MemoryBackend()
    first = PackLayer(inner, tmp_path / "a", pack_size=5000)
    for n in range(30):
        first.put(key(n), data(n))
    first.flush()
    second = PackLayer(inner, tmp_path / "b")  # empty state dir: syncs from the bucket
    assert all(second.get(key(n)) == data(n) for n in range(30))
    first.put(key(100), data(100))
    first.flush()
    assert not second.exists(key(100))  # a dedup miss does not look at the bucket
    assert second.get(key(100)) == data(100)  # a read miss does
    assert second.reindex() == len(packs_in(inner))
    assert all(second.get(key(n)) == data(n) for n in range(30))
    first.close()
    second.close()


class _SlowList(Layer):
    """Listings take a moment, as a real LIST request does (widens any race)."""

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        time.sleep(0.01)
        return self.inner.list(prefix)


def test_concurrent_read_misses_index_each_new_pack_once(tmp_path: Path) -> None:
    """A burst of misses (a mount's worker threads) must not register a pack twice:
    gc would take the extra record for an empty pack and delete the pack object."""
    inner = MemoryBackend()
    reader = PackLayer(StatsLayer(_SlowList(inner)), tmp_path / "reader")
    writer = PackLayer(inner, tmp_path / "writer", pack_size=2000)
    for n in range(20):
        writer.put(key(n), data(n))
    writer.flush()
    stats = reader.inner
    assert isinstance(stats, StatsLayer)
    lists = stats.snapshot().lists
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(reader.get, [key(n) for n in range(20)])) == [
            data(n) for n in range(20)
        ]
    names = [info.name for info in reader.packs()]
    assert sorted(names) == sorted(k[len(PACK_PREFIX) :] for k, _ in packs_in(inner))
    assert stats.snapshot().lists - lists <= 2  # one sync for the burst (two at worst)
    reader.close()
    writer.close()


def test_delete_drops_the_key_but_not_its_pack(tmp_path: Path) -> None:
    inner = MemoryBackend()
    layer = PackLayer(inner, tmp_path)
    layer.put(key(1), data(1))
    layer.put(key(2), data(2))
    layer.delete(key(2))  # deleted while still pending
    layer.flush()
    layer.delete(key(1))
    assert not layer.exists(key(1)) and not layer.exists(key(2))
    assert list(layer.list()) == []
    assert len(packs_in(inner)) == 1
    layer.close()


def test_failed_upload_is_reported_at_flush_and_retry_stores_again(tmp_path: Path) -> None:
    inner = FaultLayer(MemoryBackend(), FaultSpec(fail_nth_put=1, nth_error="permanent"))
    layer = PackLayer(inner, tmp_path)
    layer.put(key(1), data(1))
    with pytest.raises(StoreError, match="injected permanent fault"):
        layer.flush()
    assert not layer.exists(key(1))
    layer.put(key(1), data(1))
    layer.flush()
    assert layer.get(key(1)) == data(1)
    layer.close()


class BlockingPuts(Layer):
    """Puts wait until released; counts puts started."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.release = threading.Event()
        self.started = 0

    def put(self, key: str, data: bytes) -> None:
        self.started += 1
        self.release.wait()
        super().put(key, data)


def test_put_blocks_when_the_upload_queue_is_full(tmp_path: Path) -> None:
    inner = BlockingPuts(MemoryBackend())
    layer = PackLayer(inner, tmp_path, pack_size=1000, uploaders=1, queue_depth=1)
    done = []

    def producer() -> None:
        for n in range(10):
            layer.put(key(n), data(n))  # each object fills a pack
            done.append(n)

    thread = threading.Thread(target=producer)
    thread.start()
    # pack 0 is uploading (blocked), pack 1 waits in the queue, pack 2 is full but may
    # not be sealed: the next put waits for room
    deadline = time.monotonic() + 30
    while len(done) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert done == [0, 1, 2] and thread.is_alive() and inner.started == 1
    assert layer.may_wait()  # what a caller that must not block asks first
    inner.release.set()
    thread.join()
    layer.flush()
    assert not layer.may_wait()
    assert all(layer.get(key(n)) == data(n) for n in range(10))
    layer.close()


def test_many_writers_hold_no_more_packs_than_the_bound(tmp_path: Path) -> None:
    """Eight threads writing while uploads are stuck: the packs in memory stay at
    uploaders + queue_depth sealed plus the one being filled (no writer keeps a
    sealed pack of its own while it waits)."""
    inner = BlockingPuts(MemoryBackend())
    layer = PackLayer(inner, tmp_path, pack_size=1000, uploaders=1, queue_depth=1)

    def producer(first: int) -> None:
        for n in range(first, first + 5):
            layer.put(key(n), data(n))

    threads = [threading.Thread(target=producer, args=(i * 5,)) for i in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    with layer._lock:  # what the layer holds now: pending objects, one pack each
        held = {serial for serial, *_where in layer._pending.values()}
    assert len(held) <= 3 and inner.started == 1
    inner.release.set()
    for thread in threads:
        thread.join()
    layer.flush()
    assert all(layer.get(key(n)) == data(n) for n in range(40))
    layer.close()


def test_get_many_reads_neighbours_in_one_range_read(tmp_path: Path) -> None:
    inner = StatsLayer(MemoryBackend())
    layer = PackLayer(inner, tmp_path, pack_size=20_000)
    for n in range(40):  # two packs of 20 objects
        layer.put(key(n), data(n))
    layer.flush()
    layer.put(key(40), data(40))  # not uploaded yet: served from memory
    layer.put("snapshots/s", b"passes through")
    wanted = [key(n) for n in (3, 4, 5, 6, 7, 30, 31, 40, 4)] + ["snapshots/s"]
    before = inner.snapshot()
    got = layer.get_many(wanted)
    assert got == [data(n) for n in (3, 4, 5, 6, 7, 30, 31, 40, 4)] + [b"passes through"]
    assert (inner.snapshot() - before).gets == 3  # one span per pack, the snapshot
    other = PackLayer(inner, tmp_path / "b")  # another process: learns the packs on a miss
    layer.flush()
    assert other.get_many([key(40), key(0)]) == [data(40), data(0)]
    with pytest.raises(NotFoundError):
        other.get_many([key(1), key(99)])
    other.close()
    layer.close()


def test_get_many_follows_a_pack_that_moved(tmp_path: Path) -> None:
    inner = MemoryBackend()
    layer = PackLayer(inner, tmp_path)
    layer.put(key(1), data(1))
    layer.flush()
    [(name, _size)] = packs_in(inner)
    blob = inner.get(name)
    other = PackLayer(inner, tmp_path / "b")  # indexes the pack, then it is repacked
    inner.delete(name)
    renamed = PACK_PREFIX + "f" * 64
    inner.put(renamed, blob)
    assert other.get_many([key(1)]) == [data(1)]  # found again under its new name
    inner.delete(renamed)
    with pytest.raises(NotFoundError):  # gone from the bucket: gone from the index too
        other.get_many([key(1)])
    other.close()
    layer.close()
