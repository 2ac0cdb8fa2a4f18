"""Build test trees deterministically and compare trees the way rsync users would.

`build_varied_tree(root, seed)` makes the tree the interop tests push: every file size
that sits on a block boundary of rsync's delta algorithm, nested and empty
directories, relative/absolute/dangling symlinks, odd modes (0600/0755/4755),
nanosecond, pre-1970 and far-future mtimes, hard links, a fifo (and a device node as
root), and names rsync must carry byte-exactly (spaces, a newline, non-UTF-8 bytes, a
leading dash, 255 bytes, 40 directory levels). The same seed gives the same bytes,
names and times. `add_xattrs(root)` gives two of its files user xattrs (for -X tests).

Every directory, the top one included, gets a time in the past: real rsync 3.2.7 does
not set a directory's time when the source time falls in the current second
(RsyncProject/rsync#802), which would make the oracle disagree with itself.

`snapshot(root)` records everything rsync -aX can transfer about each entry, keyed by
the path relative to `root` (``b"."`` is the root itself); `diff_trees(a, b)` lists the
differences in words, so an assertion failure says what is wrong where.
"""

from __future__ import annotations

import hashlib
import os
import random
import stat
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from pathlib import Path

IS_ROOT = os.geteuid() == 0
KiB, MiB = 1 << 10, 1 << 20

# sizes around rsync's 700-byte default block and its 32 KiB literal chunks
FILE_SIZES = (0, 1, 699, 700, 701, 4096, 64 * KiB, MiB + 7)
BIG_FILE_SIZE = 5 * MiB
ODD_NAMES = (b"with space", b"new\nline", b"latin1-\xe9\xff", b"-leading-dash", b"n" * 255)
DEPTH = 40

# entry fields compared by default; `diff_trees(..., ignore=...)` drops some
ALL_FIELDS = (
    "kind",
    "perms",
    "size",
    "digest",
    "mtime_ns",
    "target",
    "uid",
    "gid",
    "rdev",
    "links",
    "xattrs",
)


@dataclass(frozen=True)
class Entry:
    """What rsync can transfer about one entry (plus allocation for sparse checks)."""

    kind: str  # "file", "dir", "symlink", "fifo", "socket", "chr", "blk"
    perms: int
    size: int = 0
    digest: str = ""  # sha256 of the content (files)
    mtime_ns: int = 0
    target: bytes | None = None  # symlinks
    uid: int = 0
    gid: int = 0
    rdev: tuple[int, int] | None = None  # devices: (major, minor)
    links: tuple[bytes, ...] = ()  # other paths of the same inode (hard links), sorted
    xattrs: tuple[tuple[bytes, bytes], ...] = ()  # sorted, without system.* (ACLs)
    allocated: int = 0  # bytes of disk blocks (st_blocks * 512), for sparse checks


Tree = dict[bytes, Entry]

_KINDS = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "chr",
    stat.S_IFBLK: "blk",
}


# -- building ------------------------------------------------------------------------


class _Builder:
    """Creates entries under `root` and remembers the times to set once all exist."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root = os.fsencode(root)
        self.rng = random.Random(seed)
        self.times: list[tuple[bytes, int]] = []

    def path(self, rel: bytes) -> bytes:
        return self.root if rel == b"." else os.path.join(self.root, rel)

    def mtime(self) -> int:
        """A time in 2001..2033 with a nanosecond part (not a multiple of 1000)."""
        return self.rng.randrange(10**18, 2 * 10**18) // 1000 * 1000 + self.rng.randrange(1, 999)

    def file(self, rel: bytes, size: int, mode: int = 0o644, mtime: int | None = None) -> None:
        with open(self.path(rel), "wb") as out:
            out.write(self.rng.randbytes(size))
        os.chmod(self.path(rel), mode)
        self.times.append((rel, self.mtime() if mtime is None else mtime))

    def dir(self, rel: bytes, mode: int = 0o755) -> None:
        os.mkdir(self.path(rel))
        os.chmod(self.path(rel), mode)
        self.times.append((rel, self.mtime()))

    def symlink(self, rel: bytes, target: bytes) -> None:
        os.symlink(target, self.path(rel))
        self.times.append((rel, self.mtime()))

    def set_times(self) -> None:
        # deepest first, so setting a child's time cannot disturb its directory's
        depth = {b".": -1}
        for rel, mtime in sorted(self.times, key=lambda t: -depth.get(t[0], t[0].count(b"/"))):
            os.utime(self.path(rel), ns=(mtime, mtime), follow_symlinks=False)


def build_varied_tree(root: Path, seed: int = 1, *, big: bool = True) -> Path:
    """Create the varied tree in `root` (made if missing) and return `root`.

    `big=False` leaves out the 5 MiB file, for tests that only check metadata paths.
    """
    root.mkdir(parents=True, exist_ok=True)
    b = _Builder(root, seed)
    for size in FILE_SIZES:
        b.file(b"size-%d" % size, size)
    if big:
        b.file(b"big-random", BIG_FILE_SIZE)
    for mode in (0o600, 0o755, 0o4755):
        b.file(b"mode-%o" % mode, 100, mode)
    b.file(b"mtime-ns", 10, mtime=1_234_567_890_123_456_789)
    b.file(b"mtime-pre1970", 10, mtime=-(10**17) + 987_654_321)  # 1966
    b.file(b"mtime-far-future", 10, mtime=4_102_444_800 * 10**9 + 1)  # 2100-01-01
    b.dir(b"dir")
    b.dir(b"dir/sub")
    b.file(b"dir/sub/nested", 3000)
    b.dir(b"dir/empty")
    b.dir(b"empty")
    b.dir(b"private", 0o700)
    b.file(b"private/f", 5, 0o600)
    b.symlink(b"link-relative", b"size-1")
    b.symlink(b"link-absolute", b"/etc/hostname")
    b.symlink(b"link-dangling", b"does/not/exist")
    b.symlink(b"dir/link-up", b"../size-700")
    b.dir(b"names")
    for name in ODD_NAMES:
        b.file(b"names/" + name, len(name))
    deep = b"deep"
    b.dir(deep)
    for level in range(1, DEPTH):
        deep += b"/d%d" % level
        b.dir(deep)
    b.file(deep + b"/leaf", 4)
    b.file(b"hard-a", 2000)
    os.link(b.path(b"hard-a"), b.path(b"hard-b"))
    os.mkfifo(b.path(b"fifo"), 0o640)
    b.times.append((b"fifo", b.mtime()))
    if IS_ROOT:
        os.mknod(b.path(b"dev-null"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        b.times.append((b"dev-null", b.mtime()))
        os.chown(b.path(b"size-4096"), 1234, 5678)  # ids with no names on this machine
        os.chown(b.path(b"dir/sub"), 1, 1, follow_symlinks=False)  # daemon:daemon
    b.times.append((b".", b.mtime()))
    b.set_times()
    return root


def add_xattrs(root: Path) -> None:
    """Give two files of a varied tree user xattrs (rsync -X carries them, -a does not)."""
    os.setxattr(root / "size-700", "user.origin", b"varied tree")
    os.setxattr(root / "mode-600", "user.empty", b"")


def write_file(path: Path, data: bytes, mtime_ns: int) -> None:
    """Write `data` to `path` and give it `mtime_ns` (for small scenario trees)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def change_percent(path: Path, percent: float, seed: int) -> None:
    """Overwrite `percent` % of `path` in 64 scattered runs, keeping its size and mtime."""
    rng = random.Random(seed)
    data = bytearray(path.read_bytes())
    st = path.stat()
    run = max(1, int(len(data) * percent / 100 / 64))
    for _ in range(64):
        start = rng.randrange(0, len(data) - run)
        data[start : start + run] = rng.randbytes(run)
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


