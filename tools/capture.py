#!/usr/bin/env python3
"""Regenerate the golden transcripts in tests/data/transcripts with real rsync.

Each scenario runs the real ``rsync`` client against the real ``rsync --server``
through ``tools/fake_rsh.py`` in capture mode (``RSYNCD_PY_CAPTURE``), and keeps what
went over the wire::

    tests/data/transcripts/<scenario>/cmd   the remote command line the client ran
    tests/data/transcripts/<scenario>/c2s   bytes client -> server
    tests/data/transcripts/<scenario>/s2c   bytes server -> client

Everything that reaches the wire is pinned so a re-run gives the same bytes: the tiny
tree's content, modes and nanosecond mtimes are fixed, ``--checksum-seed=1`` fixes the
seed both sides use, and client and server share one working directory so the remote
paths are relative (``. dst/``, ``src/``). Owner names come from the machine (run as
root: uid/gid 0 = "root"). Every scenario's result is checked against the source tree
before its transcript is kept.

Not every byte is reproducible, because real rsync is several processes racing:
see tests/data/transcripts/README for what varies between two captures.

Usage: python3 tools/capture.py [--out DIR] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FAKE_RSH = f"{sys.executable} {REPO / 'tools' / 'fake_rsh.py'}"
DEFAULT_OUT = REPO / "tests" / "data" / "transcripts"
T0 = 1_600_000_000_123_456_789  # base mtime (ns) of the tiny tree


@dataclass(frozen=True)
class Scenario:
    """One client run: direction, extra options, and what the receiving side holds first."""

    direction: str  # "push" (client sends src/ to lh:dst/) or "pull" (lh:src/ to dst/)
    args: tuple[str, ...] = ("-a",)
    protocol: int = 32
    receiver_has: str = "nothing"  # "nothing", "old" (an older copy), "extra" (plus strays)
    check_tree: bool = True  # whether the result must equal the source

    def argv(self) -> list[str]:
        args = [*self.args, f"--protocol={self.protocol}", "--checksum-seed=1"]
        if self.direction == "push":
            return [*args, "src/", "lh:dst/"]
        return [*args, "lh:src/", "dst/"] if "--list-only" not in args else [*args, "lh:src/"]


SCENARIOS: dict[str, Scenario] = {
    **{f"push-p{p}": Scenario("push", protocol=p) for p in (32, 31, 30, 29, 28, 27)},
    **{f"pull-p{p}": Scenario("pull", protocol=p) for p in (32, 31, 30, 29, 28, 27)},
    "push-delta-p32": Scenario("push", receiver_has="old"),
    "pull-delta-p32": Scenario("pull", receiver_has="old"),
    "push-zlib-p32": Scenario("push", ("-a", "--zc=zlib"), receiver_has="old"),
    "push-zstd-p32": Scenario("push", ("-a", "--zc=zstd"), receiver_has="old"),
    "pull-zlib-p32": Scenario("pull", ("-a", "--zc=zlib"), receiver_has="old"),
    "pull-zstd-p32": Scenario("pull", ("-a", "--zc=zstd"), receiver_has="old"),
    "push-delete-p32": Scenario("push", ("-a", "--delete"), receiver_has="extra"),
    "push-delete-p29": Scenario("push", ("-a", "--delete"), 29, receiver_has="extra"),
    "push-hardlinks-p32": Scenario("push", ("-aH",)),
    "pull-hardlinks-p32": Scenario("pull", ("-aH",)),
    "push-hardlinks-p29": Scenario("push", ("-aH",), 29),
    "pull-list-only-p32": Scenario("pull", ("--list-only", "-r"), check_tree=False),
    "pull-list-only-p29": Scenario("pull", ("--list-only", "-r"), 29, check_tree=False),
    "push-dry-run-p32": Scenario(
        "push", ("-a", "--dry-run", "-i", "--delete"), receiver_has="extra", check_tree=False
    ),
}


def _pattern(size: int, salt: int) -> bytes:
    """Deterministic, poorly compressible bytes (a xorshift stream)."""
    out = bytearray()
    x = 0x9E3779B9 ^ salt
    while len(out) < size:
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out += x.to_bytes(4, "little")
    return bytes(out[:size])


def make_tree(top: Path, *, old: bool = False) -> None:
    """The tiny tree (`old=True`: an earlier version of it, for delta scenarios)."""
    files = {
        "a": b"hi\n",
        "sub/b": _pattern(800, 1),
        "sub/c": _pattern(3000, 2),
        "hl1": b"hard-linked\n",
    }
    if old:
        c = bytearray(files["sub/c"])
        c[1500:1550] = bytes(50)  # a changed block in the middle, and a shorter end
        files["sub/c"] = bytes(c[:2600])
        del files["a"]
    for i, (rel, data) in enumerate(sorted(files.items())):
        path = top / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, 0o644 if i % 2 else 0o600)
        os.utime(path, ns=(T0 + i * 10**9, T0 + i * 10**9 + (0 if old else 7)))
    if not old:
        os.link(top / "hl1", top / "hl2")
        (top / "sub" / "empty").mkdir()
        os.symlink("a", top / "link")
        os.utime(top / "link", ns=(T0, T0), follow_symlinks=False)
    for rel in ("sub/empty", "sub", "."):
        if (top / rel).exists():
            os.chmod(top / rel, 0o755)
            os.utime(top / rel, ns=(T0 - 10**9, T0 - 10**9))


def _add_strays(top: Path) -> None:
    (top / "stray").write_bytes(b"delete me\n")
    (top / "straydir").mkdir()
    (top / "straydir" / "x").write_bytes(b"x")
    for rel in ("straydir/x", "straydir", "stray", "."):
        os.utime(top / rel, ns=(T0, T0))


def _tree_listing(top: Path, time_unit: int) -> list[tuple[str, int, int, bytes]]:
    """(path, mode, mtime in `time_unit` ns, content or link target) for all below `top`."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(top):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(top))
            if path.is_symlink():
                body = os.readlink(path).encode()
            elif path.is_file():
                body = path.read_bytes()
            else:
                body = b""
            mtime = 0 if path.is_dir() else st.st_mtime_ns // time_unit
            entries.append((rel, st.st_mode, mtime, body))
    return sorted(entries)


