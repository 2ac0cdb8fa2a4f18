"""Partial-transfer exits (23, 25) end with the client's own error line only, as with rsync.

A real rsync server that finishes its run with io_error bits set exits 23/24/25 without
printing an "rsync error:" line itself (log.c log_exit skips it at the end of a run);
the client prints one. rsyncd-py must not add a second one.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.helpers.rsync_harness import RsyncHarness, RsyncResult
from tests.helpers.trees import write_file
from tests.interop.conftest import TARGETS, make_target

T0 = 1_600_000_000_000_000_000


def _summary_lines(result: RsyncResult) -> list[bytes]:
    return [
        line
        for line in result.stderr.splitlines()
        if line.startswith((b"rsync error:", b"rsync warning:"))
    ]


def _same_ending(o: RsyncResult, r: RsyncResult, code: int) -> None:
    assert (o.returncode, r.returncode) == (code, code), r.describe()
    assert len(_summary_lines(r)) == len(_summary_lines(o)) == 1, r.describe()
    assert b"rsyncd-py" not in r.stderr, r.describe()


@pytest.mark.parametrize("target", TARGETS)
def test_pull_of_a_missing_source_exits_23_once(target: str, rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    src = h.client_dir / "src"
    write_file(src / "here", b"here\n", T0)
    oracle, ours = h.oracle(), make_target(h, target)
    if ours.name == "store":
        assert h.run(ours, ["-a", "src/", "lh:src/"], tree=None).returncode == 0
    else:
        shutil.copytree(src, ours.home / "src")
    shutil.copytree(src, oracle.home / "src")
    o, r = (
        h.run(t, ["-a", "lh:src/nope", "lh:src/here", f"out-{t.name}/"], tree=None)
        for t in (oracle, ours)
    )
    _same_ending(o, r, 23)


@pytest.mark.parametrize("target", TARGETS)
def test_push_that_cannot_replace_a_directory_exits_23_once(
    target: str, rsync_harness: RsyncHarness
) -> None:
    """A file sent where the destination has a non-empty directory (no --delete)."""
    h = rsync_harness
    write_file(h.client_dir / "src" / "clash", b"a file\n", T0)
    write_file(h.client_dir / "old" / "clash" / "inside", b"in the way\n", T0)
    oracle, ours = h.oracle(), make_target(h, target)
    for t in (oracle, ours):
        seeded = h.run(t, ["-a", "old/", "lh:dst/"], tree=None)
        assert seeded.returncode == 0, seeded.describe()
    o, r = h.differential(["-a", "src/", "lh:dst/"], [oracle, ours], tree=None)
    _same_ending(o, r, 23)


@pytest.mark.parametrize("target", TARGETS)
def test_push_stopped_by_max_delete_exits_25_once(target: str, rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    write_file(h.client_dir / "src" / "keep", b"keep\n", T0)
    for name in ("x", "y", "z"):
        write_file(h.client_dir / "old" / name, b"extra\n", T0)
    oracle, ours = h.oracle(), make_target(h, target)
    for t in (oracle, ours):
        assert h.run(t, ["-a", "old/", "lh:dst/"], tree=None).returncode == 0
    os.utime(h.client_dir / "src", ns=(T0, T0))
    o, r = h.differential(
        ["-a", "--delete", "--max-delete=1", "src/", "lh:dst/"], [oracle, ours], tree=None
    )
    _same_ending(o, r, 25)


def test_push_into_a_snapshot_is_refused_up_front(rsync_harness: RsyncHarness) -> None:
    """/.snapshots is read-only: one clear error and exit 11, not a failure per file."""
    h = rsync_harness
    write_file(h.client_dir / "src" / "f", b"f\n", T0)
    store = h.rsyncd_store()
    assert h.run(store, ["-a", "src/", "lh:dst/"], tree=None).returncode == 0
    listing = h.run(store, ["lh:/.snapshots/"], tree=None)
    ids = [line.split()[-1] for line in listing.stdout.splitlines() if not line.endswith(b" .")]
    assert len(ids) == 1, listing.describe()
    for dest in (f"/.snapshots/{ids[0].decode()}/dst/", "/.snapshots/", "/.snapshots/new/"):
        result = h.run(store, ["-a", "src/", f"lh:{dest}"], tree=None)
        assert result.returncode == 11, result.describe()
        assert b"rsync: [Receiver] ERROR: cannot push into" in result.stderr
        assert b"Read-only file system" in result.stderr and b"(30)" in result.stderr
        assert b"/.snapshots holds read-only snapshots" in result.stderr
    again = h.run(store, ["lh:/.snapshots/"], tree=None)
    assert again.stdout == listing.stdout  # no new snapshot, nothing changed
