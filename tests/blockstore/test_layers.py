"""Targeted tests of each layer: what it alone is responsible for."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import xxhash

from blockstore.backend import (
    IntegrityError,
    Layer,
    NotFoundError,
    StoreError,
    StoreFullError,
    TransientError,
)
from blockstore.backends.memory import MemoryBackend
from blockstore.factory import create_store, open_store
from blockstore.layers.cache import CacheLayer
from blockstore.layers.compress import PROBE, CompressLayer
from blockstore.layers.encrypt import OVERHEAD, EncryptLayer
from blockstore.layers.fault import FaultLayer, FaultSpec
from blockstore.layers.limit import LimitLayer
from blockstore.layers.retry import RetryLayer, RetryPolicy
from blockstore.layers.stats import RequestStats, StatsLayer

KEY, OTHER = "blocks/0123456789abcdef", "blocks/fedcba9876543210"

# -- compress ---------------------------------------------------------------------------


@pytest.mark.parametrize("checksums", [True, False])
def test_compress_shrinks_or_stores_raw(checksums: bool) -> None:
    inner = MemoryBackend()
    layer = CompressLayer(inner, level=3, checksums=checksums)
    text, noise = b"the same line again\n" * 500, os.urandom(5000)
    # an incompressible start: the probe stores the whole object raw, text and all
    mixed = os.urandom(PROBE) + text
    for key, value in ((KEY, text), (OTHER, noise), ("blocks/00", b""), ("blocks/01", mixed)):
        layer.put(key, value)
    assert len(inner.get(KEY)) < len(text) // 10
    if checksums:  # header, XXH3-64 of the plaintext, body
        assert inner.get(OTHER) == b"\2" + xxhash.xxh3_64_digest(noise) + noise
        assert inner.get("blocks/00") == b"\2" + xxhash.xxh3_64_digest(b"")
        assert inner.get("blocks/01") == b"\2" + xxhash.xxh3_64_digest(mixed) + mixed
    else:  # format 1: one header byte
        assert inner.get(OTHER) == b"\0" + noise
        assert inner.get("blocks/00") == b"\0"
        assert inner.get("blocks/01") == b"\0" + mixed
    assert [layer.get(k) for k in (KEY, OTHER, "blocks/00", "blocks/01")] == [
        text, noise, b"", mixed
    ]


@pytest.mark.parametrize("compressible", [True, False])
def test_compress_checksum_catches_a_flipped_byte(compressible: bool) -> None:
    """Raw and zstd bodies alike: a flipped byte anywhere is an IntegrityError."""
    inner = MemoryBackend()
    layer = CompressLayer(inner)
    value = b"line of text\n" * 5000 if compressible else os.urandom(50_000)
    layer.put(KEY, value)
    stored = inner.get(KEY)
    for position in (0, 1, 9, len(stored) // 2, len(stored) - 1):
        damaged = bytearray(stored)
        damaged[position] ^= 0x01
        inner.put(KEY, bytes(damaged))
        with pytest.raises(IntegrityError, match=KEY):
            layer.get(KEY)


def test_compress_with_checksums_refuses_headers_without_one() -> None:
    """In a format-2 store a checksum-less header is damage, not an old object."""
    inner = MemoryBackend()
    CompressLayer(inner, checksums=False).put(KEY, b"old format")
    assert CompressLayer(inner, checksums=False).get(KEY) == b"old format"
    with pytest.raises(IntegrityError, match="unknown compression header 0"):
        CompressLayer(inner).get(KEY)


@pytest.mark.parametrize("stored", [b"", b"\x07abc", b"\x01not a zstd frame", b"\x01(\xb5/\xfd"])
def test_compress_rejects_damaged_objects(stored: bytes) -> None:
    inner = MemoryBackend()
    inner.put(KEY, stored)
    with pytest.raises(IntegrityError, match=KEY):
        CompressLayer(inner).get(KEY)


def test_compress_detects_truncated_frame() -> None:
    inner = MemoryBackend()
    CompressLayer(inner).put(KEY, b"abcd" * 10000)
    inner.put(KEY, inner.get(KEY)[:-3])
    with pytest.raises(IntegrityError, match=KEY):
        CompressLayer(inner).get(KEY)


# -- encrypt ----------------------------------------------------------------------------


@pytest.fixture
def sealed() -> tuple[MemoryBackend, EncryptLayer]:
    inner = MemoryBackend()
    layer = EncryptLayer(inner, os.urandom(32))
    layer.put(KEY, b"attack at dawn, bring snacks")
    layer.put(OTHER, b"a different object entirely")
    return inner, layer


def test_encrypt_detects_every_flipped_byte(sealed: tuple[MemoryBackend, EncryptLayer]) -> None:
    inner, layer = sealed
    good = inner.get(KEY)
    assert len(good) == len(b"attack at dawn, bring snacks") + OVERHEAD
    for position in range(len(good)):
        damaged = bytearray(good)
        damaged[position] ^= 0x01
        inner.put(KEY, bytes(damaged))
        with pytest.raises(IntegrityError, match=KEY):
            layer.get(KEY)
    inner.put(KEY, good)
    assert layer.get(KEY) == b"attack at dawn, bring snacks"


def test_encrypt_detects_truncation(sealed: tuple[MemoryBackend, EncryptLayer]) -> None:
    inner, layer = sealed
    good = inner.get(KEY)
    for length in range(len(good)):
        inner.put(KEY, good[:length])
        with pytest.raises(IntegrityError, match=KEY):
            layer.get(KEY)


def test_encrypt_detects_swapped_objects(sealed: tuple[MemoryBackend, EncryptLayer]) -> None:
    inner, layer = sealed
    first, second = inner.get(KEY), inner.get(OTHER)
    inner.put(KEY, second)
    inner.put(OTHER, first)
    with pytest.raises(IntegrityError, match=KEY):
        layer.get(KEY)
    with pytest.raises(IntegrityError, match=OTHER):
        layer.get_range(OTHER, 0, 4)


def test_encrypt_missing_is_not_found_and_nonces_are_fresh(
    sealed: tuple[MemoryBackend, EncryptLayer],
) -> None:
    inner, layer = sealed
    with pytest.raises(NotFoundError):
        layer.get("blocks/00112233")
    layer.put("blocks/aa", b"same")
    layer.put("blocks/bb", b"same")
    assert inner.get("blocks/aa")[1:13] != inner.get("blocks/bb")[1:13]


def test_encrypted_store_on_disk_holds_no_plaintext(tmp_path) -> None:
    marker = b"PLAINTEXT-MARKER-4f1d"
    url = str(tmp_path / "store")
    create_store(url, encrypt=True, key_file=str(tmp_path / "k"), compression_level=0)
    with open_store(url, key_file=str(tmp_path / "k"), state_dir=tmp_path / "state") as stack:
        for i in range(5):
            stack.backend.put(f"blocks/{i:04x}", os.urandom(100) + marker * 20)
        stack.backend.put("trees/00aa", marker)
    files = [os.path.join(d, f) for root in ("store", "state")
             for d, _, names in os.walk(tmp_path / root) for f in names]
    assert len(files) >= 12  # 6 objects + config in the store, 6 in the cache
    for path in files:
        with open(path, "rb") as f:
            assert marker not in f.read(), path


def test_encrypted_factory_store_reports_corruption_by_key(tmp_path) -> None:
    url = str(tmp_path / "store")
    create_store(url, encrypt=True, key_file=str(tmp_path / "k"))
    with open_store(url, key_file=str(tmp_path / "k"), cache_size=0) as stack:
        stack.backend.put("trees/00aa11", b"tree one")
        stack.backend.put("trees/00aa22", b"tree two")
        path = tmp_path / "store" / "trees" / "00" / "00aa11"
        path.write_bytes(path.read_bytes()[:-1])
        with pytest.raises(IntegrityError, match="trees/00aa11"):
            stack.backend.get("trees/00aa11")
        assert stack.backend.get("trees/00aa22") == b"tree two"


# -- retry ------------------------------------------------------------------------------


class Recorder:
    """A stand-in for time.sleep that records the delays asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def retry_stack(spec: FaultSpec, policy: RetryPolicy | None = None):
    stats = StatsLayer(FaultLayer(MemoryBackend(), spec))
    sleep = Recorder()
    return RetryLayer(stats, policy, sleep=sleep), stats, sleep