def capture(name: str, scenario: Scenario, out: Path) -> None:
    """Run `scenario` in a scratch directory and write its transcript to out/name."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        make_tree(work / "src")
        receiver = work / "dst"
        if scenario.receiver_has == "old":
            make_tree(receiver, old=True)
        elif scenario.receiver_has == "extra":
            shutil.copytree(work / "src", receiver, symlinks=True)
            _add_strays(receiver)
        caps = work / "caps"
        env = {**os.environ, "RSYNCD_PY_CAPTURE": str(caps), "LC_ALL": "C"}
        done = subprocess.run(
            ["rsync", "-e", FAKE_RSH, *scenario.argv()],
            cwd=work,
            env=env,
            capture_output=True,
            check=False,
            timeout=120,
        )
        if done.returncode != 0:
            raise SystemExit(f"{name}: rsync exited {done.returncode}: {done.stderr.decode()}")
        unit = 1 if scenario.protocol >= 31 else 10**9  # no nanoseconds before protocol 31
        if scenario.check_tree and _tree_listing(work / "src", unit) != _tree_listing(
            receiver, unit
        ):
            raise SystemExit(f"{name}: the result differs from the source tree")
        target = out / name
        target.mkdir(parents=True, exist_ok=True)
        for suffix in ("cmd", "c2s", "s2c"):
            shutil.copyfile(caps / f"0.{suffix}", target / suffix)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), default=None)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("warning: not root: owner names in the file lists will differ", file=sys.stderr)
    for name in args.only or sorted(SCENARIOS):
        capture(name, SCENARIOS[name], args.out)
        print(f"captured {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