# -- snapshot and comparison ---------------------------------------------------------


def _digest(path: bytes) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def _xattrs(path: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """The xattrs of `path` (not following a symlink), without the system.* namespace."""
    names = [n for n in os.listxattr(path, follow_symlinks=False) if not n.startswith("system.")]
    return tuple(
        sorted((os.fsencode(n), os.getxattr(path, n, follow_symlinks=False)) for n in names)
    )


def snapshot(root: Path | bytes) -> Tree:
    """Return every entry under `root` (without following symlinks), keyed by relative path."""
    base = os.fsencode(root)
    tree: Tree = {}
    inodes: dict[tuple[int, int], list[bytes]] = {}

    def visit(rel: bytes) -> None:
        full = os.path.join(base, rel) if rel != b"." else base
        st = os.lstat(full)
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "other")
        entry = Entry(
            kind=kind,
            perms=stat.S_IMODE(st.st_mode),
            size=st.st_size if kind == "file" else 0,
            digest=_digest(full) if kind == "file" else "",
            mtime_ns=st.st_mtime_ns,
            target=os.readlink(full) if kind == "symlink" else None,
            uid=st.st_uid,
            gid=st.st_gid,
            rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in ("chr", "blk") else None,
            allocated=st.st_blocks * 512,
            xattrs=_xattrs(full),
        )
        tree[rel] = entry
        if kind == "file" and st.st_nlink > 1:
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
        if kind == "dir":
            for name in sorted(os.listdir(full)):
                visit(name if rel == b"." else rel + b"/" + name)

    visit(b".")
    for paths in inodes.values():
        for rel in paths:
            tree[rel] = replace(tree[rel], links=tuple(sorted(p for p in paths if p != rel)))
    return tree


def diff_trees(
    expected: Tree,
    actual: Tree,
    *,
    ignore: Iterable[str] = (),
    holes: bool = False,
    symlink_times: bool = True,
    dir_times: bool = True,
    root_time: bool = True,
) -> list[str]:
    """Return human-readable differences between two snapshots (empty when equal).

    `ignore` names `Entry` fields not to compare (e.g. ``{"uid", "gid"}``); `holes`
    also compares allocated bytes; `symlink_times=False` and `dir_times=False` skip
    the mtimes of symlinks and directories (which are "now" when rsync keeps none), and
    `root_time=False` that of the top directory (when it is not part of the transfer).
    """
    skip = set(ignore)
    compared = [f.name for f in fields(Entry) if f.name in ALL_FIELDS and f.name not in skip]
    if holes:
        compared.append("allocated")
    problems = []
    for rel in sorted(expected.keys() - actual.keys()):
        problems.append(f"missing: {rel!r} ({expected[rel].kind})")
    for rel in sorted(actual.keys() - expected.keys()):
        problems.append(f"unexpected: {rel!r} ({actual[rel].kind})")
    for rel in sorted(expected.keys() & actual.keys()):
        want, got = expected[rel], actual[rel]
        for name in compared:
            if name == "mtime_ns" and (
                (want.kind == "symlink" and not symlink_times)
                or (want.kind == "dir" and not dir_times)
                or (rel == b"." and not root_time)
            ):
                continue
            if getattr(want, name) != getattr(got, name):
                problems.append(
                    f"{rel!r}: {name} {getattr(want, name)!r} != {getattr(got, name)!r}"
                )
    return problems


def assert_same_tree(expected: Tree, actual: Tree, **options: object) -> None:
    """Fail with the list of differences if the trees differ (see `diff_trees`)."""
    problems = diff_trees(expected, actual, **options)  # type: ignore[arg-type]
    assert not problems, "trees differ:\n  " + "\n  ".join(problems[:40])
