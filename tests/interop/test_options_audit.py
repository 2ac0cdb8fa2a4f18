"""Issue 5's option list, the cases no other table has: push and pull, --root and store.

Each case runs one client command line against real rsync 3.2.7 and rsyncd-py and
requires the same exit code, itemize lines, -v listing, --stats figures and tree (the
destination's, or for a pull the client's copy). The source is the varied tree plus
per-directory filter files (``.rsync-filter``), files -C ignores (core, *.o, .git/)
and log files the filters drop; "changed" cases first give the destination the tree
and then change the source (`mutate_source`), and put extra files in the destination
that the filters protect or -C/--delete-excluded removes. Options handled only by
the client (the receiver of a pull) are run too: the server must not get in their
way. Where a command needs a second directory (--backup-dir, --link-dest on the
client) it is compared as well.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers.rsync_harness import RsyncHarness, Target, assert_equivalent
from tests.helpers.trees import assert_same_tree, snapshot, write_file
from tests.interop.conftest import TARGETS, make_target, mutate_source, seed_destination
from tests.interop.test_pull import DELTA_STATS, NOT_LINKED, pull_each

T0 = 1_600_000_000_000_000_000


def add_filter_fixtures(src: Path) -> None:
    """Per-directory rules, -C's victims and logs (see the module docstring)."""
    write_file(src / ".rsync-filter", b"- *.log\n- /deep/\n", T0)
    write_file(src / "dir" / ".rsync-filter", b"+ keep.log\n", T0)
    for rel in ("dir/keep.log", "drop.log", "core", "x.o", ".git/config", "dir/y.o"):
        write_file(src / rel, rel.encode() + b"\n", T0)
    for rel in (".git", "dir", "."):
        os.utime(src / rel, ns=(T0, T0))


def add_extras(dst: Path) -> None:
    """What a destination holds that the source does not (filters decide its fate)."""
    for rel in ("extra.log", "extra.o", "extra-plain", "dir/extra.log"):
        write_file(dst / rel, b"extra\n", T0)
    for rel in ("dir", "."):
        os.utime(dst / rel, ns=(T0 + 5, T0 + 5))


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    changed: bool = False
    store: bool = False
    compare: dict[str, object] = field(default_factory=dict)
    sources: tuple[str, ...] = ("src/",)
    also: str | None = None  # a second remote directory to compare (push)


PUSH = [
    Case("backup-dir", ("-ai", "-b", "--backup-dir=../bak"), True, True, also="bak"),
    Case(
        "backup-dir-suffix", ("-ai", "-b", "--backup-dir=../bak", "--suffix=.old"), True, also="bak"
    ),
    Case("F-delete", ("-ai", "-F", "--delete"), True, True),
    Case("FF", ("-ai", "-FF", "--delete"), True),
    Case("filter-dir-merge", ("-ai", "--filter=dir-merge .rsync-filter", "--delete"), True, True),
    Case("filter-merge", ("-ai", "--filter=merge ../rules", "--delete"), True),
    Case("cvs-exclude", ("-aiC", "--delete"), True, True),
    Case("cvs-delete-excluded", ("-aiC", "--delete", "--delete-excluded"), True),
    Case(
        "relative-no-implied",
        ("-aiR", "--no-implied-dirs"),
        sources=("src/dir/sub", "src/names"),
        compare={"dir_times": False},  # made by make_path, not transferred: "now"
    ),
    Case(
        "relative-marker",
        ("-aiR",),
        sources=("src/./dir/sub",),
        compare={"root_time": False},
        store=True,
    ),
    Case("secluded-args", ("-ais",), store=True),
    Case("old-args", ("-ai", "--old-args"), True),
    Case("timeout", ("-ai", "--timeout=30", "--stats"), True, True),
    Case("dirs", ("-dlptgoDi",), store=True),
    Case(
        "list-dirs-no-recursion",
        ("-lptgoDi",),
        sources=("src/", "src/dir"),
        compare={"root_time": False},  # "." is not sent: its time is "now"
    ),
    Case("info-stats", ("-a", "--info=stats2,name1", "--stats"), True),
    Case("msgs2stderr", ("-ai", "--msgs2stderr"), True),
    Case("no-msgs2stderr", ("-ai", "--no-msgs2stderr", "-v"), True),
    Case("ignore-existing-store", ("-ai", "--ignore-existing"), True, True),
    Case("existing-store", ("-ai", "--existing"), True, True),
    Case("update-store", ("-aiu",), True, True),
    Case("size-only-store", ("-ai", "--size-only", "--stats"), True, True),
    Case("ignore-times-store", ("-aiI", "--stats"), True, True),
    Case("min-max-size-store", ("-ai", "--min-size=1", "--max-size=5000"), store=True),
    Case("partial-dir-store", ("-ai", "--partial-dir=.rsync-partial"), True, True),
    Case("max-delete-store", ("-ai", "--delete", "--max-delete=1"), True, True),
    Case("chmod-store", ("-ai", "--chmod=F600,D700"), store=True),
    *(
        Case(
            option.lstrip("-"),
            ("-ai", option),
            sources=("src/nope", "src/dir"),
            compare={"root_time": False},  # "." is not sent: its time is "now"
        )
        for option in ("--ignore-missing-args", "--delete-missing-args")
    ),
    Case("mkpath-store", ("-ai", "--mkpath"), store=True),
]


