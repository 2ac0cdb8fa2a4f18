"""The `FileSystem` contract (rsyncd_py/fs/base.py) as one reusable test class.

Subclass `FileSystemContract` in a test module and provide the `fs_env` fixture: an
object with ``async open(writable: bool) -> FileSystem`` where every session sees the
same tree (what earlier sessions committed with ``close(True)``), such as a
`ProviderEnv`. Each test runs its own event loop, so no async pytest plugin is needed.
Used by the local and the store file systems (tests/fs/test_local_fs.py,
tests/fs/test_store_fs.py).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import stat
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import pytest

from rsyncd_py.fs.base import FileSystem, FsError, FsProvider, Stat

ODD_NAMES = [b"new\nline", b"\xff\xfe-latin1-\xe9", b"x" * 255, b"sp ace", b"-dash"]


class FsEnv(Protocol):
    async def open(self, writable: bool) -> FileSystem: ...


class ProviderEnv:
    """An `FsEnv` over one provider, made on first use; `close` (at teardown) ends it."""

    def __init__(self, make: Callable[[], FsProvider]) -> None:
        self._make = make
        self.provider: FsProvider | None = None

    async def open(self, writable: bool) -> FileSystem:
        if self.provider is None:
            self.provider = self._make()
        return await self.provider.open_session(writable=writable)

    def close(self) -> None:
        if self.provider is not None:
            asyncio.run(self.provider.aclose())


def async_test(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test method in a fresh event loop."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


def file_stat(size: int, mode: int = 0o644, mtime_ns: int = 1_700_000_000_123_456_789) -> Stat:
    return Stat(mode=stat.S_IFREG | mode, size=size, mtime_ns=mtime_ns)


def dir_stat(mode: int = 0o755) -> Stat:
    return Stat(mode=stat.S_IFDIR | mode, mtime_ns=1_600_000_000_000_000_000)


async def write_file(fs: FileSystem, path: bytes, data: bytes, *, pieces: int = 3) -> None:
    writer = await fs.create(path)
    step = max(1, len(data) // pieces)
    for start in range(0, len(data), step):
        await writer.write(data[start : start + step])
    await writer.commit(file_stat(len(data)))


async def read_file(fs: FileSystem, path: bytes) -> bytes:
    reader = await fs.open_read(path)
    try:
        return b"".join([piece async for piece in reader.stream(1 << 16)])
    finally:
        await reader.close()


async def expect_errno(err: int, awaitable: Awaitable[Any]) -> FsError:
    with pytest.raises(FsError) as info:
        await awaitable
    assert info.value.errno == err, info.value
    return info.value


class FileSystemContract:
    """Behaviour every `FileSystem` implementation must show."""

    @async_test
    async def test_file_round_trip_and_stat(self, fs_env: FsEnv) -> None:
        fs = await fs_env.open(True)
        data = os.urandom(300_000)
        await write_file(fs, b"f", data)
        st = await fs.lstat(b"f")
        assert st is not None and st.is_file() and st.size == len(data)
        assert st.mtime_ns == file_stat(0).mtime_ns
        assert await read_file(fs, b"f") == data
        reader = await fs.open_read(b"f")
        assert reader.size == len(data)
        assert await reader.read(1000, 500) == data[1000:1500]
        assert await reader.read(len(data) - 10, 100) == data[-10:]
        assert await reader.read(len(data) + 5, 10) == b""
        await reader.close()
        await fs.close(True)
        later = await fs_env.open(False)
        assert await read_file(later, b"f") == data
        await later.close(True)

    @async_test
    async def test_uncommitted_file_is_invisible_and_abort_discards(self, fs_env: FsEnv) -> None:
        fs = await fs_env.open(True)
        writer = await fs.create(b"pending")
        await writer.write(b"half")
        assert await fs.lstat(b"pending") is None
        await writer.abort()
        assert await fs.lstat(b"pending") is None
        assert [name for name, _ in await fs.listdir(b"")] == []
        await fs.close(True)

    @async_test
    async def test_commit_replaces_and_checks_size(self, fs_env: FsEnv) -> None:
        fs = await fs_env.open(True)
        await write_file(fs, b"f", b"old content")
        await write_file(fs, b"f", b"new")
        assert await read_file(fs, b"f") == b"new"
        writer = await fs.create(b"g")
        await writer.write(b"abc")
        await expect_errno(errno.EINVAL, writer.commit(file_stat(4)))
        await fs.close(True)

    @async_test
    async def test_holes_read_as_zeros(self, fs_env: FsEnv) -> None:
        fs = await fs_env.open(True)
        writer = await fs.create(b"sparse")
        await writer.write(b"head")
        await writer.write_zeros(5 << 20)
        await writer.write(b"tail")
        await writer.commit(file_stat(8 + (5 << 20)))
        data = await read_file(fs, b"sparse")
        assert data == b"head" + bytes(5 << 20) + b"tail"
        await fs.close(True)

    @async_test
    async def test_directories_and_sorted_listing(self, fs_env: FsEnv) -> None:
        fs = await fs_env.open(True)
        await fs.mkdir(b"d", dir_stat())
        await expect_errno(errno.EEXIST, fs.mkdir(b"d", dir_stat()))
        for name in ODD_NAMES:
            await write_file(fs, b"d/" + name, name)
        await fs.mkdir(b"d/sub", dir_stat())
        names = [name for name, _ in await fs.listdir(b"d")]
        assert names == sorted([*ODD_NAMES, b"sub"])
        for name in ODD_NAMES:
            assert await read_file(fs, b"d/" + name) == name
        st = await fs.lstat(b"d/sub")
        assert st is not None and st.is_dir()
        await expect_errno(errno.ENOENT, fs.listdir(b"missing"))
        await expect_errno(errno.ENOTDIR, fs.listdir(b"d/" + ODD_NAMES[0]))
        await expect_errno(errno.ENOENT, fs.create(b"missing/f"))
        assert await fs.lstat(b"missing/f") is None
        await fs.close(True)

    @async_test
    async def test_deep_tree(self, fs_env: FsEnv) -> None:
        fs = await fs_env.open(True)
        path = b""
        for depth in range(40):
            path = path + b"/" + b"level%d" % depth if path else b"level0"
            await fs.mkdir(path, dir_stat())
        await write_file(fs, path + b"/leaf", b"deep")
        await fs.close(True)
        later = await fs_env.open(False)
        assert await read_file(later, path + b"/leaf") == b"deep"
        await later.close(True)

    @async_test
    async def test_symlink_fifo_and_hard_link(self, fs_env: FsEnv) -> None:
        fs = await fs_env.open(True)
        await fs.symlink(b"ln", Stat(mode=stat.S_IFLNK | 0o777, link_target=b"../x\xff"))
        st = await fs.lstat(b"ln")
        assert st is not None and st.is_symlink() and st.link_target == b"../x\xff"
        await fs.mknod(b"fifo", Stat(mode=stat.S_IFIFO | 0o600))
        st = await fs.lstat(b"fifo")
        assert st is not None and stat.S_ISFIFO(st.mode)
        await write_file(fs, b"a", b"shared")
        await fs.link(b"b", b"a")
        sa, sb = await fs.lstat(b"a"), await fs.lstat(b"b")
        assert sa is not None and sb is not None
        assert sa.link_key is not None and sa.link_key == sb.link_key
        assert await read_file(fs, b"b") == b"shared"
        await fs.close(True)

    @async_test
    async def test_copy_is_a_new_file_with_new_metadata(self, fs_env: FsEnv) -> None:
        """copy (--copy-dest): the content of one file, the metadata given, no link."""
        fs = await fs_env.open(True)
        await write_file(fs, b"src", b"shared content" * 1000)
        await fs.mkdir(b"d", dir_stat())
        await fs.copy(b"d/copy", b"src", file_stat(14000, mode=0o600, mtime_ns=5_000_000_001))
        st, src = await fs.lstat(b"d/copy"), await fs.lstat(b"src")
        assert st is not None and src is not None and st.is_file()
        assert (stat.S_IMODE(st.mode), st.mtime_ns, st.size) == (0o600, 5_000_000_001, 14000)
        assert st.link_key is None and src.link_key is None
        assert stat.S_IMODE(src.mode) == 0o644
        assert await read_file(fs, b"d/copy") == b"shared content" * 1000
        await write_file(fs, b"src", b"changed")
        assert await read_file(fs, b"d/copy") == b"shared content" * 1000
        await fs.close(True)

    @async_test
    async def test_hard_links_of_other_kinds_share_a_link_key(self, fs_env: FsEnv) -> None:
        """-H links symlinks, fifos and devices too: each pair must show as one inode."""
        fs = await fs_env.open(True)
        await fs.symlink(b"ln", Stat(mode=stat.S_IFLNK | 0o777, link_target=b"t"))
        await fs.mknod(b"fifo", Stat(mode=stat.S_IFIFO | 0o600))
        await write_file(fs, b"alone", b"x")
        for name in (b"ln", b"fifo"):
            await fs.link(name + b"2", name)
            one, two = await fs.lstat(name), await fs.lstat(name + b"2")
            assert one is not None and two is not None and one.kind == two.kind
            assert one.link_key is not None and one.link_key == two.link_key, name
        ln, fifo, alone = await fs.lstat(b"ln"), await fs.lstat(b"fifo"), await fs.lstat(b"alone")
        assert ln is not None and fifo is not None and alone is not None
        assert ln.link_key != fifo.link_key and alone.link_key is None
        await fs.close(True)

    @async_test
    async def test_set_stat(self, fs_env: FsEnv) -> None:
        fs = await fs_env.open(True)
        await write_file(fs, b"f", b"x")
        await fs.set_stat(b"f", file_stat(1, mode=0o600, mtime_ns=1_234_567_890_000_000_001))
        st = await fs.lstat(b"f")
        assert st is not None and stat.S_IMODE(st.mode) == 0o600 and st.is_file()
        assert st.mtime_ns == 1_234_567_890_000_000_001
        await fs.mkdir(b"d", dir_stat())
        await fs.set_stat(b"d", dir_stat(0o750))
        st = await fs.lstat(b"d")
        assert st is not None and st.is_dir() and stat.S_IMODE(st.mode) == 0o750
        await expect_errno(errno.ENOENT, fs.set_stat(b"nope", file_stat(0)))
        await fs.close(True)

    @async_test
    async def test_rename_rules(self, fs_env: FsEnv) -> None:
        fs = await fs_env.open(True)
        await fs.mkdir(b"d", dir_stat())
        await write_file(fs, b"d/f", b"one")
        await write_file(fs, b"g", b"two")
        await fs.rename(b"d/f", b"h")
        assert await fs.lstat(b"d/f") is None
        assert await read_file(fs, b"h") == b"one"
        await fs.rename(b"g", b"h")  # replaces a file
        assert await read_file(fs, b"h") == b"two"
        await write_file(fs, b"d/inner", b"three")
        await fs.rename(b"d", b"e")
        assert await read_file(fs, b"e/inner") == b"three"
        await expect_errno(errno.EINVAL, fs.rename(b"e", b"e/sub"))
        await expect_errno(errno.EISDIR, fs.rename(b"h", b"e"))
        await expect_errno(errno.ENOENT, fs.rename(b"nope", b"x"))
        await fs.close(True)
        later = await fs_env.open(False)
        assert [name for name, _ in await later.listdir(b"")] == [b"e", b"h"]
        await later.close(True)

    @async_test
    async def test_remove_rules(self, fs_env: FsEnv) -> None:
        fs = await fs_env.open(True)
        await fs.mkdir(b"d", dir_stat())
        await write_file(fs, b"d/f", b"x")
        await expect_errno(errno.ENOTEMPTY, fs.remove(b"d"))
        await fs.remove(b"d/f")
        await fs.remove(b"d")
        assert await fs.lstat(b"d") is None
        await expect_errno(errno.ENOENT, fs.remove(b"d"))
        await fs.close(True)

    @async_test
    async def test_read_only_session_refuses_writes(self, fs_env: FsEnv) -> None:
        fs = await fs_env.open(True)
        await write_file(fs, b"f", b"x")
        await fs.close(True)
        ro = await fs_env.open(False)
        assert ro.read_only
        await expect_errno(errno.EROFS, fs_create(ro, b"g"))
        await expect_errno(errno.EROFS, ro.mkdir(b"d", dir_stat()))
        await expect_errno(errno.EROFS, ro.remove(b"f"))
        await expect_errno(errno.EROFS, ro.set_stat(b"f", file_stat(1)))
        assert await read_file(ro, b"f") == b"x"
        await ro.close(True)

    @async_test
    async def test_open_read_refuses_non_files(self, fs_env: FsEnv) -> None:
        fs = await fs_env.open(True)
        await fs.mkdir(b"d", dir_stat())
        await expect_errno(errno.EISDIR, fs.open_read(b"d"))
        await expect_errno(errno.ENOENT, fs.open_read(b"nothing"))
        await fs.close(True)

    @async_test
    async def test_unsafe_paths_are_refused(self, fs_env: FsEnv) -> None:
        fs = await fs_env.open(True)
        for path in (b"../escape", b"a/../../b", b"./x", b"a//b"):
            with pytest.raises(FsError):
                await fs.create(path)
        await fs.close(False)


async def fs_create(fs: FileSystem, path: bytes) -> None:
    writer = await fs.create(path)
    await writer.abort()
