"""Fixtures shared by the interop tests: which rsyncd-py targets to test, and scenario set-up.

``ours`` is parametrized over the rsyncd-py targets a differential test compares with
real rsync: ``root`` (``--root DIR``) and ``store`` (``--store URL`` on a fresh local
directory store). `mutate_source` turns the pushed varied tree into the "changed"
scenario (files deleted, added, rewritten with the same size and time, retimed,
chmodded), so update, delete, checksum and size-only behaviour all show.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers.rsync_harness import RSYNC, RsyncHarness, Target
from tests.helpers.trees import write_file

TARGETS = ("root", "store")


def make_target(h: RsyncHarness, name: str) -> Target:
    """Return the rsyncd-py target called `name` (one of `TARGETS`)."""
    return h.rsyncd_root() if name == "root" else h.rsyncd_store()


@pytest.fixture(params=TARGETS)
def ours(request: pytest.FixtureRequest, rsync_harness: RsyncHarness) -> Target:
    """The rsyncd-py target under test (each test runs once per target)."""
    return make_target(rsync_harness, request.param)


def seed_destination(h: RsyncHarness, targets: list[Target], src: str = "src/") -> None:
    """Give every target ``dst`` = `src` as plain ``rsync -a`` makes it (the start state).

    Directory targets get a local ``rsync -a`` copy (the same result, without starting
    a server); a store target gets a push through rsyncd-py itself.
    """
    for target in targets:
        if target.name in ("oracle", "root"):
            args = [RSYNC, "-a", src, f"{target.home}/dst/"]
            done = subprocess.run(args, cwd=h.client_dir, capture_output=True, check=False)
            assert done.returncode == 0, done.stderr
        else:
            result = h.run(target, ["-a", src, "lh:dst/"], tree=None)
            assert result.returncode == 0, result.describe()


def mutate_source(src: Path) -> None:
    """Change the source tree after it was pushed (see the module docstring)."""
    (src / "size-699").unlink()
    (src / "dir" / "sub" / "nested").unlink()
    (src / "dir" / "empty").rmdir()
    write_file(src / "new-file", os.urandom(1000), 1_650_000_000_000_000_001)
    write_file(src / "newdir" / "x", b"x" * 5000, 1_650_000_000_000_000_002)
    same_size = src / "size-4096"  # new content, same size and mtime: only -c/-I see it
    st = same_size.stat()
    same_size.write_bytes(bytes(4096))
    os.utime(same_size, ns=(st.st_atime_ns, st.st_mtime_ns))
    grown = src / "size-701"
    write_file(grown, grown.read_bytes() + b"appended", 1_660_000_000_000_000_000)
    retimed = src / "size-1"
    os.utime(retimed, ns=(1_670_000_000_000_000_000, 1_670_000_000_000_000_000))
    os.chmod(src / "mode-600", 0o640)
    # directories changed above get past times: rsync 3.2.7 skips setting a directory
    # time that falls in the current second (RsyncProject/rsync#802)
    for rel, mtime in (
        ("newdir", 1_680_000_000_000_000_001),
        ("dir/sub", 1_680_000_000_000_000_002),
        ("dir", 1_680_000_000_000_000_003),
        (".", 1_680_000_000_000_000_004),
    ):
        os.utime(src / rel, ns=(mtime, mtime))