def test_retry_repeats_transient_errors(caplog: pytest.LogCaptureFixture) -> None:
    layer, stats, sleep = retry_stack(FaultSpec(fail_nth_put=1, nth_error="transient"))
    with caplog.at_level(logging.WARNING, logger="blockstore.layers.retry"):
        layer.put(KEY, b"data")
    assert layer.get(KEY) == b"data"
    assert stats.snapshot().puts == 2
    assert len(sleep.delays) == 1
    assert "injected transient fault" in caplog.text


@pytest.mark.parametrize("kind", ["permanent", "full"])
def test_retry_does_not_repeat_permanent_errors(kind: str) -> None:
    layer, stats, sleep = retry_stack(FaultSpec(fail_nth_put=1, nth_error=kind))
    with pytest.raises(StoreError, match="injected") as info:
        layer.put(KEY, b"data")
    assert not isinstance(info.value, TransientError)
    assert stats.snapshot().puts == 1
    assert sleep.delays == []


def test_retry_gives_up_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=1.0)
    layer, stats, sleep = retry_stack(FaultSpec(transient=1.0, ops=frozenset({"get"})), policy)
    layer.put(KEY, b"data")
    with pytest.raises(TransientError, match="gave up after 4 attempts"):
        layer.get(KEY)
    assert stats.snapshot().gets == 4
    assert len(sleep.delays) == 3
    assert all(0 <= delay <= 1.0 for delay in sleep.delays)  # full jitter under the cap


