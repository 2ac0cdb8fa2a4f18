"""The small deterministic tree the core-protocol goldens were captured from.

`build(root)` recreates it; `EXPECTED` describes each entry (path relative to the
transfer root -> (kind, mode, size, mtime_ns, link target)). Used by
make_captures.sh and by tests/protocol/test_goldens.py.
"""

from __future__ import annotations

import os

MTIME = 1_600_000_000_123_456_789
FILES = {
    b"a": b"hello\n",
    b"sub/b": bytes(range(256)) * 4,
    b"sub/c": b"",
    b"sub/a.b": b"x" * 701,
    b"with space": b"spaces\n",
}
DIRS = (b"sub", b"empty")
LINKS = {b"link": b"a"}
MODES = {b"a": 0o644, b"sub/b": 0o600, b"sub/c": 0o755, b"sub/a.b": 0o644, b"with space": 0o4755}
EXTRA_IN_DEST = {b"old1": b"gone\n", b"olddir/x": b"gone too\n"}


def build(root: bytes, *, extra: bool = False) -> None:
    """Create the source tree (or, with `extra`, only the files a --delete must remove)."""
    os.makedirs(root, exist_ok=True)
    if extra:
        for name, data in EXTRA_IN_DEST.items():
            path = os.path.join(root, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        return
    for name in DIRS:
        os.makedirs(os.path.join(root, name), exist_ok=True)
    for name, data in FILES.items():
        path = os.path.join(root, name)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, MODES[name])
        os.utime(path, ns=(MTIME, MTIME))
    for name, target in LINKS.items():
        os.symlink(target, os.path.join(root, name))
        os.utime(os.path.join(root, name), ns=(MTIME, MTIME), follow_symlinks=False)
    for name in (*DIRS, b""):
        os.chmod(os.path.join(root, name), 0o755)
        os.utime(os.path.join(root, name), ns=(MTIME + 1, MTIME + 1))


if __name__ == "__main__":
    import sys

    build(os.fsencode(sys.argv[1]), extra=len(sys.argv) > 2 and sys.argv[2] == "extra")