def _params(cases: list[Case]) -> list[object]:
    return [
        pytest.param(case, target, id=f"{target}-{case.id}")
        for case in cases
        for target in (TARGETS if case.store else ("root",))
    ]


@pytest.mark.parametrize(("case", "target"), _params(PUSH))
def test_push(case: Case, target: str, rsync_harness: RsyncHarness, varied_tree: Path) -> None:
    h = rsync_harness
    add_filter_fixtures(varied_tree)
    (h.tmp / "rules").write_bytes(b"- *.log\n- x.o\n")  # the client's merge file
    oracle, ours = h.oracle(), make_target(h, target)
    if case.changed:
        seed_destination(h, [oracle, ours])
        extras = h.tmp / "extras"
        add_extras(extras)
        for t in (oracle, ours):  # a store gets them pushed (the same files and times)
            if t.name == "store":
                pushed = h.run(t, ["-a", f"{extras}/", "lh:dst/"], tree=None)
                assert pushed.returncode == 0, pushed.describe()
            else:
                add_extras(t.home / "dst")
        mutate_source(varied_tree)
    dest = "lh:dst/missing/deeper/" if "--mkpath" in case.args else "lh:dst/"
    tree = "dst/missing/deeper" if "--mkpath" in case.args else "dst"
    o, r = h.differential([*case.args, *case.sources, dest], [oracle, ours], tree=tree)
    assert_equivalent(o, r, **case.compare)  # type: ignore[arg-type]
    if case.also is not None:  # the --backup-dir, made "now"
        want, got = (t.read_tree(t, case.also) for t in (oracle, ours))
        assert_same_tree(want, got, root_time=False)


@pytest.mark.parametrize("target", TARGETS)
def test_push_remove_source_files(
    target: str, rsync_harness: RsyncHarness, varied_tree: Path
) -> None:
    """The client removes what we report as in place (store too)."""
    h = rsync_harness
    oracle, ours = h.oracle(), make_target(h, target)
    template = h.tmp / "template"
    subprocess.run(["cp", "-a", str(varied_tree), str(template)], check=True)
    results, leftovers = [], []
    for t in (oracle, ours):
        shutil.rmtree(varied_tree)
        subprocess.run(["cp", "-a", str(template), str(varied_tree)], check=True)
        results.append(h.run(t, ["-ai", "--remove-source-files", "src/", "lh:dst/"]))
        leftovers.append(snapshot(varied_tree))
    assert_equivalent(*results)
    assert sorted(leftovers[0]) == sorted(leftovers[1])
    assert b"size-700" not in leftovers[1]


# --- pulls ------------------------------------------------------------------------------


PULL = [
    Case("ignore-existing", ("-ai", "--ignore-existing"), True, True),
    Case("min-max-size", ("-ai", "--min-size=1", "--max-size=5000"), store=True),
    Case(
        "backup-dir",
        ("-ai", "-b", "--backup-dir=../bak-pull"),
        True,
        True,
        compare={"dir_times": False},
    ),
    Case("F", ("-ai", "-F"), store=True),
    Case("F-delete", ("-ai", "-F", "--delete"), True, True),
    Case("filter-merge", ("-ai", "--filter=merge ../rules", "--delete"), True),
    Case("filter-dir-merge", ("-ai", "--filter=dir-merge .rsync-filter"), store=True),
    Case("cvs-exclude", ("-aiC", "--delete"), True, True),
    Case(
        "relative-no-implied",
        ("-aiR", "--no-implied-dirs"),
        sources=("lh:src/dir/sub",),
        compare={"dir_times": False},  # made by make_path, not transferred: "now"
    ),
    Case("partial", ("-ai", "--partial"), True),
    Case("partial-dir", ("-ai", "--partial-dir=.rsync-partial"), True),
    Case("max-delete", ("-ai", "--delete", "--max-delete=1"), True),
    Case("link-dest-client", ("-ai", "--link-dest=../old-copy"), store=True),
    Case("compare-dest-client", ("-ai", "--compare-dest=../old-copy"), store=True),
    Case("copy-dest-client", ("-ai", "--copy-dest=../old-copy"), store=True),
    Case("chown-client", ("-ai", "--chown=1:1"), store=True),
    Case("usermap-client", ("-ai", "--usermap=*:2", "--groupmap=*:3")),
    Case(
        "old-args-wildcard",
        ("-ai", "--old-args"),
        sources=("lh:src/size-7* src/dir",),
        compare={"root_time": False},
    ),
    Case(
        "wildcard", ("-ai",), sources=("lh:src/size-7*",), compare={"root_time": False}, store=True
    ),
    Case("timeout", ("-ai", "--timeout=30", "--stats"), True, True),
    Case("info-stats", ("-a", "--info=stats2,name1", "--stats"), True, True),
    Case("msgs2stderr", ("-ai", "--msgs2stderr"), True),
    Case("verbose-itemize", ("-avi",), True, True),
    Case("mkpath", ("-ai", "--mkpath"), store=True),
]