def test_retry_respects_time_budget() -> None:
    policy = RetryPolicy(max_attempts=100, base_delay=10.0, max_delay=10.0, max_elapsed=0.0)
    layer, stats, sleep = retry_stack(FaultSpec(transient=1.0, ops=frozenset({"exists"})), policy)
    with pytest.raises(TransientError):
        layer.exists(KEY)
    assert stats.snapshot().heads == 1  # the first back-off would overrun the budget
    assert sleep.delays == []


class FlakyListing(Layer):
    """Fails a listing with TransientError after `after` keys, `times` times."""

    def __init__(self, inner: MemoryBackend, after: int, times: int) -> None:
        super().__init__(inner)
        self.after, self.times = after, times

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        for count, item in enumerate(self.inner.list(prefix)):
            if count == self.after and self.times:
                self.times -= 1
                raise TransientError("connection reset while listing")
            yield item


def test_retry_resumes_a_listing_without_repeats() -> None:
    inner = MemoryBackend()
    keys = [f"blocks/{i:04x}" for i in range(10)]
    for key in keys:
        inner.put(key, b"x")
    layer = RetryLayer(FlakyListing(inner, after=4, times=2), sleep=Recorder())
    assert [key for key, _ in layer.list("blocks/")] == keys


def test_full_stack_survives_random_transient_faults(tmp_path) -> None:
    url = str(tmp_path / "store")
    create_store(url)
    fast = RetryPolicy(max_attempts=30, base_delay=0.0005, max_delay=0.002)
    spec = FaultSpec(seed=3, transient=0.3, lost_response=0.1)
    with open_store(url, fault=spec, retry=fast, cache_size=0) as stack:
        before = stack.stats.snapshot()
        for i in range(40):
            stack.backend.put(f"blocks/{i:04x}", b"block %d" % i)
        for i in range(40):
            assert stack.backend.get(f"blocks/{i:04x}") == b"block %d" % i
        spent = stack.stats.snapshot() - before
    assert spent.puts + spent.gets > 80  # the faults cost extra requests, all recovered


# -- stats ------------------------------------------------------------------------------


def test_stats_counts_requests_and_bytes() -> None:
    layer = StatsLayer(MemoryBackend())
    start = layer.snapshot()
    layer.put(KEY, b"12345")
    layer.put_if_absent(KEY, b"678")
    layer.get(KEY)
    layer.get_range(KEY, 1, 2)
    layer.exists(KEY)
    layer.delete(OTHER)
    assert list(layer.list("nothing/")) == []
    spent = layer.snapshot() - start
    assert spent == RequestStats(puts=2, gets=2, heads=1, deletes=1, lists=1,
                                 bytes_up=8, bytes_down=7)
    assert spent.requests == 7
    assert json.loads(json.dumps(spent.to_dict()))["bytes_up"] == 8
    assert spent + spent == RequestStats(4, 4, 2, 2, 2, 16, 14)


