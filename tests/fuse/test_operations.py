"""The request handlers called directly, for what the kernel rarely sends or hides.

No mount here: `StoreOperations` over a volume on a memory backend, driven on trio the
way pyfuse3 drives it. Covers `.`/`..` lookups (the kernel answers those from its own
caches unless the file system is exported over NFS), open flags, the read-ahead
window under sequential, random and concurrent reads of one handle, errors that
must surface as FUSEError errnos, and ACLs shown as the kernel's xattr values.
"""

from __future__ import annotations

import errno
import os
import random
import stat
from collections.abc import Awaitable, Callable

import pyfuse3
import pytest
import trio

from blockstore.backend import NotFoundError
from blockstore.backends.memory import MemoryBackend
from blockstore.fuse import reader as reader_mod
from blockstore.fuse.fs import StoreOperations, fuse_errno
from blockstore.fuse.inodes import ROOT_INODE, SNAPSHOTS_INODE
from blockstore.volume import ChunkParams, TreeEntry, Volume, VolumeParams
from rsyncd_py.protocol import acl_blob
from tests.fuse.builders import put_bytes

DATA = random.Random(5).randbytes(600_000)  # ~150 blocks of ~4 KiB
PIECES = [DATA[:100_000], 3_000_000, DATA[100_000:]]  # data, a 3 MB hole, data
CONTENT = DATA[:100_000] + bytes(3_000_000) + DATA[100_000:]


def _volume() -> Volume:
    volume = Volume(MemoryBackend(), params=VolumeParams(ChunkParams.for_average(4096)))
    tx = volume.begin()
    tx.mkdir(b"a", TreeEntry(b"a", stat.S_IFDIR | 0o755))
    tx.mkdir(b"a/b", TreeEntry(b"b", stat.S_IFDIR | 0o700))
    put_bytes(tx, volume, b"a/b/file", TreeEntry(b"file", stat.S_IFREG | 0o644), PIECES)
    tx.commit()
    return volume


Scenario = Callable[[StoreOperations], Awaitable[None]]


def _run(volume: Volume, scenario: Scenario) -> None:
    operations = StoreOperations(volume, volume.latest())

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            operations.nursery = nursery
            await scenario(operations)
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        volume.close()


async def _ino(ops: StoreOperations, *names: bytes, parent: int = ROOT_INODE) -> int:
    for name in names:
        parent = (await ops.lookup(parent, name, None)).st_ino  # type: ignore[arg-type]
    return parent


def test_dot_and_dot_dot() -> None:
    async def scenario(ops: StoreOperations) -> None:
        a = await _ino(ops, b"a")
        b = await _ino(ops, b"b", parent=a)
        assert await _ino(ops, b".", parent=b) == b
        assert await _ino(ops, b"..", parent=b) == a
        assert await _ino(ops, b"..", parent=a) == ROOT_INODE
        assert await _ino(ops, b"..", parent=ROOT_INODE) == ROOT_INODE
        snapshot_id = ops.volume.latest().id.encode()  # type: ignore[union-attr]
        top = await _ino(ops, b".snapshots", snapshot_id)
        assert top not in (ROOT_INODE, a)
        assert await _ino(ops, b"..", parent=top) == SNAPSHOTS_INODE
        assert await _ino(ops, b"..", parent=SNAPSHOTS_INODE) == ROOT_INODE
        deep_b = await _ino(ops, b"a", b"b", parent=top)
        assert deep_b != b
        assert await _ino(ops, b"..", b"..", parent=deep_b) == top
        missing = await ops.lookup(a, b"nothing", None)  # type: ignore[arg-type]
        assert missing.st_ino == 0  # a negative entry the kernel may cache
        with pytest.raises(pyfuse3.FUSEError) as unknown:
            await ops.lookup(SNAPSHOTS_INODE, b"20000101T000000.000000Z-00000000", None)  # type: ignore[arg-type]
        assert unknown.value.errno == errno.ENOENT

    _run(_volume(), scenario)


def test_open_refuses_writing_and_non_files() -> None:
    async def scenario(ops: StoreOperations) -> None:
        file = await _ino(ops, b"a", b"b", b"file")
        for flags in (os.O_WRONLY, os.O_RDWR):
            with pytest.raises(pyfuse3.FUSEError) as refused:
                await ops.open(file, flags, None)  # type: ignore[arg-type]
            assert refused.value.errno == errno.EROFS
        with pytest.raises(pyfuse3.FUSEError) as directory:
            await ops.open(await _ino(ops, b"a"), os.O_RDONLY, None)  # type: ignore[arg-type]
        assert directory.value.errno == errno.EISDIR
        with pytest.raises(pyfuse3.FUSEError) as write:
            await ops.mkdir(ROOT_INODE, b"x", 0o755, None)  # type: ignore[arg-type]
        assert write.value.errno == errno.EROFS

    _run(_volume(), scenario)


