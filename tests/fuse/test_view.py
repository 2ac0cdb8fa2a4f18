"""What a mounted store shows, checked with the ordinary file APIs against the source tree.

One store per worker holds two snapshots: "old" (the varied tree of
tests/helpers/trees.py plus a sparse file, a file of hundreds of small blocks whose
block list lives in list objects, and user xattrs) and "new" (some files changed,
removed and added). The mount must show "new" at the root and both under
`.snapshots/`, each equal to the source tree it was made from: content, types, modes,
owners, ns mtimes, symlinks, devices, fifos, hard links (one inode, nlink 2), xattrs
and POSIX ACLs (as getfacl shows them); sparse files must be sparse for `du`; writes
must fail with EROFS.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pwd
import random
import stat
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from blockstore.factory import create_store
from blockstore.volume import ChunkParams, Snapshot, VolumeParams, open_volume
from tests.fuse.builders import entry_of, import_tree, put_bytes, sparse_pieces
from tests.fuse.mounts import Mount, Mounter, require_fuse
from tests.helpers.trees import Tree, assert_same_tree, build_varied_tree, snapshot, write_file

MiB = 1 << 20
SPARSE_SIZE = 4 * MiB
LONG_SIZE = 2 * MiB  # ~700 blocks of ~3 KiB: a block list in list objects


@dataclass
class History:
    store: str
    src: Path
    old: Snapshot
    new: Snapshot
    expected_old: Tree
    expected_new: Tree
    mount: Mount


def _add_extras(src: Path) -> None:
    with open(src / "sparse", "wb") as out:
        out.write(random.Random(7).randbytes(5000))
        out.seek(3 * MiB + 5000)
        out.write(random.Random(8).randbytes(3000))
        out.truncate(SPARSE_SIZE)
    with open(src / "all-hole", "wb") as out:
        out.truncate(8 * MiB)
    (src / "long").write_bytes(random.Random(9).randbytes(LONG_SIZE))
    os.setxattr(src / "size-700", "user.comment", b"seven hundred")
    os.setxattr(src / "size-700", "user.binary", bytes(range(256)))
    os.setxattr(src / "dir", "user.on-a-dir", b"")
    for acl in (["-m", "u:nobody:rw,g:daemon:r", "size-700"],
                ["-m", "u:nobody:rx,d:u:nobody:rwx,d:g::r", "dir"]):
        subprocess.run(["setfacl", *acl], cwd=src, check=True)


def _change(src: Path) -> None:
    """The changes between "old" and "new", made on disk (the store gets the same)."""
    (src / "size-1").unlink()
    data = (src / "size-700").read_bytes()
    mtime = (src / "size-700").stat().st_mtime_ns
    write_file(src / "size-700", bytes(reversed(data)), mtime + 1)
    write_file(src / "new-file", b"only in the new snapshot", 1_700_000_000_123_456_789)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    require_fuse()
    base = tmp_path_factory.mktemp("history")
    src = build_varied_tree(base / "src", big=False)
    _add_extras(src)
    store = str(base / "store")
    create_store(store, volume=VolumeParams(ChunkParams.for_average(4096)).to_config())
    volume = open_volume(store, state_dir=base / "writer-state")
    try:
        tx = volume.begin()
        import_tree(tx, volume, src)
        old = tx.commit()
        expected_old = snapshot(src)
        _change(src)
        tx = volume.begin()
        tx.remove(b"size-1")
        put_bytes(tx, volume, b"size-700", entry_of(os.fsencode(src / "size-700"), b"size-700"),
                  [(src / "size-700").read_bytes()])
        put_bytes(tx, volume, b"new-file", entry_of(os.fsencode(src / "new-file"), b"new-file"),
                  [(src / "new-file").read_bytes()])
        tx.set_meta(b"", entry_of(os.fsencode(src), b""))
        new = tx.commit()
    finally:
        volume.close()
    assert old is not None and new is not None
    mounter = Mounter(base)
    try:
        mount = mounter.mount(store)
        yield History(store, src, old, new, expected_old, snapshot(src), mount)
    finally:
        mounter.cleanup()


def test_root_is_the_newest_snapshot_exactly(history: History) -> None:
    assert_same_tree(history.expected_new, snapshot(history.mount.path))
    assert ".snapshots" not in os.listdir(history.mount.path)  # reachable, never listed


def test_every_snapshot_is_under_dot_snapshots(history: History) -> None:
    snapshots = history.mount.path / ".snapshots"
    assert os.listdir(snapshots) == [history.old.id, history.new.id]
    for snap, tree in ((history.old, history.expected_old),
                       (history.new, history.expected_new)):
        top = snapshots / snap.id
        assert os.stat(top).st_mtime_ns == snap.time_ns  # as in a pull of /.snapshots
        assert_same_tree({**tree, b".": replace(tree[b"."], mtime_ns=snap.time_ns)},
                         snapshot(top))
    old_700 = (snapshots / history.old.id / "size-700").read_bytes()
    assert old_700 == bytes(reversed((history.mount.path / "size-700").read_bytes()))
    assert not (history.mount.path / "size-1").exists()
    assert (snapshots / history.old.id / "size-1").exists()
    with pytest.raises(FileNotFoundError):
        os.stat(snapshots / "20000101T000000.000000Z-00000000")


def test_inode_numbers_are_stable_and_hard_links_share_one(history: History) -> None:
    root = history.mount.path
    a, b = os.stat(root / "hard-a"), os.stat(root / "hard-b")
    assert a.st_ino == b.st_ino and a.st_nlink == b.st_nlink == 2
    assert os.stat(root / "size-0").st_nlink == 1
    assert os.stat(root / "hard-a").st_ino == a.st_ino
    same_tree = root / ".snapshots" / history.new.id
    assert os.stat(same_tree / "hard-a").st_ino not in (a.st_ino, 0)  # another place, another inode
    assert os.stat(root / "dir").st_nlink == 1  # unknown, as btrfs: find must not skip
    numbers: dict[int, set[bytes]] = {}
    top = os.fsencode(root)
    for directory, names, files in os.walk(top):
        for name in names + files:
            path = os.path.join(directory, name)
            numbers.setdefault(os.lstat(path).st_ino, set()).add(os.path.relpath(path, top))
    shared = [paths for paths in numbers.values() if len(paths) > 1]
    assert shared == [{b"hard-a", b"hard-b"}]


def test_sparse_files_stay_sparse(history: History) -> None:
    mounted = history.mount.path / "sparse"
    data = sum(len(p) for p in sparse_pieces(os.fsencode(history.src / "sparse"))
               if isinstance(p, bytes))
    st = os.stat(mounted)
    assert st.st_size == SPARSE_SIZE
    assert st.st_blocks == -(-data // 512) and data < MiB
    assert os.stat(history.mount.path / "all-hole").st_blocks == 0
    assert os.stat(history.mount.path / "long").st_blocks == LONG_SIZE // 512
    with open(mounted, "rb") as f, open(history.src / "sparse", "rb") as source:
        for offset in (0, 4999, 5000, 3 * MiB, 3 * MiB + 4999, 3 * MiB + 7999,
                       SPARSE_SIZE - 1, SPARSE_SIZE):
            assert os.pread(f.fileno(), 70_000, offset) == os.pread(source.fileno(), 70_000, offset)


def test_random_and_concurrent_reads(history: History) -> None:
    mounted, source = history.mount.path / "long", (history.src / "long").read_bytes()
    rng = random.Random(3)
    spans = [(rng.randrange(LONG_SIZE + 10), rng.choice((1, 4095, 65536, 300_000)))
             for _ in range(60)]

    def check(span: tuple[int, int]) -> None:
        fd = os.open(mounted, os.O_RDONLY)
        try:
            offset, length = span
            assert os.pread(fd, length, offset) == source[offset : offset + length]
        finally:
            os.close(fd)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(check, spans))
    with open(mounted, "rb") as f:
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(source).digest()


def test_xattrs_and_acls_are_shown_read_only(history: History) -> None:
    root = history.mount.path
    for rel in ("size-700", "dir", "size-0"):
        want = {n: os.getxattr(history.src / rel, n) for n in os.listxattr(history.src / rel)}
        got = {n: os.getxattr(root / rel, n) for n in os.listxattr(root / rel)}
        assert got == want
        assert _getfacl(root / rel) == _getfacl(history.src / rel)
    assert "system.posix_acl_default" in os.listxattr(root / "dir")
    assert f"user:{pwd.getpwnam('nobody').pw_uid}:rw-" in _getfacl(root / "size-700")
    assert os.getxattr(root / "size-700", "user.binary") == bytes(range(256))
    with pytest.raises(OSError) as missing:
        os.getxattr(root / "size-700", "user.nothing")
    assert missing.value.errno == errno.ENODATA
    with pytest.raises(OSError) as refused:
        os.setxattr(root / "size-700", "user.comment", b"changed")
    assert refused.value.errno == errno.EROFS


def _getfacl(path: Path) -> str:
    return subprocess.run(["getfacl", "-n", "--omit-header", path], capture_output=True,
                          text=True, check=True).stdout


def _attempts(top: Path) -> dict[str, object]:
    return {
        "open for writing": lambda: open(top / "size-0", "r+b"),
        "create": lambda: open(top / "brand-new", "wb"),
        "truncate": lambda: os.truncate(top / "size-700", 0),
        "mkdir": lambda: os.mkdir(top / "newdir"),
        "rmdir": lambda: os.rmdir(top / "empty"),
        "unlink": lambda: os.unlink(top / "size-0"),
        "rename": lambda: os.rename(top / "size-0", top / "renamed"),
        "symlink": lambda: os.symlink("x", top / "new-link"),
        "hard link": lambda: os.link(top / "size-0", top / "new-hard"),
        "chmod": lambda: os.chmod(top / "size-0", 0o777),
        "chown": lambda: os.chown(top / "size-0", 1, 1),
        "utime": lambda: os.utime(top / "size-0", ns=(0, 0)),
        "mkfifo": lambda: os.mkfifo(top / "new-fifo"),
        "mknod": lambda: os.mknod(top / "new-node", 0o600 | stat.S_IFREG),
    }


@pytest.mark.parametrize("where", ["root", "snapshot", "snapshots-dir"])
def test_every_write_fails_with_erofs(history: History, where: str) -> None:
    root = history.mount.path
    if where == "snapshots-dir":
        for attempt in (lambda: os.mkdir(root / ".snapshots" / "fake"),
                        lambda: os.rmdir(root / ".snapshots" / history.old.id),
                        lambda: os.rename(root / ".snapshots" / history.old.id, root / "x")):
            with pytest.raises(OSError) as failure:
                attempt()
            assert failure.value.errno == errno.EROFS
        return
    top = root if where == "root" else root / ".snapshots" / history.old.id
    for name, attempt in _attempts(top).items():
        with pytest.raises(OSError) as failure:
            attempt()  # type: ignore[operator]
        assert failure.value.errno == errno.EROFS, name
    assert (top / "size-0").exists() and not (top / "newdir").exists()


def test_forgotten_inodes_are_freed_and_keep_their_numbers(history: History) -> None:
    if not os.access("/proc/sys/vm/drop_caches", os.W_OK):
        pytest.skip("cannot make the kernel forget inodes (/proc/sys/vm/drop_caches)")
    root = history.mount.path
    numbers = {name: os.lstat(root / name).st_ino for name in os.listdir(root)}
    walked = sum(len(dirs) + len(files) for _top, dirs, files in os.walk(root))
    assert os.statvfs(root).f_files >= walked  # df -i: inodes the kernel holds now
    with open("/proc/sys/vm/drop_caches", "w") as drop:
        drop.write("2")  # dentries and inodes: the kernel sends FORGET for each
    assert os.statvfs(root).f_files <= 4  # root, .snapshots and whatever is still in use
    assert {name: os.lstat(root / name).st_ino for name in os.listdir(root)} == numbers
