"""-H against real rsync 3.2.7: hard-linked files, symlinks, fifos and devices.

A tree whose hard-link groups span directories and every kind Linux can link is pushed
twice to real ``rsync --server``, ``--root`` and the store (the second push must find
every group in place: no relinking), and pulled from ``--root`` and the store with -H,
at protocol 32 (groups by first index) and 29/27 (groups by dev/inode). Exit code,
itemize lines and tree must equal rsync's, and so must the groups, compared for every
kind (the shared tree snapshot only groups regular files).
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from rsyncd_py.fs.local import LocalFileSystem
from tests.helpers.rsync_harness import (
    RsyncHarness,
    RsyncResult,
    Target,
    assert_equivalent,
    filesystem_tree,
)
from tests.helpers.trees import Tree
from tests.interop.conftest import TARGETS, make_target

T0 = 1_500_000_000_000_000_000


def build_linked_tree(src: Path) -> None:
    """Groups of every kind, spread over directories; one triple; one lone file."""
    (src / "a" / "b").mkdir(parents=True)
    (src / "c").mkdir()
    (src / "file").write_bytes(b"linked content\n")
    os.link(src / "file", src / "a" / "file-2")
    os.link(src / "file", src / "a" / "b" / "file-3")
    (src / "other").write_bytes(b"second group\n")
    os.link(src / "other", src / "c" / "other-2")
    (src / "alone").write_bytes(b"no links\n")
    os.symlink("file", src / "sym")
    os.link(src / "sym", src / "c" / "sym-2", follow_symlinks=False)
    os.mkfifo(src / "fifo")
    os.link(src / "fifo", src / "a" / "fifo-2")
    if os.geteuid() == 0:
        os.mknod(src / "dev", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        os.link(src / "dev", src / "c" / "dev-2")
    for root, _dirs, files in os.walk(src, topdown=False):
        for name in files:
            os.utime(os.path.join(root, name), ns=(T0, T0), follow_symlinks=False)
        os.utime(root, ns=(T0, T0))


def link_groups(tree: Tree) -> set[frozenset[bytes]]:
    return {frozenset((rel, *e.links)) for rel, e in tree.items() if e.links}


def groups_of(target: Target, rel: str) -> set[frozenset[bytes]]:
    """The hard-link groups of every kind under `rel` on a target (or the client's dir)."""

    async def read(fs: object) -> Tree:
        try:
            return await filesystem_tree(fs, os.fsencode(rel))  # type: ignore[arg-type]
        finally:
            await fs.close(True)  # type: ignore[attr-defined]

    if target.name == "store":
        from rsyncd_py.fs.factory import StoreOptions
        from rsyncd_py.fs.store import StoreProvider

        async def from_store() -> Tree:
            provider = StoreProvider.open(
                StoreOptions(url=target.env["RSYNCD_PY_STORE"], cache_dir=str(target.home / "r"))
            )
            try:
                return await read(await provider.open_session(writable=False))
            finally:
                await provider.aclose()

        return link_groups(asyncio.run(from_store()))
    return link_groups(asyncio.run(read(LocalFileSystem(os.fsencode(target.home), read_only=True))))


def expected_groups(with_device: bool) -> set[frozenset[bytes]]:
    groups = {
        frozenset({b"file", b"a/file-2", b"a/b/file-3"}),
        frozenset({b"other", b"c/other-2"}),
        frozenset({b"sym", b"c/sym-2"}),
        frozenset({b"fifo", b"a/fifo-2"}),
    }
    if with_device:
        groups.add(frozenset({b"dev", b"c/dev-2"}))
    return groups


@pytest.mark.parametrize("target", TARGETS)
def test_push_of_every_kind_of_hard_link_twice(target: str, rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    build_linked_tree(h.client_dir / "src")
    oracle, ours = h.oracle(), make_target(h, target)
    for _ in range(2):
        o, r = h.differential(["-aiH", "--stats", "src/", "lh:dst/"], [oracle, ours])
        assert_equivalent(o, r, ignore={"links"})  # compared for every kind below
        assert groups_of(ours, "dst") == groups_of(oracle, "dst")
    assert groups_of(oracle, "dst") == expected_groups(os.geteuid() == 0)
    assert o.itemize == [] and o.stats["Number of regular files transferred"] == 0


def _pull(h: RsyncHarness, target: Target, args: list[str]) -> RsyncResult:
    return h.run(target, [*args, "lh:src/", f"pulled-{target.name}/"], tree=None)


@pytest.mark.parametrize("protocol", [32, 29, 27])
@pytest.mark.parametrize("target", TARGETS)
def test_pull_of_every_kind_of_hard_link(
    target: str, protocol: int, rsync_harness: RsyncHarness
) -> None:
    h = rsync_harness
    src = h.client_dir / "src"
    build_linked_tree(src)
    oracle, ours = h.oracle(), make_target(h, target)
    served = h.run(ours, ["-aH", "src/", "lh:src/"], tree=None)  # the store gets its groups
    assert served.returncode == 0, served.describe()
    os.rename(src, oracle.home / "src")
    args = ["-aiH", f"--protocol={protocol}"]
    o = _pull(h, oracle, args)
    r = _pull(h, ours, args)
    assert o.returncode == r.returncode == 0, r.describe()
    assert r.itemize == o.itemize
    client = Target("client", "", h.client_dir, lambda t, p: {})
    want, got = groups_of(client, "pulled-oracle"), groups_of(client, f"pulled-{ours.name}")
    assert got == want
    # protocol 27 sends dev/inode for every file and links only regular files
    assert want == (
        expected_groups(os.geteuid() == 0)
        if protocol >= 28
        else {frozenset({b"file", b"a/file-2", b"a/b/file-3"}), frozenset({b"other", b"c/other-2"})}
    )
