"""The store file system: the shared contract plus what only the store does.

Runs the contract over a volume on a plain memory backend and over a real store (a
local-directory store opened through the factory with the pack layer, so the lease,
packs and index are in the loop). Store-only behaviour: the `/.snapshots` view,
checkpoints, rollback on close(False), concurrent sessions rebasing, dedup.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xxhash

from blockstore.backend import StoreError
from blockstore.backends.memory import MemoryBackend
from blockstore.factory import create_store
from blockstore.volume import NEEDS_IO, ChunkParams, Volume, VolumeParams
from rsyncd_py.fs import store as store_fs
from rsyncd_py.fs import store_ahead, store_io
from rsyncd_py.fs.base import FsError
from rsyncd_py.fs.factory import StoreOptions
from rsyncd_py.fs.store import StoreProvider
from tests.fs.contract import (
    FileSystemContract,
    ProviderEnv,
    async_test,
    dir_stat,
    expect_errno,
    file_stat,
    read_file,
    write_file,
)


def localdir_env(tmp_path: Path) -> ProviderEnv:
    """A fresh local-directory store, opened with the pack layer."""
    url = str(tmp_path / "store")
    create_store(url, volume=VolumeParams().to_config())
    options = StoreOptions(url=url, cache_dir=str(tmp_path / "state"))
    return ProviderEnv(lambda: StoreProvider.open(options))


@pytest.fixture(params=["memory", "localdir"])
def fs_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProviderEnv]:
    if request.param == "memory":
        env = ProviderEnv(lambda: StoreProvider(Volume(MemoryBackend())))
    else:
        env = localdir_env(tmp_path)
    yield env
    env.close()


@pytest.fixture
def store_env(tmp_path: Path) -> Iterator[ProviderEnv]:
    env = localdir_env(tmp_path)
    yield env
    env.close()


class TestStoreFileSystemContract(FileSystemContract):
    pass


@async_test
async def test_snapshot_view(fs_env: ProviderEnv) -> None:
    fs = await fs_env.open(True)
    await write_file(fs, b"f", b"version one")
    await fs.close(True)
    fs = await fs_env.open(True)
    await write_file(fs, b"f", b"version two")
    await fs.close(True)

    ro = await fs_env.open(False)
    assert [name for name, _ in await ro.listdir(b"")] == [b"f"]  # no .snapshots entry
    snap_dir = await ro.lstat(b".snapshots")
    assert snap_dir is not None and snap_dir.is_dir()
    ids = [name for name, _ in await ro.listdir(b".snapshots")]
    assert len(ids) == 2 and ids == sorted(ids)
    assert await read_file(ro, b".snapshots/" + ids[0] + b"/f") == b"version one"
    assert await read_file(ro, b".snapshots/" + ids[1] + b"/f") == b"version two"
    assert await ro.lstat(b".snapshots/nonexistent") is None
    await ro.close(True)

    rw = await fs_env.open(True)
    await expect_errno(errno.EROFS, rw.create(b".snapshots/" + ids[0] + b"/g"))
    await expect_errno(errno.EROFS, rw.mkdir(b".snapshots", dir_stat()))
    await expect_errno(errno.EROFS, rw.remove(b".snapshots/" + ids[0] + b"/f"))
    await rw.close(True)


@async_test
async def test_close_without_success_keeps_only_committed_state(fs_env: ProviderEnv) -> None:
    fs = await fs_env.open(True)
    await write_file(fs, b"kept", b"1")
    await fs.close(True)
    fs = await fs_env.open(True)
    await write_file(fs, b"dropped", b"2")
    await fs.remove(b"kept")
    await fs.close(False)
    ro = await fs_env.open(False)
    assert [name for name, _ in await ro.listdir(b"")] == [b"kept"]
    await ro.close(True)


@async_test
async def test_checkpoints_commit_whole_operations(
    fs_env: ProviderEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_fs, "CHECKPOINT_SECONDS", 0.0)
    fs = await fs_env.open(True)
    await write_file(fs, b"a", b"first")
    writer = await fs.create(b"b")
    await writer.write(b"in progress")
    await fs.mkdir(b"d", dir_stat())  # completes an operation: checkpoint
    ro = await fs_env.open(False)
    names = [name for name, _ in await ro.listdir(b"")]
    assert names == [b"a", b"d"]  # b is still being written: not in the checkpoint
    await ro.close(True)
    await writer.commit(file_stat(len(b"in progress")))
    await fs.close(False)  # the session dies: checkpoints stay
    ro = await fs_env.open(False)
    assert [name for name, _ in await ro.listdir(b"")] == [b"a", b"b", b"d"]
    await ro.close(True)


@async_test
async def test_concurrent_sessions_rebase(fs_env: ProviderEnv) -> None:
    one = await fs_env.open(True)
    two = await fs_env.open(True)
    await one.mkdir(b"shared", dir_stat())
    await two.mkdir(b"shared", dir_stat())
    await write_file(one, b"shared/from-one", b"1")
    await write_file(two, b"shared/from-two", b"2")
    await write_file(two, b"top-two", b"2")
    await one.close(True)
    await two.close(True)
    ro = await fs_env.open(False)
    assert [n for n, _ in await ro.listdir(b"shared")] == [b"from-one", b"from-two"]
    assert [n for n, _ in await ro.listdir(b"")] == [b"shared", b"top-two"]
    await ro.close(True)


@async_test
async def test_same_content_twice_is_stored_once(fs_env: ProviderEnv) -> None:
    data = os.urandom(2 << 20)
    fs = await fs_env.open(True)
    await write_file(fs, b"one", data)
    await fs.close(True)
    assert isinstance(fs_env.provider, StoreProvider)
    counters = fs_env.provider.volume.objects.counters
    stored = counters.bytes_new
    fs = await fs_env.open(True)
    await write_file(fs, b"two", data, pieces=7)
    await fs.close(True)
    assert counters.bytes_new == stored
    assert counters.bytes_dedup == len(data)


@async_test
async def test_whole_file_digests_are_recorded(fs_env: ProviderEnv) -> None:
    data = os.urandom(123_456)
    fs = await fs_env.open(True)
    await write_file(fs, b"f", data)
    digests = await fs.file_digests(b"f")  # type: ignore[attr-defined]
    assert digests == {"xxh128": xxhash.xxh3_128_digest(data)}
    reader = await fs.open_read(b"f")
    assert reader.digests == digests  # type: ignore[attr-defined]
    await fs.close(True)


@async_test
async def test_stream_yields_runs_of_about_the_chunk_size(fs_env: ProviderEnv) -> None:
    data = os.urandom(3 << 20)
    fs = await fs_env.open(True)
    writer = await fs.create(b"sparse")
    await writer.write(data)
    await writer.write_zeros(40 << 20)  # never materialised as one piece
    await writer.write(data)
    await writer.commit(file_stat(len(data) * 2 + (40 << 20)))
    reader = await fs.open_read(b"sparse")
    chunks = [chunk async for chunk in reader.stream(1 << 20)]
    assert b"".join(chunks) == data + bytes(40 << 20) + data
    # a run ends with the block that reaches the size: at most the chunker's largest more
    assert max(map(len, chunks)) <= (1 << 20) + ChunkParams().max_size
    assert len(chunks) >= 46
    await reader.close()
    await fs.close(True)


def count_hops(
    fs: Any, monkeypatch: pytest.MonkeyPatch, *routes: tuple[Any, str]
) -> list[str]:
    """The names of the functions `fs` hands to its executor from now on, in order.

    Each (object, attribute) of `routes` is another way to that executor, counted too.
    """
    hops: list[str] = []
    submit = fs.submit

    def counted(fn: Any, *args: Any) -> Any:
        hops.append(fn.__name__)
        return submit(fn, *args)

    for owner, name in ((fs, "submit"), *routes):
        monkeypatch.setattr(owner, name, counted)
    return hops


@async_test
async def test_small_files_commit_without_a_thread_hop(
    store_env: ProviderEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small file, all in its last batch, is stored and placed on the event loop when
    that waits for nothing; a larger one, or any while every upload slot is taken, goes
    through the executor as before, and so does placing one the transaction cannot
    place at once (a tree to fetch, its mutex held elsewhere)."""
    env = store_env
    fs = await env.open(True)
    await fs.mkdir(b"d", dir_stat())
    hops = count_hops(fs, monkeypatch)
    small, large = os.urandom(5000), os.urandom(store_io.INLINE_COMMIT + 1)
    await write_file(fs, b"d/small", small)
    assert hops == []
    await write_file(fs, b"d/large", large)
    assert hops == ["_finish"]
    pack = env.provider.volume.pack_layer  # type: ignore[attr-defined]
    monkeypatch.setattr(pack, "may_wait", lambda: True)
    await write_file(fs, b"d/busy", small)
    assert hops == ["_finish", "_finish"]
    monkeypatch.setattr(pack, "may_wait", lambda: False)
    monkeypatch.setattr(fs.tx, "put_file_cached", lambda *args: NEEDS_IO)  # type: ignore[attr-defined]
    await write_file(fs, b"d/later", small[:100])
    assert hops == ["_finish", "_finish", "tx_put_file"]
    await fs.close(True)
    fs = await env.open(True)
    for path, data in ((b"d/small", small), (b"d/large", large), (b"d/busy", small)):
        assert await read_file(fs, path) == data
    assert await read_file(fs, b"d/later") == small[:100]
    await fs.close(True)