def test_stats_counts_pages_of_lists_and_deletes() -> None:
    layer = StatsLayer(MemoryBackend())
    keys = [f"trees/{i:05x}" for i in range(2500)]
    for key in keys:
        layer.put(key, b"")
    before = layer.snapshot()
    assert len(list(layer.list("trees/"))) == 2500
    layer.delete_many(iter(keys))
    spent = layer.snapshot() - before
    assert (spent.lists, spent.deletes) == (3, 3)


def test_stats_snapshot_is_immutable() -> None:
    snapshot = StatsLayer(MemoryBackend()).snapshot()
    with pytest.raises(AttributeError):
        snapshot.puts = 3  # type: ignore[misc]


# -- limit ------------------------------------------------------------------------------


class ConcurrencyProbe(Layer):
    """Records the most calls that were ever inside `inner` at once."""

    def __init__(self, inner: MemoryBackend) -> None:
        super().__init__(inner)
        self.active = self.peak = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes:
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(0.002)  # hold the slot so callers overlap
            return self.inner.get(key)
        finally:
            with self._lock:
                self.active -= 1


def test_limit_bounds_concurrent_requests() -> None:
    probe = ConcurrencyProbe(MemoryBackend())
    layer = LimitLayer(probe, 3)
    layer.put(KEY, b"x")
    with ThreadPoolExecutor(12) as pool:
        assert list(pool.map(lambda _: layer.get(KEY), range(60))) == [b"x"] * 60
    assert 1 <= probe.peak <= 3
    assert layer.properties.connections == 3


def test_limit_allows_requests_while_a_listing_is_open() -> None:
    layer = LimitLayer(MemoryBackend(), 1)
    for i in range(5):
        layer.put(f"blocks/{i:02x}", bytes([i]))
    assert [layer.get(key) for key, _ in layer.list("blocks/")] == [bytes([i]) for i in range(5)]


# -- cache ------------------------------------------------------------------------------


def test_cache_write_through_serves_reads_without_backend_requests(tmp_path) -> None:
    stats = StatsLayer(MemoryBackend())
    cache = CacheLayer(stats, tmp_path, 1 << 20)
    cache.put(KEY, b"cached block")
    before = stats.snapshot()
    assert cache.get(KEY) == b"cached block"
    assert cache.get_range(KEY, 7, 5) == b"block"
    assert cache.exists(KEY)
    assert (stats.snapshot() - before).requests == 0
    restarted = CacheLayer(stats, tmp_path, 1 << 20)
    assert restarted.get(KEY) == b"cached block"
    assert (stats.snapshot() - before).requests == 0


def test_cache_fills_on_miss_and_skips_mutable_keys(tmp_path) -> None:
    inner = MemoryBackend()
    stats = StatsLayer(inner)
    cache = CacheLayer(stats, tmp_path, 1 << 20)
    inner.put(KEY, b"written by someone else")
    inner.put("lease", b"owner 1")
    assert cache.get(KEY) == b"written by someone else"
    assert cache.get(KEY) == b"written by someone else"
    assert cache.get("lease") == b"owner 1"
    inner.put("lease", b"owner 2")
    assert cache.get("lease") == b"owner 2"
    assert stats.snapshot().gets == 3


def test_cache_never_serves_a_deleted_key(tmp_path) -> None:
    cache = CacheLayer(MemoryBackend(), tmp_path, 1 << 20)
    cache.put(KEY, b"doomed")
    cache.put(OTHER, b"also doomed")
    cache.delete(KEY)
    cache.delete_many([OTHER])
    for key in (KEY, OTHER):
        assert not cache.exists(key)
        with pytest.raises(NotFoundError):
            cache.get(key)
    assert cache.cached_bytes() == 0


def test_cache_evicts_least_recently_used_across_restarts(tmp_path) -> None:
    stats = StatsLayer(MemoryBackend())
    limit = 4 * (1000 + 16)  # room for four 1000-byte objects
    cache = CacheLayer(stats, tmp_path, limit)
    keys = [f"blocks/{i:04x}" for i in range(5)]
    for key in keys[:4]:
        cache.put(key, (key.encode() * 100)[:1000])
        time.sleep(0.02)  # distinct file mtimes (the clock behind them is coarse)
    cache.get(keys[0])
    cache = CacheLayer(stats, tmp_path, limit)
    cache.put(keys[4], (keys[4].encode() * 100)[:1000])  # evicts keys[1], least recently used
    assert cache.cached_bytes() <= limit
    before = stats.snapshot()
    for key in (keys[0], keys[2], keys[3], keys[4]):
        cache.get(key)
    assert (stats.snapshot() - before).gets == 0
    cache.get(keys[1])
    assert (stats.snapshot() - before).gets == 1


