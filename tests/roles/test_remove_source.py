"""--remove-source-files: our MSG_SUCCESS messages let the client remove exactly what a
real rsync server lets it remove (transferred, up-to-date and linked files)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.helpers.rsync_harness import RsyncHarness, assert_equivalent
from tests.helpers.trees import snapshot

WHEN = 1_500_000_000_000_000_000


def build(src: Path, home: Path) -> None:
    (src / "d").mkdir(parents=True)
    (src / "a").write_bytes(b"a\n")
    (src / "d" / "b").write_bytes(b"b\n")
    (src / "same").write_bytes(b"same\n")
    os.link(src / "a", src / "a2")
    os.symlink("a", src / "l")
    for path in [*src.rglob("*"), src]:  # the same (past) times for both servers
        os.utime(path, ns=(WHEN, WHEN), follow_symlinks=False)
    (home / "dst").mkdir()
    shutil.copy2(src / "same", home / "dst" / "same")


@pytest.mark.parametrize(
    "args",
    [
        ("-ai", "--remove-source-files"),
        ("-aiH", "--remove-source-files"),
        ("-ai", "--remove-sent-files"),
    ],
    ids=["remove-source", "hard-links", "remove-sent"],
)
def test_client_removes_what_real_rsync_lets_it(
    args: tuple[str, ...], rsync_harness: RsyncHarness
) -> None:
    h = rsync_harness
    src = h.client_dir / "src"
    results, leftovers = [], []
    for target in (h.oracle(), h.rsyncd_root()):
        build(src, target.home)
        results.append(h.run(target, [*args, "src/", "lh:dst/"]))
        leftovers.append(sorted(snapshot(src)))
        shutil.rmtree(src)
    assert_equivalent(*results)
    assert leftovers[0] == leftovers[1]
    assert b"a" not in leftovers[1]  # the transferred file is gone from the client