@async_test
async def test_reading_a_small_file_plans_on_the_event_loop(
    store_env: ProviderEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose block list is inline is planned without a thread hop (only its
    fetch goes to the executor); one with an out-of-line list is planned there."""
    fs = await store_env.open(True)
    small, large = os.urandom(5000), os.urandom(40 << 20)
    await write_file(fs, b"small", small)
    await write_file(fs, b"large", large)
    await fs.close(True)
    fs = await store_env.open(False)
    assert await fs.lstat(b"small") is not None  # the root tree, loaded once
    hops = count_hops(fs, monkeypatch)
    assert await read_file(fs, b"small") == small
    assert hops == ["_fetch_run"]
    hops.clear()
    assert await read_file(fs, b"large") == large
    assert hops[0] == "next_runs" and "_fetch_run" in hops
    await fs.close(True)


@async_test
async def test_small_files_read_ahead_come_in_one_job(
    store_env: ProviderEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files named to `read_ahead` are fetched in one executor job and read from it;
    a large one, or one not named, is read on its own; a failed job is no error: each
    reader then fetches its own blocks."""
    fs = await store_env.open(True)
    datas = {b"d/f%d" % i: os.urandom(i * 7) for i in range(10)}
    datas[b"d/large"] = os.urandom(store_ahead.MAX_FILE + 1)
    await fs.mkdir(b"d", dir_stat())
    for path, data in datas.items():
        await write_file(fs, path, data)
    await fs.close(True)
    fs = await store_env.open(False)
    assert await fs.lstat(b"d/f0") is not None  # the trees, loaded once
    hops = count_hops(fs, monkeypatch, (fs.ahead, "_submit"))  # type: ignore[attr-defined]
    fs.read_ahead([b"d/f%d" % i for i in range(8)] + [b"d/large", b"nowhere/x"])  # type: ignore[attr-defined]
    for i in range(8):
        assert await read_file(fs, b"d/f%d" % i) == datas[b"d/f%d" % i]
    assert hops == ["_fetch"]
    assert await read_file(fs, b"d/f9") == datas[b"d/f9"]
    assert await read_file(fs, b"d/large") == datas[b"d/large"]
    assert hops == ["_fetch", "_fetch_run", "_fetch_run"]

    failed: list[int] = []

    def broken(blocks: Any) -> Any:
        failed.append(len(blocks))
        raise StoreError("injected")

    fresh = await store_env.open(False)
    assert await fresh.lstat(b"d/f0") is not None
    monkeypatch.setattr(fresh.ahead, "_fetch", broken)  # type: ignore[attr-defined]
    fresh.read_ahead([b"d/f%d" % i for i in range(10)])  # type: ignore[attr-defined]
    for path in (b"d/f3", b"d/f9"):
        assert await read_file(fresh, path) == datas[path]
    assert failed == [9]  # f1..f9 (f0 is empty)
    await fresh.close(True)
    await fs.close(True)


@async_test
async def test_second_writing_process_is_refused(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    create_store(url, volume=VolumeParams().to_config())
    first = StoreProvider.open(StoreOptions(url=url, cache_dir=str(tmp_path / "a")))
    second = StoreProvider.open(StoreOptions(url=url, cache_dir=str(tmp_path / "b")))
    try:
        fs = await first.open_session(writable=True)
        with pytest.raises(FsError) as info:
            await second.open_session(writable=True)
        assert info.value.errno == errno.EBUSY
        assert f"store is locked by {os.uname().nodename} pid {os.getpid()} since" in str(
            info.value
        )
        reader = await second.open_session(writable=False)  # readers need no lease
        await reader.close(True)
        await write_file(fs, b"f", b"x")
        await fs.close(True)  # the last writer leaves: the lease is released
        fs = await second.open_session(writable=True)
        assert await read_file(fs, b"f") == b"x"
        await fs.close(True)
    finally:
        await first.aclose()
        await second.aclose()
