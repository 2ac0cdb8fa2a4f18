"""Bad input and broken sessions: rsync's error text and exit code, nothing lost, no trace.

- Garbage on stdin of ``rsyncd-py --server`` (and of real ``rsync --server``, the
  oracle): the same exit code, an rsync-style message, never a Python traceback.
- A client killed (SIGKILL) in the middle of a big file: the server notices, exits, and
  leaves neither a partial file nor a temp file; the next push completes.
- Paths that would leave the served root are refused, and nothing outside it changes.
- Options the server refuses, and a server that cannot start, end the session the way
  a real ``rsync --server`` refusing an option does.
"""

from __future__ import annotations

import os
import random
import re
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.rsync_harness import RSYNC, RSYNCD_PY, RsyncHarness, Target
from tests.helpers.trees import assert_same_tree, snapshot, write_file

SERVER_ARGS = ["--server", "-vlogDtpre.iLsfxCIvu", ".", "dst/"]
_rng = random.Random(5)
_CHECKSUMS = bytes([6]) + b"xxh128"
GARBAGE = {
    "random": _rng.randbytes(1000),
    "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "empty": b"",
    "version-only": struct.pack("<i", 32),
    "version-then-garbage": struct.pack("<i", 32) + _rng.randbytes(2000),
    "protocol-29-then-garbage": struct.pack("<i", 29) + _rng.randbytes(2000),
    "bad-frame-length": struct.pack("<i", 32) + _CHECKSUMS + _rng.randbytes(500),
    "bad-tag": struct.pack("<i", 32) + _CHECKSUMS + struct.pack("<I", (200 << 24) | 4) + b"abcd",
    # a 16 MiB data frame cut short inside a file-list entry whose name (120 bytes, reusing
    # 120 of the previous name, which is empty) is incomplete: rsync reads the name before
    # it checks it, so this is an EOF (code 12), not an overflow (code 2)
    "truncated-big-frame": struct.pack("<i", 32)
    + _CHECKSUMS
    + struct.pack("<I", (7 << 24) | 0xFFFFFF)
    + b"x" * 100,
}


def _eof_lines(stderr: bytes) -> list[bytes]:
    """Return the "connection unexpectedly closed (N bytes received so far)" lines."""
    return [line for line in stderr.splitlines() if b"connection unexpectedly closed" in line]


@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_on_stdin(name: str, tmp_path: Path) -> None:
    data = GARBAGE[name]
    oracle = subprocess.run(
        [RSYNC, *SERVER_ARGS],
        check=False,
        input=data,
        capture_output=True,
        cwd=tmp_path,
        timeout=60,
    )
    ours = subprocess.run(
        [*RSYNCD_PY.split(), "--root", str(tmp_path), *SERVER_ARGS],
        check=False,
        input=data,
        capture_output=True,
        timeout=60,
    )
    assert b"Traceback" not in ours.stderr
    assert ours.returncode == oracle.returncode != 0, (ours.stderr, oracle.stderr)
    assert f"(code {ours.returncode})".encode() in ours.stderr.splitlines()[-1]
    assert _eof_lines(ours.stderr) == _eof_lines(oracle.stderr), (ours.stderr, oracle.stderr)
    assert not (tmp_path / "dst").exists()


