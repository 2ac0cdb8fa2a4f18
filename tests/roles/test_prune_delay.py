"""--prune-empty-dirs and --delay-updates against real rsync (same -i lines and tree)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.rsync_harness import RsyncHarness, assert_equivalent

WHEN = 1_500_000_000_000_000_000


def build(src: Path) -> None:
    for rel in ("a/b/c", "x/y", "k/keep", "e"):
        (src / rel).mkdir(parents=True)
    (src / "x" / "y" / "f").write_bytes(b"f\n")
    (src / "k" / "g").write_bytes(b"g\n")
    (src / "k" / "keep" / "junk.tmp").write_bytes(b"tmp\n")
    for path in [*src.rglob("*"), src]:
        os.utime(path, ns=(WHEN, WHEN))


@pytest.mark.parametrize(
    "args",
    [
        ("-aim",),
        ("-aim", "--delete"),
        ("-aim", "--exclude=*.tmp"),
        ("-aim", "--exclude=*.tmp", "--filter=P keep/"),
        ("-ai", "--delay-updates"),
        ("-ai", "--delay-updates", "--delete-after", "--stats"),
    ],
    ids=["prune", "prune-delete", "prune-exclude", "prune-protect", "delay", "delay-after"],
)
def test_matches_real_rsync(args: tuple[str, ...], rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    build(h.client_dir / "src")
    targets = [h.oracle(), h.rsyncd_root()]
    for target in targets:  # something for --delete to do
        (target.home / "dst" / "old").mkdir(parents=True)
        os.utime(target.home / "dst" / "old", ns=(WHEN, WHEN))
    assert_equivalent(*h.differential([*args, "src/", "lh:dst/"], targets))


@pytest.mark.parametrize(
    "args",
    [("-aiR",), ("-aiR", "--no-implied-dirs"), ("-aiR", "--no-implied-dirs", "-n")],
    ids=["relative", "no-implied-dirs", "no-implied-dirs-dry"],
)
def test_relative_paths_match_real_rsync(
    args: tuple[str, ...], rsync_harness: RsyncHarness
) -> None:
    h = rsync_harness
    src = h.client_dir / "src"
    build(src)
    paths = ["src/x/y/f", "src/./k/g", str(src / "a" / "b")]
    targets = [h.oracle(), h.rsyncd_root()]
    # directories made on the way (implied, or by make_path) get "now" times
    tree = None if "-n" in args else "dst"  # a dry run makes nothing to read back
    results = h.differential([*args, *paths, "lh:dst/"], targets, tree=tree)
    assert_equivalent(*results, dir_times=False)
