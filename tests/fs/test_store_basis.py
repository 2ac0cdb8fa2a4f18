"""The store as a --link-dest/--copy-dest basis: entries of /.snapshots can be linked
and copied into the live tree (sharing their content; a snapshot never changes)."""

from __future__ import annotations

import asyncio
import errno
import stat
from pathlib import Path

import pytest

from blockstore.factory import create_store
from blockstore.volume import VolumeParams
from rsyncd_py.fs.base import FsError, Stat
from rsyncd_py.fs.factory import StoreOptions
from rsyncd_py.fs.store import StoreProvider
from tests.fs.contract import dir_stat, file_stat, read_file, write_file


def test_link_and_copy_from_a_snapshot(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    create_store(url, volume=VolumeParams().to_config())

    async def scenario() -> None:
        provider = StoreProvider.open(StoreOptions(url=url, cache_dir=str(tmp_path / "state")))
        try:
            fs = await provider.open_session(writable=True)
            await fs.mkdir(b"old", dir_stat())
            await write_file(fs, b"old/f", b"yesterday's file")
            await fs.symlink(b"old/ln", Stat(mode=stat.S_IFLNK | 0o777, link_target=b"f"))
            await fs.close(True)

            fs = await provider.open_session(writable=True)
            (snap,) = [name for name, _ in await fs.listdir(b".snapshots")]
            base = b".snapshots/" + snap + b"/old/"
            await fs.mkdir(b"new", dir_stat())
            await fs.link(b"new/f", base + b"f")
            await fs.link(b"new/ln", base + b"ln")
            await fs.copy(b"new/g", base + b"f", file_stat(16, mode=0o600))
            with pytest.raises(FsError) as failed:
                await fs.copy(b"new/h", base + b"ln", file_stat(1))
            assert failed.value.errno == errno.EINVAL
            with pytest.raises(FsError) as failed:
                await fs.link(base + b"x", b"new/f")
            assert failed.value.errno == errno.EROFS
            await fs.close(True)

            ro = await provider.open_session(writable=False)
            f, ln, g = [await ro.lstat(b"new/" + n) for n in (b"f", b"ln", b"g")]
            assert f is not None and ln is not None and g is not None
            assert await read_file(ro, b"new/f") == await read_file(ro, b"new/g")
            assert ln.is_symlink() and ln.link_target == b"f"
            assert stat.S_IMODE(g.mode) == 0o600 and f.link_key is None
            old = await ro.lstat(base + b"f")
            assert old is not None and old.link_key is None  # the snapshot is untouched
            await ro.close(True)
        finally:
            await provider.aclose()

    asyncio.run(scenario())
