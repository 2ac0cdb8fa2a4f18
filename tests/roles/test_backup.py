"""--backup against real rsync: replaced and deleted entries are kept under their backup
names (suffix, or --backup-dir) exactly as rsync keeps them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.rsync_harness import RsyncHarness, assert_equivalent
from tests.helpers.trees import assert_same_tree

OLD = 1_500_000_000_000_000_000
NEW = 1_600_000_000_000_000_000


def write(path: Path, data: bytes, when: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(when, when))


def seed(home: Path) -> None:
    dst = home / "dst"
    write(dst / "a", b"old a\n", OLD)
    write(dst / "d" / "b", b"old b\n", OLD)
    write(dst / "gone", b"deleted\n", OLD)
    write(dst / "l", b"a file where a link goes\n", OLD)
    os.utime(dst / "d", ns=(OLD, OLD))
    os.utime(dst, ns=(OLD, OLD))


@pytest.mark.parametrize(
    "args",
    [
        ("-ai", "--backup"),
        ("-ai", "--backup", "--suffix=.bak", "--delete"),
        ("-ai", "--backup-dir=saved", "--delete"),
        ("-ai", "--backup", "--delete", "-n"),
    ],
    ids=["suffix", "delete", "backup-dir", "dry-run"],
)
def test_backups_match_real_rsync(args: tuple[str, ...], rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    src = h.client_dir / "src"
    write(src / "a", b"new a\n", NEW)
    write(src / "d" / "b", b"new b\n", NEW)
    write(src / "k", b"kept\n", NEW)
    os.symlink("a", src / "l")
    os.utime(src / "l", ns=(NEW, NEW), follow_symlinks=False)
    for path in (src / "d", src):
        os.utime(path, ns=(NEW, NEW))
    targets = [h.oracle(), h.rsyncd_root()]
    for target in targets:
        seed(target.home)
    oracle, ours = h.differential([*args, "src/", "lh:dst/"], targets, tree=None)
    assert_equivalent(oracle, ours)
    for rel in ("dst", "saved"):
        assert (targets[0].home / rel).exists() == (targets[1].home / rel).exists(), rel
        if (targets[0].home / rel).exists():
            # --backup without --backup-dir implies --omit-dir-times (options.c)
            assert_same_tree(
                targets[0].read_tree(targets[0], rel),
                targets[1].read_tree(targets[1], rel),
                dir_times=False,
            )