class SlowGets(Layer):
    """Widens the window between a cache miss and its fill."""

    def get(self, key: str) -> bytes:
        data = self.inner.get(key)
        time.sleep(0.0005)
        return data


def test_cache_fills_racing_deletes_never_resurrect_a_key(tmp_path) -> None:
    cache = CacheLayer(SlowGets(MemoryBackend()), tmp_path, 1 << 20)
    stop = threading.Event()

    def keep_reading() -> None:
        while not stop.is_set():
            with contextlib.suppress(NotFoundError):
                assert cache.get(KEY).startswith(b"version ")

    with ThreadPoolExecutor(3) as pool:
        readers = [pool.submit(keep_reading) for _ in range(2)]
        try:
            for i in range(150):
                cache.put(KEY, b"version %d" % i)
                cache.delete(KEY)
                with pytest.raises(NotFoundError):
                    cache.get(KEY)  # once delete returned, no fill may bring it back
        finally:
            stop.set()
        for reader in readers:
            reader.result()  # re-raises anything that went wrong in a reader


def test_cache_drops_a_damaged_file_and_refetches(tmp_path) -> None:
    stats = StatsLayer(MemoryBackend())
    cache = CacheLayer(stats, tmp_path, 1 << 20)
    cache.put(KEY, b"the real data")
    [path] = [p for p in tmp_path.rglob("*") if p.is_file()]
    path.write_bytes(path.read_bytes()[:-2] + b"!!")
    assert cache.get(KEY) == b"the real data"
    assert stats.snapshot().gets == 1


def test_cache_skips_objects_too_big_for_it(tmp_path) -> None:
    cache = CacheLayer(MemoryBackend(), tmp_path, 4000)
    cache.put(KEY, os.urandom(2000))
    assert cache.cached_bytes() == 0
    assert len(cache.get(KEY)) == 2000


# -- fault ------------------------------------------------------------------------------


def outcomes(spec: FaultSpec) -> list[str]:
    layer = FaultLayer(MemoryBackend(), spec)
    result = []
    for i in range(200):
        try:
            layer.put(f"blocks/{i:04x}", b"x")
            result.append("ok")
        except StoreError as exc:
            result.append(type(exc).__name__)
    return result


def test_fault_injection_is_seeded() -> None:
    spec = FaultSpec(seed=42, transient=0.2, permanent=0.1, full=0.05)
    first = outcomes(spec)
    assert first == outcomes(spec)
    assert {"ok", "TransientError", "StoreError", "StoreFullError"} == set(first)
    assert first != outcomes(FaultSpec(seed=43, transient=0.2, permanent=0.1, full=0.05))
    assert set(outcomes(FaultSpec(seed=42))) == {"ok"}


def test_fault_fails_after_a_byte_budget() -> None:
    layer = FaultLayer(MemoryBackend(), FaultSpec(fail_after_bytes=2500))
    layer.put("blocks/01", b"x" * 1000)
    layer.put("blocks/02", b"x" * 1000)
    with pytest.raises(StoreFullError) as info:
        layer.put("blocks/03", b"x" * 1000)
    assert info.value.errno == errno.ENOSPC
    assert not layer.exists("blocks/03")
    layer.put("blocks/04", b"x" * 500)  # what still fits is still written


def test_fault_lost_response_still_writes() -> None:
    layer = FaultLayer(MemoryBackend(), FaultSpec(lost_response=1.0, ops=frozenset({"put"})))
    with pytest.raises(TransientError, match="lost response"):
        layer.put(KEY, b"landed")
    assert layer.get(KEY) == b"landed"


def test_fault_spec_parses_from_text() -> None:
    spec = FaultSpec.parse("seed=7, transient=0.25, ops=put+get, fail_nth_put=3, "
                           "nth_error=full, fail_after_bytes=100")
    assert spec == FaultSpec(seed=7, transient=0.25, ops=frozenset({"put", "get"}),
                             fail_nth_put=3, nth_error="full", fail_after_bytes=100)
    for bad in ("transient", "colour=red", "ops=put+teleport", "nth_error=boom"):
        with pytest.raises(ValueError):
            FaultSpec.parse(bad)
