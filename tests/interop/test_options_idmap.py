"""--usermap, --groupmap and --chown against real rsync 3.2.7 (pushes: the receiver maps).

The varied tree has owners root, daemon (1:1) and an id without a name (1234:5678).
Each push maps them by id, id range, name and wildcard, or with --chown by name and by
number, into real ``rsync --server``, ``--root`` and the store: exit code, itemize
lines and the owners of the resulting tree must equal rsync's (the store records the
mapped ids); a second identical push changes nothing. A map naming an unknown local
user and malformed maps end as rsync's do.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.helpers.rsync_harness import RsyncHarness, assert_equivalent
from tests.interop.conftest import TARGETS, make_target

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")

MAPS = {
    "chown-names": ("--chown=daemon:daemon",),
    "chown-numbers": ("--chown=2:3",),
    "chown-user-only": ("--chown=bin",),
    "chown-group-only": ("--chown=:4",),
    "usermap-ids": ("--usermap=1234:4321,0:7",),
    "usermap-range-names": ("--usermap=1000-2000:8,daemon:bin", "--groupmap=daemon:adm"),
    "usermap-wildcard": ("--usermap=d*:9,*:10", "--groupmap=*:5"),
    "numeric-ids": ("--numeric-ids", "--usermap=1234:4321,root:2", "--groupmap=*:5"),
}


@pytest.mark.parametrize("args", MAPS.values(), ids=MAPS.keys())
@pytest.mark.parametrize("target", TARGETS)
def test_mapped_push(
    args: tuple[str, ...], target: str, rsync_harness: RsyncHarness, varied_tree: os.PathLike[str]
) -> None:
    h = rsync_harness
    oracle, ours = h.oracle(), make_target(h, target)
    for _ in range(2):  # the second push finds every owner as mapped: nothing to do
        o, r = h.differential(["-ai", *args, "src/", "lh:dst/"], [oracle, ours])
        assert_equivalent(o, r)
    assert o.itemize == [] and o.tree is not None
    assert {(e.uid, e.gid) for e in o.tree.values()} != {(0, 0)}  # the maps did something


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--usermap=nosuchuser1234:0",), b"Unknown --usermap name on receiver"),
        (("--usermap=1234:nosuchuser1234",), b"Unknown --usermap name on receiver"),
        (("--groupmap=0-x:1",), b"Invalid number in --groupmap: 0-x"),
        (("--usermap=nocolon",), b"No colon found in --usermap: nocolon"),
    ],
    ids=["unknown-source-name", "unknown-target-name", "bad-range", "no-colon"],
)
def test_map_errors_end_like_rsync(
    args: tuple[str, ...],
    message: bytes,
    rsync_harness: RsyncHarness,
    varied_tree: os.PathLike[str],
) -> None:
    """An unknown local name is reported and its rule dropped; bad syntax ends with 1."""
    h = rsync_harness
    o, r = h.differential(["-ai", *args, "src/", "lh:dst/"], [h.oracle(), h.rsyncd_root()])
    assert r.returncode == o.returncode, r.describe()
    if b"Unknown" in message and b"nosuchuser1234:0" in args[0].encode():
        # a source name that matches nothing here is no error: no output to compare
        assert o.returncode == 0
    else:
        assert message in o.stderr and message in r.stderr, r.describe()
    if o.returncode == 0:
        assert_equivalent(o, r)


@pytest.mark.skipif(shutil.which("getfacl") is None, reason="needs setfacl/getfacl (acl)")
def test_acl_ids_are_mapped_too(rsync_harness: RsyncHarness) -> None:
    """uidlist.c match_acl_ids: the ids an ACL names go through the maps first."""
    h = rsync_harness
    src = h.client_dir / "src"
    src.mkdir()
    (src / "f").write_bytes(b"acl\n")
    acl = "u:1234:rw-,g:5678:r--,u:daemon:r--"
    subprocess.run(["setfacl", "-m", acl, str(src / "f")], check=True)
    os.utime(src, ns=(1_600_000_000_000_000_000,) * 2)
    args = ["-aiA", "--usermap=1234:4321,daemon:bin", "--groupmap=5678:8765", "src/", "lh:dst/"]
    oracle, ours = h.oracle(), h.rsyncd_root()
    o, r = h.differential(args, [oracle, ours])
    assert_equivalent(o, r)
    acls = [
        subprocess.run(
            ["getfacl", "-n", "--omit-header", str(t.home / "dst" / "f")],
            capture_output=True,
            check=True,
        ).stdout
        for t in (oracle, ours)
    ]
    assert acls[0] == acls[1] and b"user:4321:rw-" in acls[0] and b"group:8765:r--" in acls[0]