def _descendants(pid: int) -> list[int]:
    """Return the pids of every process below `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (alive := [pid for pid in pids if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def test_client_killed_mid_file(ours: Target, rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    src = h.client_dir / "src"
    write_file(src / "a-small", b"kept", 1_600_000_000_000_000_000)  # sent before "big"
    write_file(src / "big", os.urandom(48 << 20), 1_600_000_000_000_000_000)
    os.utime(src, ns=(1_600_000_000_000_000_000,) * 2)
    client = subprocess.Popen(
        h.command(ours, ["-a", "--progress", "--bwlimit=4m", "src/", "lh:dst/"]),
        cwd=h.client_dir,
        env=h.client_env(ours),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert client.stdout is not None
    seen = b""
    while not re.search(rb"big\n.*%", seen, re.DOTALL):  # progress within the big file
        chunk = client.stdout.read1(4096)
        assert chunk, f"the client ended before the big file started: {seen!r}"
        seen += chunk
    servers = _descendants(client.pid)
    assert servers
    client.send_signal(signal.SIGKILL)
    client.wait()
    client.stdout.close()
    assert _wait_gone(servers, timeout=60) == [], "the server outlived its client"
    if ours.name == "root":  # the finished file is there; nothing half-written, no temp file
        assert sorted(os.listdir(ours.home / "dst")) == ["a-small"]
    else:  # the store keeps its last commit (at most a checkpoint): never a partial file
        assert not [path for path in ours.read_tree(ours, "") if path.endswith(b"big")]
    again = h.run(ours, ["-a", "src/", "lh:dst/"])
    assert again.returncode == 0, again.describe()
    assert again.tree is not None
    assert_same_tree(snapshot(src), again.tree, ignore={"allocated"})


def _outside(top: Path) -> dict[bytes, object]:
    """Snapshot `top` without what lies inside the served root b/root."""
    return {k: v for k, v in snapshot(top).items() if not k.startswith(b"b/root")}


@pytest.mark.parametrize("remote", ["../../escape/", "dst/../../../escape/", "dst/../../../"])
def test_paths_escaping_the_root_are_refused(remote: str, tmp_path: Path) -> None:
    root = tmp_path / "a" / "b" / "root"
    root.mkdir(parents=True)
    write_file(tmp_path / "client" / "src" / "f", b"payload", 1_600_000_000_000_000_000)
    before = _outside(tmp_path / "a")
    h = RsyncHarness(tmp_path)
    target = Target("root", f"{RSYNCD_PY} --root {root}", root, lambda target, path: snapshot(root))
    result = h.run(target, ["-a", "src/", f"lh:{remote}"], tree=None)
    assert result.returncode != 0, result.describe()
    assert b"Traceback" not in result.stderr
    assert _outside(tmp_path / "a") == before, "something changed outside the root"


def test_symlink_out_of_the_root_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    write_file(tmp_path / "client" / "src" / "f", b"payload", 1_600_000_000_000_000_000)
    h = RsyncHarness(tmp_path)
    target = Target("root", f"{RSYNCD_PY} --root {root}", root, lambda t, p: snapshot(root))
    result = h.run(target, ["-a", "src/", "lh:link/sub/"], tree=None)
    assert b"Traceback" not in result.stderr
    assert os.listdir(outside) == [], result.describe()


def test_unknown_option_like_rsync(ours: Target, rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    write_file(h.client_dir / "src" / "f", b"x", 1_600_000_000_000_000_000)
    oracle, mine = h.differential(
        ["-a", "--remote-option=--bogus-opt", "src/", "lh:dst/"], [h.oracle(), ours], tree=None
    )
    assert mine.returncode == oracle.returncode == 12
    assert b"--bogus-opt: unknown option" in oracle.stderr
    assert b"--bogus-opt: unknown option" in mine.stderr, mine.describe()
    assert b"Traceback" not in mine.stderr


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ("--root /nonexistent/dir", b"rsyncd-py: cannot open /nonexistent/dir"),
        ("--no-such-global-option", b"rsyncd-py: unrecognized arguments"),
        ("--root . --store /x", b"rsyncd-py: --root and --store are mutually exclusive"),
        ("--store /nonexistent/store", b"rsyncd-py: cannot open /nonexistent/store"),
    ],
)
def test_server_that_cannot_start(server: str, message: bytes, rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    write_file(h.client_dir / "src" / "f", b"x", 1_600_000_000_000_000_000)
    target = Target("bad", f"{RSYNCD_PY} {server}", h.tmp, lambda t, p: {})
    result = h.run(target, ["-a", "src/", "lh:dst/"], tree=None)
    assert result.returncode == 12  # the client's "connection unexpectedly closed"
    assert result.stderr.startswith(message), result.describe()
    assert b"rsync error: " in result.stderr
    assert b"Traceback" not in result.stderr


def test_absolute_paths_stay_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    write_file(tmp_path / "client" / "src" / "f", b"payload", 1_600_000_000_000_000_000)
    os.utime(tmp_path / "client" / "src", ns=(1_600_000_000_000_000_000,) * 2)
    h = RsyncHarness(tmp_path)
    target = Target("root", f"{RSYNCD_PY} --root {root}", root, lambda t, p: snapshot(root / p))
    result = h.run(target, ["-a", "src/", f"lh:{tmp_path}/client/elsewhere/"], tree=None)
    assert result.returncode == 11, result.describe()  # its parent is missing under the root
    assert not (tmp_path / "client" / "elsewhere").exists()
    result = h.run(target, ["-a", "src/", "lh:/dst/"], tree="dst")
    assert result.returncode == 0, result.describe()
    assert result.tree is not None
    assert_same_tree(snapshot(tmp_path / "client" / "src"), result.tree)
