"""Restoring from earlier snapshots with a plain rsync pull (``host:/.snapshots/<id>/path``).

Every finished push into the store is a snapshot. The tests push a tree, change and
delete files, push again with ``--delete``, and then use only the real rsync client:
``rsync host:/.snapshots/`` lists the snapshot ids with their times, a pull from
``/.snapshots/<first>/`` returns the tree exactly as it was, the newest one and the
live root return the new tree, a recursive pull of ``/`` does not copy history, and a
push into a snapshot is refused up front (exit 11, "Read-only file system")
without changing it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.helpers.rsync_harness import RsyncHarness, Target
from tests.helpers.trees import assert_same_tree, snapshot, write_file
from tests.interop.conftest import mutate_source

NOT_LINKED = {"ignore": {"links"}}


def push(h: RsyncHarness, store: Target, *args: str) -> None:
    result = h.run(store, ["-a", *args, "src/", "lh:data/"], tree=None)
    assert result.returncode == 0, result.describe()


def snapshot_ids(h: RsyncHarness, store: Target) -> list[str]:
    """The snapshot ids ``rsync host:/.snapshots/`` lists, oldest first."""
    result = h.run(store, ["lh:/.snapshots/"], tree=None)
    assert result.returncode == 0, result.describe()
    names = [line.split()[-1].decode() for line in result.stdout.splitlines()]
    assert names[0] == ".", result.describe()
    return names[1:]


def restore(h: RsyncHarness, store: Target, remote: str, local: str) -> Path:
    result = h.run(store, ["-a", f"lh:{remote}", f"{local}/"], tree=None)
    assert result.returncode == 0, result.describe()
    return h.client_dir / local


def test_pull_from_each_snapshot(rsync_harness: RsyncHarness, varied_tree: Path) -> None:
    h = rsync_harness
    store = h.rsyncd_store()
    first = h.tmp / "first"
    subprocess.run(["cp", "-a", str(varied_tree), str(first)], check=True)
    push(h, store)
    mutate_source(varied_tree)
    push(h, store, "--delete", "--checksum")  # -c: one file keeps its size and time

    ids = snapshot_ids(h, store)
    assert len(ids) == 2 and ids == sorted(ids)
    old = restore(h, store, f"/.snapshots/{ids[0]}/data/", "old")
    assert_same_tree(snapshot(first), snapshot(old), **NOT_LINKED)  # type: ignore[arg-type]
    assert (old / "size-699").exists()  # deleted by the second push, still in the first
    new = restore(h, store, f"/.snapshots/{ids[1]}/data/", "new")
    assert_same_tree(snapshot(varied_tree), snapshot(new), **NOT_LINKED)  # type: ignore[arg-type]
    live = restore(h, store, "/data/", "live")
    assert_same_tree(snapshot(varied_tree), snapshot(live), **NOT_LINKED)  # type: ignore[arg-type]


def test_snapshot_listing_shows_times(rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    store = h.rsyncd_store()
    write_file(h.client_dir / "src" / "a", b"one", 1_600_000_000_000_000_000)
    push(h, store)
    result = h.run(store, ["lh:/.snapshots/"], tree=None)
    lines = result.stdout.decode().splitlines()
    assert result.returncode == 0 and len(lines) == 2, result.describe()
    mode, size, day, clock, name = lines[1].split()
    assert mode.startswith("d") and size == "4,096"
    # the id starts with the UTC time of the commit; the listing shows it in local time
    assert name[:4] == day[:4] and len(clock) == 8


def test_recursive_pull_of_the_root_copies_no_history(rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    store = h.rsyncd_store()
    write_file(h.client_dir / "src" / "a", b"one", 1_600_000_000_000_000_000)
    push(h, store)
    push(h, store)
    everything = restore(h, store, "/", "everything")
    assert sorted(os.listdir(everything)) == ["data"]


def test_push_into_a_snapshot_fails_and_changes_nothing(
    rsync_harness: RsyncHarness,
) -> None:
    h = rsync_harness
    store = h.rsyncd_store()
    src = h.client_dir / "src"
    write_file(src / "a", b"one", 1_600_000_000_000_000_000)
    push(h, store)
    (first_id,) = snapshot_ids(h, store)
    before = snapshot(restore(h, store, f"/.snapshots/{first_id}/data/", "before"))

    write_file(src / "a", b"two!", 1_700_000_000_000_000_000)
    write_file(src / "b", b"new", 1_700_000_000_000_000_000)
    result = h.run(store, ["-a", "--delete", "src/", f"lh:/.snapshots/{first_id}/data/"], tree=None)
    assert result.returncode == 11, result.describe()  # refused before any file
    assert b"Read-only file system" in result.stderr
    after = restore(h, store, f"/.snapshots/{first_id}/data/", "after")
    assert_same_tree(before, snapshot(after))
    shutil.rmtree(after)