def test_reads_sequential_random_and_concurrent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader_mod, "READ_AHEAD_BYTES", 64 << 10)
    monkeypatch.setattr(reader_mod, "WINDOW_BYTES", 128 << 10)
    rng = random.Random(11)

    async def scenario(ops: StoreOperations) -> None:
        file = await _ino(ops, b"a", b"b", b"file")
        attrs = await ops.getattr(file, None)
        assert attrs.st_size == len(CONTENT)
        assert attrs.st_blocks == -(-len(DATA) // 512)  # block list in list objects
        fh = (await ops.open(file, os.O_RDONLY, None)).fh  # type: ignore[arg-type]
        sequential = [await ops.read(fh, offset, 131072)
                      for offset in range(0, len(CONTENT) + 131072, 131072)]
        assert b"".join(sequential) == CONTENT
        spans = [(rng.randrange(len(CONTENT) + 100), rng.choice((1, 5000, 131072)))
                 for _ in range(80)]
        results: dict[int, bytes] = {}

        async def read(index: int, offset: int, length: int) -> None:
            results[index] = await ops.read(fh, offset, length)

        async with trio.open_nursery() as readers:  # many reads of one handle at once
            for index, (offset, length) in enumerate(spans):
                readers.start_soon(read, index, offset, length)
        for index, (offset, length) in enumerate(spans):
            assert results[index] == CONTENT[offset : offset + length], (offset, length)
        await ops.release(fh)

    _run(_volume(), scenario)


def test_store_errors_become_errnos() -> None:
    volume = _volume()
    backend = volume.backend
    doomed = [key for key, _size in backend.list("blocks/")][:3]
    for key in doomed:
        backend.delete(key)
    assert fuse_errno(NotFoundError("gone")) == errno.EIO  # missing object: not ENOENT

    async def scenario(ops: StoreOperations) -> None:
        file = await _ino(ops, b"a", b"b", b"file")
        fh = (await ops.open(file, os.O_RDONLY, None)).fh  # type: ignore[arg-type]
        failures = set()
        for offset in range(0, len(CONTENT), 131072):
            try:
                data = await ops.read(fh, offset, 131072)
            except pyfuse3.FUSEError as exc:
                failures.add(exc.errno)
            else:
                assert data == CONTENT[offset : offset + 131072]
        assert failures == {errno.EIO}

    _run(volume, scenario)


def test_acls_show_as_the_kernel_values_acl_blob_defines() -> None:
    """xattrs.py reads Stat.acl on its own (blockstore may not import rsyncd_py): it must
    give exactly the values rsyncd_py/protocol/acl_blob.py gives for the same blob."""
    user, group = acl_blob.ACL_UNDEFINED_ID, 1000
    access = acl_blob.pack_posix_acl([
        (acl_blob.ACL_USER_OBJ, 7, user), (acl_blob.ACL_USER, 6, group),
        (acl_blob.ACL_GROUP_OBJ, 5, user), (acl_blob.ACL_MASK, 6, user),
        (acl_blob.ACL_OTHER, 1, user),
    ])  # fmt: skip
    no_mask = acl_blob.pack_posix_acl([
        (acl_blob.ACL_USER_OBJ, 6, user), (acl_blob.ACL_GROUP_OBJ, 4, user),
        (acl_blob.ACL_GROUP, 2, group), (acl_blob.ACL_OTHER, 0, user),
    ])  # fmt: skip
    cases = {
        b"masked": (stat.S_IFREG | 0o640, acl_blob.pack_acl_blob(access, None)),
        b"unmasked": (stat.S_IFREG | 0o754, acl_blob.pack_acl_blob(no_mask, None)),
        b"dir": (stat.S_IFDIR | 0o750, acl_blob.pack_acl_blob(access, access)),
        b"default-only": (stat.S_IFDIR | 0o700, acl_blob.pack_acl_blob(None, access)),
        b"plain": (stat.S_IFREG | 0o600, None),
        b"bad": (stat.S_IFREG | 0o600, b"\x08\x00\x00\x00" + bytes(8)),
    }
    volume = Volume(MemoryBackend())
    tx = volume.begin()
    for name, (mode, acl) in cases.items():
        entry = TreeEntry(name, mode, acl=acl, xattrs=((b"user.z", b"last"),))
        if stat.S_ISDIR(mode):
            tx.mkdir(name, entry)
        else:
            put_bytes(tx, volume, name, entry, [b"x"])
    tx.commit()

    async def scenario(ops: StoreOperations) -> None:
        for name, (mode, acl) in cases.items():
            if name == b"bad":
                continue
            ino = await _ino(ops, name)
            access_value, default_value = acl_blob.acl_xattrs(acl, mode)
            want = {acl_blob.ACCESS_XATTR: access_value, acl_blob.DEFAULT_XATTR: default_value}
            want = {key: value for key, value in want.items() if value is not None}
            want[b"user.z"] = b"last"
            assert await ops.listxattr(ino, None) == sorted(want), name  # type: ignore[arg-type]
            for key, value in want.items():
                assert await ops.getxattr(ino, key, None) == value, (name, key)  # type: ignore[arg-type]
        with pytest.raises(pyfuse3.FUSEError) as damaged:
            await ops.getxattr(await _ino(ops, b"bad"), b"user.z", None)  # type: ignore[arg-type]
        assert damaged.value.errno == errno.EIO

    _run(volume, scenario)
