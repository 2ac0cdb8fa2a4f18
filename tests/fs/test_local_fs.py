"""The local file system: the shared contract plus what only a real directory shows.

Local-only behaviour: confinement (no symlink in a path is followed, nothing outside the
root is touched), real holes, nanosecond and out-of-range times on disk, owners, set-id
bits, xattrs, device nodes, and that an uncommitted writer leaves no trace on disk.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from rsyncd_py.fs.base import FsError, Stat
from rsyncd_py.fs.local import LocalFileSystem, LocalProvider
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

IS_ROOT = os.geteuid() == 0


class LocalEnv(ProviderEnv):
    """Sessions of one `LocalProvider` over the directory `root`."""

    def __init__(self, root: Path) -> None:
        super().__init__(lambda: LocalProvider(os.fsencode(root)))
        self.root = root


@pytest.fixture
def fs_env(tmp_path: Path) -> Iterator[LocalEnv]:
    root = tmp_path / "root"
    root.mkdir()
    env = LocalEnv(root)
    yield env
    env.close()


class TestLocalContract(FileSystemContract):
    pass


class TestConfinement:
    @async_test
    async def test_symlinked_directory_is_never_followed(self, fs_env: LocalEnv) -> None:
        outside = fs_env.root.parent / "outside"
        outside.mkdir()
        (outside / "secret").write_bytes(b"s")
        (fs_env.root / "link").symlink_to(outside)
        fs = await fs_env.open(True)
        assert (await fs.lstat(b"link")).is_symlink()  # type: ignore[union-attr]
        assert await fs.lstat(b"link/secret") is None
        await expect_errno(errno.ENOTDIR, fs.listdir(b"link"))
        await expect_errno(errno.ENOTDIR, fs.create(b"link/new"))
        await expect_errno(errno.ENOTDIR, fs.open_read(b"link/secret"))
        await expect_errno(errno.ENOTDIR, fs.mkdir(b"link/d", dir_stat()))
        await expect_errno(errno.ENOTDIR, fs.remove(b"link/secret"))
        assert sorted(os.listdir(outside)) == ["secret"]
        await fs.close(True)

    @async_test
    async def test_final_symlink_is_not_followed(self, fs_env: LocalEnv) -> None:
        outside = fs_env.root.parent / "target"
        outside.write_bytes(b"t")
        outside.chmod(0o644)
        (fs_env.root / "ln").symlink_to(outside)
        fs = await fs_env.open(True)
        await fs.set_stat(b"ln", Stat(mode=stat.S_IFLNK | 0o777, mtime_ns=5_000_000_001))
        assert stat.S_IMODE(outside.stat().st_mode) == 0o644
        assert os.lstat(fs_env.root / "ln").st_mtime_ns == 5_000_000_001
        await expect_errno(errno.ELOOP, fs.open_read(b"ln"))
        await fs.remove(b"ln")
        assert outside.read_bytes() == b"t"
        await fs.close(True)

    @async_test
    async def test_root_itself(self, fs_env: LocalEnv) -> None:
        fs = await fs_env.open(True)
        st = await fs.lstat(b"")
        assert st is not None and st.is_dir()
        await fs.set_stat(b"", Stat(mode=stat.S_IFDIR | 0o711, mtime_ns=7_000_000_000))
        assert stat.S_IMODE(fs_env.root.stat().st_mode) == 0o711
        await expect_errno(errno.EBUSY, fs.remove(b""))
        await fs.close(True)

    def test_provider_refuses_a_missing_or_non_directory_root(self, tmp_path: Path) -> None:
        with pytest.raises(FsError) as info:
            LocalProvider(os.fsencode(tmp_path / "missing"))
        assert info.value.errno == errno.ENOENT
        (tmp_path / "file").write_bytes(b"")
        with pytest.raises(FsError) as info:
            LocalProvider(os.fsencode(tmp_path / "file"))
        assert info.value.errno == errno.ENOTDIR


class TestOnDisk:
    @async_test
    async def test_uncommitted_writers_leave_no_trace(self, fs_env: LocalEnv) -> None:
        fs = await fs_env.open(True)
        await write_file(fs, b"kept", b"old")
        writer = await fs.create(b"kept")
        await writer.write(os.urandom(3 << 20))
        other = await fs.create(b"new")
        await other.write(b"partial")
        assert sorted(os.listdir(fs_env.root)) == ["kept"]
        await fs.close(False)  # the session ends without committing either writer
        assert sorted(os.listdir(fs_env.root)) == ["kept"]
        assert (fs_env.root / "kept").read_bytes() == b"old"

    @async_test
    async def test_write_zeros_makes_real_holes(self, fs_env: LocalEnv) -> None:
        fs = await fs_env.open(True)
        writer = await fs.create(b"sparse")
        await writer.write(b"x" * 4096)
        await writer.write_zeros(64 << 20)
        await writer.write(b"y" * 4096)
        await writer.write_zeros(1 << 20)  # a trailing hole still counts in the size
        size = 8192 + (65 << 20)
        await writer.commit(file_stat(size))
        st = os.stat(fs_env.root / "sparse")
        assert st.st_size == size
        assert st.st_blocks * 512 < 1 << 20
        await fs.close(True)

    @async_test
    async def test_times_modes_and_owner(self, fs_env: LocalEnv) -> None:
        fs = await fs_env.open(True)
        cases = {
            b"ns": 1_700_000_000_123_456_789,
            b"pre1970": -86_400 * 365 * 10 * 10**9 + 1,
            b"future": 4_102_444_800_999_999_999,  # 2100-01-01
        }
        uid, gid = (1234, 4321) if IS_ROOT else (os.geteuid(), os.getegid())
        for name, mtime in cases.items():
            writer = await fs.create(name)
            await writer.write(b"t")
            await writer.commit(
                Stat(mode=stat.S_IFREG | 0o4755, size=1, mtime_ns=mtime, uid=uid, gid=gid)
            )
            st = await fs.lstat(name)
            assert st is not None and st.mtime_ns == mtime
            assert stat.S_IMODE(st.mode) == 0o4755
            assert (st.uid, st.gid) == (uid, gid)
        await fs.mkdir(b"d", Stat(mode=stat.S_IFDIR | 0o500, uid=uid, gid=gid))
        st = await fs.lstat(b"d")
        assert st is not None and stat.S_IMODE(st.mode) == 0o700  # writable until set_stat
        await fs.set_stat(b"d", Stat(mode=stat.S_IFDIR | 0o2755, mtime_ns=-1, uid=uid, gid=gid))
        st = await fs.lstat(b"d")
        assert st is not None and stat.S_IMODE(st.mode) == 0o2755 and st.mtime_ns == -1
        await fs.close(True)

    @async_test
    async def test_xattrs_round_trip(self, fs_env: LocalEnv) -> None:
        fs = await fs_env.open(True)
        writer = await fs.create(b"f")
        await writer.write(b"x")
        attrs = ((b"user.a", b"1"), (b"user.b", b"\x00\xff"))
        await writer.commit(Stat(mode=stat.S_IFREG | 0o644, size=1, xattrs=attrs))
        st = await fs.lstat(b"f")
        assert st is not None and st.xattrs == attrs
        await fs.set_stat(b"f", Stat(mode=stat.S_IFREG | 0o644, xattrs=((b"user.b", b"2"),)))
        assert os.listxattr(fs_env.root / "f") == ["user.b"]
        await fs.close(True)

    @pytest.mark.skipif(not IS_ROOT, reason="mknod of a device needs root")
    @async_test
    async def test_device_nodes(self, fs_env: LocalEnv) -> None:
        fs = await fs_env.open(True)
        rdev = os.makedev(1, 3)
        await fs.mknod(b"null", Stat(mode=stat.S_IFCHR | 0o666, rdev=rdev))
        await fs.mknod(b"null", Stat(mode=stat.S_IFCHR | 0o600, rdev=rdev))  # replaces
        st = await fs.lstat(b"null")
        assert st is not None and stat.S_ISCHR(st.mode) and st.rdev == rdev
        assert stat.S_IMODE(st.mode) == 0o600
        await fs.close(True)

    @async_test
    async def test_hard_link_to_itself_and_over_a_file(self, fs_env: LocalEnv) -> None:
        fs = await fs_env.open(True)
        await write_file(fs, b"a", b"data")
        await write_file(fs, b"b", b"other")
        await fs.link(b"b", b"a")
        await fs.link(b"b", b"a")  # already the same inode: nothing changes
        assert os.stat(fs_env.root / "a").st_nlink == 2
        assert sorted(os.listdir(fs_env.root)) == ["a", "b"]
        assert await read_file(fs, b"b") == b"data"
        await fs.mkdir(b"d", dir_stat())
        link = Stat(mode=stat.S_IFLNK | 0o777, link_target=b"x")
        await expect_errno(errno.EISDIR, fs.symlink(b"d", link))  # never replaces a directory
        assert sorted(os.listdir(fs_env.root)) == ["a", "b", "d"]
        await fs.close(True)

    @async_test
    async def test_stream_reads_exactly_the_size_opened(self, fs_env: LocalEnv) -> None:
        data = os.urandom((3 << 20) + 17)
        (fs_env.root / "big").write_bytes(data)
        fs = await fs_env.open(False)
        reader = await fs.open_read(b"big")
        with open(fs_env.root / "big", "ab") as grow:
            grow.write(b"appended later")
        chunks = [chunk async for chunk in reader.stream()]
        assert b"".join(chunks) == data and max(map(len, chunks)) == 1 << 20
        assert await reader.read(1 << 20, 2 << 20) == data[1 << 20 : 3 << 20]
        await reader.close()
        await fs.close(True)


def test_unsafe_path_error_names_the_path(tmp_path: Path) -> None:
    fs = LocalFileSystem(os.fsencode(tmp_path), read_only=True)
    with pytest.raises(FsError) as info:
        import asyncio

        asyncio.run(fs.lstat(b"a/../../etc"))
    assert info.value.errno == errno.EINVAL and info.value.path == b"a/../../etc"
