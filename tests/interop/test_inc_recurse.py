"""Incremental recursion against real rsync: trees whose shape stresses it, both directions.

With CF_INC_RECURSE the file list travels directory by directory, interleaved with the
transfer, and the sender keeps only about a thousand files of lists ahead of the
generator's requests. So the trees here have a directory of more than a thousand
entries, many small directories, a deep chain, trees of nothing but empty directories,
and hard links across directories; pushes and pulls of them, new and over a changed
copy with the deletion modes incremental recursion allows, must give the same exit
code, itemize lines, ``-v`` listing, stats and tree as real rsync -- with incremental
recursion and without (``--no-inc-recursive``). ``-v`` output is compared line for
line, session lines included ("sending incremental file list").
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers.rsync_harness import RsyncHarness, RsyncResult, Target, assert_equivalent
from tests.helpers.trees import snapshot, write_file
from tests.interop.conftest import make_target

WHEN = 1_500_000_000_000_000_000
WIDE = 1_200  # entries of one directory: more than a sender's look-ahead
NOT_LINKED = {"ignore": {"links"}}


def past_times(root: Path) -> None:
    """Directories and symlinks get a past time (rsync#802: none in the current second)."""
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_symlink() or path.is_dir():
            os.utime(path, ns=(WHEN, WHEN), follow_symlinks=False)
    os.utime(root, ns=(WHEN, WHEN))


def build_big_tree(src: Path) -> None:
    """A wide directory, many small ones, a deep chain, empty dirs, cross-dir hard links."""
    for i in range(WIDE):
        write_file(src / "wide" / f"f{i:04}", b"w" * (i % 37), WHEN + i)
    for d in range(30):
        for f in range(12):
            write_file(src / f"d{d:02}" / "sub" / f"g{f:02}", bytes([65 + d]) * f, WHEN)
        write_file(src / f"d{d:02}" / "top", b"t" * d, WHEN)
        (src / f"d{d:02}" / "empty").mkdir()
    deep = src / "deep"
    for level in range(45):
        deep = deep / f"l{level}"
    write_file(deep / "bottom", b"bottom\n", WHEN)
    os.symlink("../wide/f0001", src / "d00" / "link")
    os.link(src / "wide" / "f0036", src / "d03" / "sub" / "linked")
    os.link(src / "wide" / "f0036", src / "deep" / "l0" / "linked-too")
    os.link(src / "d07" / "top", src / "d29" / "sub" / "same-as-d07-top")
    past_times(src)


def change_big_tree(src: Path) -> None:
    """Deletions in several directories, new ones, a wide directory thinned out."""
    for i in range(0, WIDE, 7):
        (src / "wide" / f"f{i:04}").unlink()
    shutil.rmtree(src / "d05")
    shutil.rmtree(src / "deep" / "l0" / "l1" / "l2" / "l3")
    (src / "d09" / "sub" / "g03").unlink()
    write_file(src / "d10" / "new" / "file", b"new", WHEN + 5)
    write_file(src / "d11" / "sub" / "g04", b"changed!", WHEN + 6)
    past_times(src)


def build_empty_dirs(src: Path) -> None:
    for rel in ("a/b/c/d", "a/e", "f", "g/h/i", "g/j", "k"):
        (src / rel).mkdir(parents=True)
    past_times(src)


def both_ways(args: tuple[str, ...]) -> list[object]:
    return [
        pytest.param(args, id="inc-" + "".join(args)),
        pytest.param((*args, "--no-inc-recursive"), id="noinc-" + "".join(args)),
    ]


# --- pushes -----------------------------------------------------------------------------


def seed(h: RsyncHarness, targets: list[Target], src: Path) -> None:
    """Give every target ``dst`` = `src` as ``rsync -a`` makes it."""
    for target in targets:
        if target.name == "store":
            result = h.run(target, ["-a", f"{src}/", "lh:dst/"], tree=None)
            assert result.returncode == 0, result.describe()
        else:
            done = subprocess.run(["rsync", "-a", f"{src}/", f"{target.home}/dst/"], check=False)
            assert done.returncode == 0


PUSH_CASES = [
    *both_ways(("-ai", "--stats")),
    *both_ways(("-aiH",)),
    *both_ways(("-ai", "--delete", "--stats")),
    *both_ways(("-ai", "--delete-delay")),
    *both_ways(("-ai", "--delete", "--max-delete=20")),
    *both_ways(("-ai", "--delete", "--delete-excluded", "--exclude=g0[12]")),
    *both_ways(("-ai", "--delete", "--dry-run")),
    *both_ways(("-aiH", "--delete", "-c")),
]


@pytest.mark.parametrize("args", PUSH_CASES)
def test_push_of_a_big_tree_over_a_changed_copy(
    args: tuple[str, ...], rsync_harness: RsyncHarness
) -> None:
    h = rsync_harness
    src = h.client_dir / "src"
    build_big_tree(src)
    targets = [h.oracle(), h.rsyncd_root()]
    seed(h, targets, src)
    change_big_tree(src)
    assert_equivalent(*h.differential([*args, "src/", "lh:dst/"], targets))


def link_groups(tree: Path) -> list[set[bytes]]:
    """The hard-link groups of a tree, as sets of names."""
    groups = {
        frozenset((name, *entry.links)) for name, entry in snapshot(tree).items() if entry.links
    }
    return [set(group) for group in groups]


def assert_same_but_leaders(oracle: RsyncResult, ours: RsyncResult, src: Path) -> None:
    """assert_equivalent, except which member of a new hard-link group travels.

    With incremental recursion a group spread over several lists is sent by the member
    that is last among the lists the generator has read when it gets there, and how
    far a real generator has read depends on its I/O timing. Each group must still be
    one transfer plus links to it.
    """
    groups = link_groups(src)
    members = set().union(*groups) if groups else set()
    for result in (oracle, ours):
        lines = [
            line for line in result.itemize if line.split(b" ", 1)[1].split(b" => ")[0] in members
        ]
        for group in groups:
            mine = [line for line in lines if line.split(b" ", 1)[1].split(b" => ")[0] in group]
            sent = [line for line in mine if line.startswith((b"<f", b">f"))]
            assert len(sent) == 1 and len(mine) == len(group), (result.target, mine)
            leader = sent[0].split(b" ", 1)[1]
            assert all(line.endswith(b" => " + leader) for line in mine if line not in sent)
        result.itemize = [line for line in result.itemize if line not in lines]
    assert_equivalent(oracle, ours)


@pytest.mark.parametrize("args", [("-aiH", "--stats"), ("-ai", "--delete", "--stats")])
def test_push_of_a_big_tree_into_the_store(
    args: tuple[str, ...], rsync_harness: RsyncHarness
) -> None:
    h = rsync_harness
    src = h.client_dir / "src"
    build_big_tree(src)
    targets = [h.oracle(), h.rsyncd_store()]
    first = h.differential([*args, "src/", "lh:dst/"], targets)
    if "-aiH" in args:
        assert_same_but_leaders(*first, src)
    else:
        assert_equivalent(*first)
    change_big_tree(src)
    assert_equivalent(*h.differential([*args, "src/", "lh:dst/"], targets))


@pytest.mark.parametrize("args", [*both_ways(("-ai",)), *both_ways(("-ai", "--delete"))])
def test_push_of_only_empty_directories(
    args: tuple[str, ...], ours: Target, rsync_harness: RsyncHarness
) -> None:
    h = rsync_harness
    build_empty_dirs(h.client_dir / "src")
    targets = [h.oracle(), ours]
    assert_equivalent(*h.differential([*args, "src/", "lh:dst/"], targets))
    (h.client_dir / "src" / "a" / "e").rmdir()
    past_times(h.client_dir / "src")
    assert_equivalent(*h.differential([*args, "src/", "lh:dst/"], targets))


@pytest.mark.parametrize(
    "source",
    ["src", "src/d01", "src/wide/f0002"],
    ids=["dir-without-slash", "subdir", "one-file"],
)
def test_push_argument_forms(source: str, rsync_harness: RsyncHarness) -> None:
    """A top directory named without a slash, and a single file (the one-entry list)."""
    h = rsync_harness
    build_big_tree(h.client_dir / "src")
    targets = [h.oracle(), h.rsyncd_root()]
    results = h.differential(["-ai", source, "lh:dst/"], targets, tree="dst")
    assert_equivalent(*results, root_time=False)  # dst is made by the push: "now"


def verbose_lines(result: RsyncResult) -> list[bytes]:
    """All of stdout but the byte counts and speed (they differ with seeds and timing)."""
    return [
        line
        for line in result.stdout.splitlines()
        if not line.startswith((b"sent ", b"total size is "))
    ]


def test_push_verbose_output_is_identical(rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    src = h.client_dir / "src"
    build_big_tree(src)
    targets = [h.oracle(), h.rsyncd_root()]
    oracle, ours = h.differential(["-av", "src/", "lh:dst/"], targets)
    assert verbose_lines(oracle)[0] == b"sending incremental file list"
    assert verbose_lines(ours) == verbose_lines(oracle), ours.describe()
    assert_equivalent(oracle, ours)


# --- pulls ------------------------------------------------------------------------------


def serve(h: RsyncHarness, target: Target, src: Path) -> None:
    if target.name == "store":
        result = h.run(target, ["-a", f"{src}/", "lh:src/"], tree=None)
        assert result.returncode == 0, result.describe()
    else:
        subprocess.run(["cp", "-a", str(src), str(target.home / "src")], check=True)


def pull_each(
    h: RsyncHarness, targets: list[Target], args: list[str], old: Path | None
) -> list[RsyncResult]:
    """Pull into ``pulled/`` from each target (starting from a copy of `old`)."""
    results = []
    for target in targets:
        local = h.client_dir / "pulled"
        if old is not None:
            subprocess.run(["cp", "-a", str(old), str(local)], check=True)
        result = h.run(target, [*args, "lh:src/", "pulled/"], tree=None)
        tree = snapshot(local) if result.returncode in (0, 23, 24) and local.exists() else None
        results.append(replace(result, tree=tree))
        if local.exists():
            local.rename(h.client_dir / f"pulled-{target.name}")
    return results


PULL_CASES = [
    *both_ways(("-ai", "--stats")),
    *both_ways(("-ai", "--delete", "--stats")),
    *both_ways(("-ai", "--delete-delay")),
    *both_ways(("-ai", "--delete", "--exclude=g0[12]", "--delete-excluded")),
    *both_ways(("-ai", "-F", "--delete")),
]


@pytest.mark.parametrize("args", PULL_CASES)
def test_pull_of_a_big_tree_over_an_old_copy(
    args: tuple[str, ...], rsync_harness: RsyncHarness
) -> None:
    h = rsync_harness
    old = h.tmp / "old"
    build_big_tree(old)
    src = h.tmp / "new"
    subprocess.run(["cp", "-a", str(old), str(src)], check=True)
    change_big_tree(src)
    write_file(src / "d12" / ".rsync-filter", b"- g0*\n", WHEN)
    past_times(src)
    targets = [h.oracle(), h.rsyncd_root()]
    for target in targets:
        serve(h, target, src)
    assert_equivalent(*pull_each(h, targets, list(args), old), **NOT_LINKED)


@pytest.mark.parametrize("args", both_ways(("-aiH",)))
def test_pull_of_hard_links_across_directories(
    args: tuple[str, ...], rsync_harness: RsyncHarness
) -> None:
    h = rsync_harness
    src = h.tmp / "src"
    build_big_tree(src)
    targets = [h.oracle(), h.rsyncd_root()]
    for target in targets:
        serve(h, target, src)
    assert_same_but_leaders(*pull_each(h, targets, list(args), None), src)


def test_pull_of_a_big_tree_from_the_store(rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    src = h.tmp / "src"
    build_big_tree(src)
    targets = [h.oracle(), make_target(h, "store")]
    for target in targets:
        serve(h, target, src)
    assert_equivalent(*pull_each(h, targets, ["-ai", "--stats"], None), **NOT_LINKED)


@pytest.mark.parametrize("args", [*both_ways(("-ai",)), *both_ways(("-ai", "--delete"))])
def test_pull_of_only_empty_directories(
    args: tuple[str, ...], ours: Target, rsync_harness: RsyncHarness
) -> None:
    h = rsync_harness
    src = h.tmp / "src"
    build_empty_dirs(src)
    old = h.tmp / "old"
    build_empty_dirs(old)
    (old / "stray").mkdir()
    past_times(old)
    targets = [h.oracle(), ours]
    for target in targets:
        serve(h, target, src)
    assert_equivalent(*pull_each(h, targets, list(args), old))


def test_pull_verbose_output_is_identical(rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    src = h.tmp / "src"
    build_big_tree(src)
    targets = [h.oracle(), h.rsyncd_root()]
    for target in targets:
        serve(h, target, src)
    oracle, ours = pull_each(h, targets, ["-av"], None)
    assert verbose_lines(oracle)[0] == b"receiving incremental file list"
    assert verbose_lines(ours) == verbose_lines(oracle), ours.describe()
