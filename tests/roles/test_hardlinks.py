"""-H against real rsync: groups are linked, not copied, in every protocol, and a second
push after the groups change relinks exactly what rsync relinks (same -i lines)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.rsync_harness import RsyncHarness, assert_equivalent


def set_past_times(src: Path, when: int) -> None:
    """rsync leaves a time that falls in the current second alone: use past times."""
    for path in [src, *src.rglob("*")]:
        os.utime(path, ns=(when, when), follow_symlinks=False)


def build(src: Path) -> None:
    (src / "d").mkdir(parents=True)
    (src / "a").write_bytes(b"shared\n")
    os.link(src / "a", src / "b")
    os.link(src / "a", src / "d" / "c")
    (src / "z").write_bytes(b"alone\n")
    os.symlink("z", src / "lz")
    set_past_times(src, 1_500_000_000_000_000_000)


def change(src: Path) -> None:
    with open(src / "a", "ab") as f:
        f.write(b"more\n")
    os.unlink(src / "b")
    os.link(src / "z", src / "z2")
    os.link(src / "d" / "c", src / "e")
    set_past_times(src, 1_600_000_000_000_000_000)


@pytest.mark.parametrize(
    "args",
    [("-aiH",), ("-aiH", "--protocol=30"), ("-aiH", "--protocol=29"), ("-aiH", "--protocol=27")],
    ids=["p32", "p30", "p29", "p27"],
)
def test_hard_links_match_real_rsync(args: tuple[str, ...], rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    src = h.client_dir / "src"
    build(src)
    targets = [h.oracle(), h.rsyncd_root()]
    first = h.differential([*args, "src/", "lh:dst/"], targets)
    assert_equivalent(*first)
    change(src)
    dry = h.differential([*args, "-n", "src/", "lh:dst/"], targets)
    assert_equivalent(*dry)
    second = h.differential([*args, "src/", "lh:dst/"], targets)
    assert_equivalent(*second)
    tree = second[1].tree
    assert tree is not None
    assert tree[b"a"].links == (b"d/c", b"e")  # one inode for the whole group
