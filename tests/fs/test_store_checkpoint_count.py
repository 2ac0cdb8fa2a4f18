"""A store session also checkpoints by count: its uncommitted changes stay bounded.

Every change a session makes lives in memory until it is committed, so a tree of many
small files arriving quickly must be committed every CHECKPOINT_OPERATIONS operations,
not only every CHECKPOINT_SECONDS.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from blockstore.factory import create_store
from blockstore.volume import VolumeParams
from rsyncd_py.fs import store as store_fs
from rsyncd_py.fs.factory import StoreOptions
from rsyncd_py.fs.store import StoreProvider
from tests.fs.contract import ProviderEnv, async_test, dir_stat, write_file


@pytest.fixture
def env(tmp_path: Path) -> Iterator[ProviderEnv]:
    url = str(tmp_path / "store")
    create_store(url, volume=VolumeParams().to_config())
    options = StoreOptions(url=url, cache_dir=str(tmp_path / "state"))
    provider_env = ProviderEnv(lambda: StoreProvider.open(options))
    yield provider_env
    provider_env.close()


@async_test
async def test_every_n_operations_are_committed(
    env: ProviderEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_fs, "CHECKPOINT_OPERATIONS", 4)
    fs = await env.open(True)
    await fs.mkdir(b"d", dir_stat())
    for i in range(6):  # 7 operations: one checkpoint after the 4th
        await write_file(fs, b"d/f%d" % i, b"data %d" % i)
    ro = await env.open(False)
    committed = sorted(name for name, _ in await ro.listdir(b"d"))
    assert committed == [b"f0", b"f1", b"f2"]
    await ro.close(True)
    await fs.close(True)
    ro = await env.open(False)
    assert len(await ro.listdir(b"d")) == 6
    await ro.close(True)
