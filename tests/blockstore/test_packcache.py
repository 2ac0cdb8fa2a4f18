"""The pack cache: whole packs written through, range reads served locally, checked."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from blockstore.backend import NotFoundError
from blockstore.backends.memory import MemoryBackend
from blockstore.layers import packcache
from blockstore.layers.packcache import PackCacheLayer
from blockstore.layers.stats import StatsLayer

PACK = "packs/" + "ab" * 32
OTHER = "packs/" + "cd" * 32


def stack(tmp_path: Path, max_bytes: int = 1 << 30) -> tuple[StatsLayer, PackCacheLayer]:
    below = StatsLayer(MemoryBackend())
    return below, PackCacheLayer(below, tmp_path / "packcache", max_bytes)


def test_written_packs_are_read_back_without_requests(tmp_path: Path) -> None:
    below, cache = stack(tmp_path)
    data = os.urandom(1 << 20)
    cache.put(PACK, data)
    cache.put("lease", b"not a pack")  # passes through, not cached
    before = below.snapshot()
    assert cache.get_range(PACK, 1000, 5000) == data[1000:6000]
    assert cache.get_range(PACK, len(data) - 10, 100) == data[-10:]  # short at the end
    assert cache.get(PACK) == data
    assert (below.snapshot() - before).gets == 0
    assert cache.get("lease") == b"not a pack"
    assert (below.snapshot() - before).gets == 1


def test_a_range_miss_reads_below_and_caches_nothing(tmp_path: Path) -> None:
    below, cache = stack(tmp_path)
    data = os.urandom(100_000)
    below.put(PACK, data)  # written by another process
    assert cache.get_range(PACK, 10, 20) == data[10:30]
    assert cache.get_range(PACK, 10, 20) == data[10:30]
    assert below.snapshot().gets == 2
    assert cache.get(PACK) == data  # a whole read fills
    assert cache.get_range(PACK, 10, 20) == data[10:30]
    assert below.snapshot().gets == 3


def test_a_damaged_file_from_an_earlier_process_is_never_served(tmp_path: Path) -> None:
    below, cache = stack(tmp_path)
    data = os.urandom(200_000)
    cache.put(PACK, data)
    cache.put(OTHER, data)
    path = tmp_path / "packcache" / PACK.removeprefix("packs/")
    raw = bytearray(path.read_bytes())
    raw[5000] ^= 1  # torn or rotten while no process watched it
    path.write_bytes(bytes(raw))
    reopened = PackCacheLayer(below.inner, tmp_path / "packcache", 1 << 30)
    assert reopened.get_range(PACK, 4000, 2000) == data[4000:6000]  # from below
    assert not path.exists()
    assert reopened.get_range(OTHER, 4000, 2000) == data[4000:6000]  # checked, served


def test_size_bound_and_delete(tmp_path: Path) -> None:
    _below, cache = stack(tmp_path, max_bytes=1 << 20)
    cache.put(PACK, os.urandom(200_000))
    cache.put(OTHER, os.urandom(200_000))
    names = ["packs/" + f"{n:02x}" * 32 for n in range(6)]
    for name in names:
        cache.put(name, os.urandom(200_000))
    files = list((tmp_path / "packcache").iterdir())
    assert 0 < len(files) <= 5 and sum(f.stat().st_size for f in files) <= 1 << 20
    cache.delete(names[-1])
    cache.delete_many(names[-3:-1])
    with pytest.raises(NotFoundError):
        cache.get_range(names[-1], 0, 10)
    assert (tmp_path / "packcache" / names[-2].removeprefix("packs/")).exists() is False


def test_concurrent_first_reads_check_a_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, writer = stack(tmp_path)
    data = os.urandom(4 << 20)
    writer.put(PACK, data)
    _, cache = stack(tmp_path)  # a later process: the file must be checked before use
    checks: list[int] = []
    digest = packcache.xxhash.xxh3_128_digest

    def counted(view: memoryview) -> bytes:
        checks.append(len(view))
        time.sleep(0.05)  # hold the check open while the other readers arrive
        return digest(view)

    monkeypatch.setattr(packcache.xxhash, "xxh3_128_digest", counted)
    offsets = list(range(0, 4 << 20, 512 << 10))
    with ThreadPoolExecutor(len(offsets)) as pool:
        runs = list(pool.map(lambda offset: cache.get_range(PACK, offset, 4096), offsets))
    assert runs == [data[offset : offset + 4096] for offset in offsets]
    assert checks == [len(data)]
