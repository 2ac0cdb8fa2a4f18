"""`Stat.xattrs` and `Stat.acl` through both FileSystems: set, read back, change, remove.

The same tests run on `LocalFileSystem` (where the kernel keeps ACLs in its
system.posix_acl_* xattrs, checked here with the xattr calls and getfacl) and on the
store's FileSystem (which keeps the bytes as they are). ACL bytes are the format of
protocol/acl_blob.py; the permissions the mode carries follow the mode.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
from collections.abc import Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest

from blockstore.backends.memory import MemoryBackend
from blockstore.volume import Volume
from rsyncd_py.fs.base import FileSystem, FsProvider, Stat
from rsyncd_py.fs.local import LocalProvider
from rsyncd_py.fs.store import StoreProvider
from rsyncd_py.protocol.acl_blob import (
    ACCESS_XATTR,
    ACL_GROUP,
    ACL_GROUP_OBJ,
    ACL_MASK,
    ACL_OTHER,
    ACL_UNDEFINED_ID,
    ACL_USER,
    ACL_USER_OBJ,
    DEFAULT_XATTR,
    pack_acl_blob,
    pack_posix_acl,
)

T = TypeVar("T")
U = ACL_UNDEFINED_ID
ACCESS = pack_posix_acl(
    [
        (ACL_USER_OBJ, 6, U),
        (ACL_USER, 6, 1),
        (ACL_GROUP_OBJ, 4, U),
        (ACL_GROUP, 4, 4),
        (ACL_MASK, 6, U),
        (ACL_OTHER, 0, U),
    ]
)
DEFAULT = pack_posix_acl(
    [
        (ACL_USER_OBJ, 7, U),
        (ACL_USER, 7, 1),
        (ACL_GROUP_OBJ, 5, U),
        (ACL_MASK, 7, U),
        (ACL_OTHER, 5, U),
    ]
)
FILE_ACL = pack_acl_blob(ACCESS, None)
DIR_ACL = pack_acl_blob(ACCESS, DEFAULT)
XATTRS = ((b"user.a", b"1"), (b"user.long", b"L" * 200))


@pytest.fixture(params=["local", "store"])
def provider(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FsProvider]:
    if request.param == "local":
        root = tmp_path / "root"
        root.mkdir()
        yield LocalProvider(os.fsencode(root))
    else:
        store = StoreProvider(Volume(MemoryBackend()))
        yield store
        asyncio.run(store.aclose())


def run(coro: Coroutine[object, object, T]) -> T:
    return asyncio.run(coro)


def _file(mode: int, **extra: object) -> Stat:
    return Stat(mode=stat.S_IFREG | mode, mtime_ns=1_600_000_000_000_000_000, **extra)  # type: ignore[arg-type]


async def _make(fs: FileSystem, path: bytes, st: Stat) -> None:
    writer = await fs.create(path)
    await writer.write(b"data")
    await writer.commit(replace(st, size=4))


def test_set_read_change_remove(provider: FsProvider) -> None:
    async def go() -> None:
        fs = await provider.open_session(writable=True)
        await _make(fs, b"f", _file(0o660, xattrs=XATTRS, acl=FILE_ACL))
        st = await fs.lstat(b"f")
        assert st is not None and st.acl == FILE_ACL and tuple(st.xattrs) == XATTRS
        await fs.mkdir(b"d", Stat(mode=stat.S_IFDIR | 0o755))
        await fs.set_stat(b"d", Stat(mode=stat.S_IFDIR | 0o775, acl=DIR_ACL))
        d = await fs.lstat(b"d")
        assert d is not None and d.acl == DIR_ACL and stat.S_IMODE(d.mode) == 0o775
        # a chmod keeps the ACL; the mode carries the mask
        await fs.set_stat(b"f", _file(0o640, xattrs=XATTRS, acl=FILE_ACL))
        st = await fs.lstat(b"f")
        assert st is not None and st.acl == FILE_ACL and stat.S_IMODE(st.mode) == 0o640
        # remove one xattr and the ACL
        await fs.set_stat(b"f", _file(0o640, xattrs=XATTRS[:1], acl=None))
        st = await fs.lstat(b"f")
        assert st is not None and st.acl is None and tuple(st.xattrs) == XATTRS[:1]
        await fs.close(True)

    run(go())


@pytest.mark.skipif(shutil.which("getfacl") is None, reason="needs getfacl (acl)")
def test_local_acls_are_the_kernels(tmp_path: Path) -> None:
    """What LocalFileSystem writes is what getfacl shows; the mode carries the mask."""
    root = tmp_path / "root"
    root.mkdir()

    async def go() -> None:
        fs = await LocalProvider(os.fsencode(root)).open_session(writable=True)
        await _make(fs, b"f", _file(0o640, acl=FILE_ACL))
        await fs.mkdir(b"d", Stat(mode=stat.S_IFDIR | 0o755))
        await fs.set_stat(b"d", Stat(mode=stat.S_IFDIR | 0o750, acl=DIR_ACL))
        await fs.close(True)

    run(go())
    text = subprocess.run(
        ["getfacl", "-pn", str(root / "f"), str(root / "d")], capture_output=True, check=True
    ).stdout.decode()
    for line in ("user:1:rw-", "group:4:r--", "mask::r--", "other::---", "default:user:1:rwx"):
        assert line in text
    assert "mask::r-x" in text  # the directory's mode 750 carries its mask
    assert os.stat(root / "f").st_mode & 0o777 == 0o640
    assert os.getxattr(root / "d", DEFAULT_XATTR) == DEFAULT
    assert os.getxattr(root / "f", ACCESS_XATTR) != ACCESS  # the mask came from the mode


def test_local_new_file_without_an_acl_keeps_the_inherited_one(tmp_path: Path) -> None:
    """A commit with acl=None leaves what the directory's default ACL gave the inode."""
    root = tmp_path / "root"
    root.mkdir()
    os.setxattr(root, DEFAULT_XATTR, DEFAULT)

    async def go() -> Stat | None:
        fs = await LocalProvider(os.fsencode(root)).open_session(writable=True)
        await _make(fs, b"f", _file(0o644))
        st = await fs.lstat(b"f")
        await fs.close(True)
        return st

    st = run(go())
    assert st is not None and st.acl is not None  # inherited: user:1 from the default


def test_symlinks_have_no_acl(provider: FsProvider) -> None:
    async def go() -> None:
        fs = await provider.open_session(writable=True)
        await fs.symlink(b"l", Stat(mode=stat.S_IFLNK | 0o777, link_target=b"target"))
        link = await fs.lstat(b"l")
        assert link is not None and link.acl is None
        await fs.close(True)

    run(go())