def _serve(h: RsyncHarness, target: Target, src: Path) -> None:
    if target.name == "store":
        result = h.run(target, ["-aH", f"{src}/", "lh:src/"], tree=None)
        assert result.returncode == 0, result.describe()
    else:
        subprocess.run(["cp", "-a", str(src), str(target.home / "src")], check=True)


@pytest.mark.parametrize(("case", "target"), _params(PULL))
def test_pull(case: Case, target: str, rsync_harness: RsyncHarness, varied_tree: Path) -> None:
    h = rsync_harness
    add_filter_fixtures(varied_tree)
    (h.tmp / "rules").write_bytes(b"- *.log\n- x.o\n")
    old = h.tmp / "old-copy"  # what the client holds (changed cases), a basis otherwise
    subprocess.run(["cp", "-a", str(varied_tree), str(old)], check=True)
    add_extras(old)
    if case.changed:
        mutate_source(varied_tree)
    oracle, ours = h.oracle(), make_target(h, target)
    for t in (oracle, ours):
        _serve(h, t, varied_tree)
    args = [*case.args, *case.sources]
    if "--mkpath" in case.args:  # into deep/a/b/, missing on the client
        results = []
        for t in (oracle, ours):
            results.append(h.run(t, [*args, "deep/a/b/"], tree=None))
            (h.client_dir / "deep").rename(h.client_dir / f"deep-{t.name}")
        assert_equivalent(*results, **NOT_LINKED)  # type: ignore[arg-type]
        return
    compare = {**NOT_LINKED, **case.compare}
    if case.changed:
        compare.update(literal_slack=2.0, stats=DELTA_STATS)
    o, r = pull_each(h, [oracle, ours], args, old_copy=old if case.changed else None)
    assert_equivalent(o, r, **compare)  # type: ignore[arg-type]


@pytest.mark.parametrize("target", TARGETS)
def test_pull_remove_source_files(
    target: str, rsync_harness: RsyncHarness, varied_tree: Path
) -> None:
    """The sender removes what the client has in place: the served trees end alike."""
    h = rsync_harness
    oracle, ours = h.oracle(), make_target(h, target)
    for t in (oracle, ours):
        _serve(h, t, varied_tree)
    o, r = pull_each(h, [oracle, ours], ["-ai", "--remove-source-files", "lh:src/"])
    assert_equivalent(o, r, **NOT_LINKED)  # type: ignore[arg-type]
    left = [t.read_tree(t, "src") for t in (oracle, ours)]
    assert sorted(left[0]) == sorted(left[1])
    assert b"size-700" not in left[1] and b"dir" in left[1]  # files go, directories stay


def test_pull_remove_source_files_from_a_snapshot(
    rsync_harness: RsyncHarness, varied_tree: Path
) -> None:
    """A snapshot is read-only: nothing is removed and the client hears why (exit 23)."""
    h = rsync_harness
    store = h.rsyncd_store()
    _serve(h, store, varied_tree)
    listing = h.run(store, ["lh:/.snapshots/"], tree=None)
    snap = listing.stdout.splitlines()[-1].split()[-1].decode()
    result = h.run(
        store, ["-a", "--remove-source-files", f"lh:/.snapshots/{snap}/src/", "out/"], tree=None
    )
    assert result.returncode == 23, result.describe()
    assert b"sender failed to remove" in result.stderr and b"Read-only file system" in result.stderr
    assert snapshot(h.client_dir / "out").keys() == store.read_tree(store, "src").keys()
