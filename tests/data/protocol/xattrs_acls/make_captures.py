#!/usr/bin/env python3
"""Regenerate the -X/-A goldens: real rsync 3.2.7 client against real `rsync --server`.

Each case runs the real client through tools/fake_rsh.py in capture mode
(RSYNCD_PY_CAPTURE) and keeps `<case>.cmd` (the remote command), `<case>.c2s` (client to
server) and `<case>.s2c` (server to client) beside this script. The trees are built
here (xattrs with os.setxattr, ACLs with setfacl) with fixed contents, modes and mtimes;
`--checksum-seed=1` pins the seed. Run as root on Linux (trusted.* xattrs, owners) with
the `acl` package installed (tools/setup-system.sh). What the tests expect of each
case is in tests/protocol/test_xattrs.py and test_acls.py; `TREES` below is the truth
they check the decoded values against.

Usage: python3 make_captures.py [--only CASE ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
RELAY = f"{sys.executable} {REPO / 'tools' / 'fake_rsh.py'}"
T0 = 1_600_000_000  # mtime (s) of every entry

# name -> (content or None for a directory, {xattr: value}); "link" is a symlink to "a"
XATTR_TREE: dict[str, tuple[bytes | None, dict[str, bytes]]] = {
    "a": (b"a\n", {"user.small": b"v1", "user.long": b"L" * 40, "trusted.t": b"T"}),
    "b": (b"b\n", {"user.small": b"v1", "user.long": b"L" * 40, "trusted.t": b"T"}),
    "c": (b"c\n", {"user.exact": b"E" * 32, "user.over": b"O" * 33, "user.empty": b""}),
    "d": (b"d\n", {}),
    "sub": (None, {"user.dir": b"dir"}),
    "sub/e": (b"e\n", {"user.long": b"L" * 40}),
}
# What the receiving side already holds in the "update" cases.
XATTR_OLD: dict[str, tuple[bytes | None, dict[str, bytes]]] = {
    "a": (b"a\n", {"user.small": b"v0", "user.long": b"L" * 40, "trusted.t": b"T"}),
    "b": (b"b\n", {"user.long": b"M" * 40}),
    "d": (b"d\n", {}),
    "sub": (None, {"user.dir": b"dir"}),
    "sub/e": (b"E\n", {}),
}

# name -> (content or None, mode, setfacl arguments)
ACL_TREE: dict[str, tuple[bytes | None, int, list[str]]] = {
    "f1": (b"1\n", 0o640, ["-m", "u:1:rw-,g:4:r--"]),
    "f2": (b"2\n", 0o640, ["-m", "u:1:rw-,g:4:r--"]),
    "f3": (b"3\n", 0o644, []),
    "f4": (b"4\n", 0o600, ["-m", "u:1234:r-x"]),
    "f5": (b"5\n", 0o664, ["-m", "g:4:rwx,m::r--"]),
    "d1": (None, 0o755, ["-m", "u:1:rwx", "-m", "d:u:1:rwx,d:g:4:r-x"]),
    "d1/f6": (b"6\n", 0o644, []),
    "d2": (None, 0o755, []),
}
ACL_OLD: dict[str, tuple[bytes | None, int, list[str]]] = {
    "f1": (b"1\n", 0o640, ["-m", "u:1:rw-,g:4:r--"]),
    "f2": (b"2\n", 0o640, ["-m", "u:1:r--"]),
    "f3": (b"3\n", 0o644, ["-m", "u:2:rw-"]),
    "d1": (None, 0o755, ["-m", "u:1:rwx"]),
    "d1/f6": (b"6\n", 0o644, []),
    "d2": (None, 0o755, []),
}

# case -> (direction, tree, receiver holds the old tree, client options)
CASES: dict[str, tuple[str, str, bool, list[str]]] = {
    "push-x-p32": ("push", "xattrs", False, ["-aX", "--no-inc-recursive"]),
    "push-x-update-p32": ("push", "xattrs", True, ["-aXi", "--no-inc-recursive"]),
    "push-x-p30": ("push", "xattrs", True, ["-aX", "--protocol=30"]),
    "pull-x-update-p32": ("pull", "xattrs", True, ["-aXi", "--no-inc-recursive"]),
    "push-a-p32": ("push", "acls", False, ["-aA", "--no-inc-recursive"]),
    "push-a-update-p32": ("push", "acls", True, ["-aAi", "--no-inc-recursive"]),
    "push-a-incr-p32": ("push", "acls", False, ["-aA"]),
    "pull-a-update-p31": ("pull", "acls", True, ["-aAi", "--protocol=31"]),
}


def build_xattr_tree(top: Path, tree: dict[str, tuple[bytes | None, dict[str, bytes]]]) -> None:
    top.mkdir(parents=True)
    for name, (content, xattrs) in tree.items():
        path = top / name
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)
        for key, value in xattrs.items():
            os.setxattr(path, key, value)
    if tree is XATTR_TREE:
        (top / "link").symlink_to("a")
    _fix_times(top)


def build_acl_tree(top: Path, tree: dict[str, tuple[bytes | None, int, list[str]]]) -> None:
    top.mkdir(parents=True)
    for name, (content, mode, _) in tree.items():
        path = top / name
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)
        os.chmod(path, mode)
    for name, (_, _, setfacl) in tree.items():
        if setfacl:
            subprocess.run(["setfacl", *setfacl, str(top / name)], check=True)
    if tree is ACL_TREE:
        (top / "link").symlink_to("f1")
    _fix_times(top)


def _fix_times(top: Path) -> None:
    for path in sorted(top.rglob("*"), reverse=True):
        os.utime(path, (T0, T0), follow_symlinks=False)
    os.utime(top, (T0, T0))


def capture(case: str) -> None:
    direction, kind, update, options = CASES[case]
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        build, new, old = (
            (build_xattr_tree, XATTR_TREE, XATTR_OLD)
            if kind == "xattrs"
            else (build_acl_tree, ACL_TREE, ACL_OLD)
        )
        build(work / "src", new)  # type: ignore[arg-type]
        if update:
            build(work / "dst", old)  # type: ignore[arg-type]
        argv = ["rsync", *options, "--checksum-seed=1", "-e", RELAY]
        argv += ["src/", "lh:dst/"] if direction == "push" else ["lh:src/", "dst/"]
        env = dict(os.environ, RSYNCD_PY_CAPTURE=str(work / "caps"))
        run = subprocess.run(argv, cwd=work, env=env, capture_output=True, check=True)
        (HERE / f"{case}.out").write_bytes(run.stdout)
        shutil.copy(work / "caps" / "0.c2s", HERE / f"{case}.c2s")
        shutil.copy(work / "caps" / "0.s2c", HERE / f"{case}.s2c")
        shutil.copy(work / "caps" / "0.cmd", HERE / f"{case}.cmd")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=list(CASES))
    for case in parser.parse_args().only:
        capture(case)
        print(case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
